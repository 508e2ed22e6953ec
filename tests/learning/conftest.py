"""Helpers for the learning tests: write a one-stage recipe, run it, load its model, score text."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from rich.console import Console
from transformers import AutoModelForCausalLM, AutoTokenizer

from posttrain.pipeline.runner import run_recipe
from posttrain.recipe.loader import load_recipe

# One stage on the base model; no eval and no export, so the run is only the training.
RECIPE = """\
name: learn
seed: {seed}
model: {{base: {model}}}
datasets:
  train: {{kind: {kind}, sources: [{{path: data/train.jsonl}}]}}
eval: {{on_base: false}}
stages:
{stage}
export: {{formats: []}}
"""


EMBEDDING_SCALE = 10.0


@pytest.fixture(scope="session")
def learnable_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared tiny model with its (tied) embeddings scaled up, saved to a new folder.

    At the default init (std 0.02) the logits of the tiny model are ~1e-3 and a
    LoRA on its linear layers can move them by well under one unit (the final
    norm fixes the hidden state's size, the embeddings are frozen): its answers
    stay near uniform whatever it is trained on. Measured with GRPO on the digit
    reward below: x1 moves the mean reward 0.04 -> 0.05, x10 moves it 0.04 -> 0.4.
    """
    folder = tmp_path_factory.mktemp("learnable-model")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(EMBEDDING_SCALE)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


@pytest.fixture
def run_one_stage(tmp_path: Path, learnable_model_dir: Path) -> Callable[..., Path]:
    """`run_one_stage(stage_yaml, rows, kind, seed=0, files={})` trains the stage; returns its run folder.

    `files` are written beside the recipe first (a reward module, say).
    """

    def run(stage: str, rows: list[dict[str, Any]], kind: str, seed: int = 0, files: dict[str, str] | None = None) -> Path:
        for name, text in (files or {}).items():
            (tmp_path / name).write_text(text)
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        path = tmp_path / "learn.yaml"
        path.write_text(RECIPE.format(seed=seed, model=learnable_model_dir, kind=kind, stage=stage))
        runs = tmp_path / "runs"
        report = run_recipe(load_recipe(path), runs_dir=runs, console=Console(quiet=True))
        name = report.stages[-1].name
        stage_dir = runs / "learn" / name
        assert json.loads((stage_dir / "stage.json").read_text())["status"] == "completed"
        return stage_dir

    return run


@pytest.fixture
def load_models(learnable_model_dir: Path) -> Callable[[Path], tuple[Any, Any, Any]]:
    """`load_models(stage_dir)`: (tokenizer, base model, base + the stage's adapter), both in eval mode."""

    def load(stage_dir: Path) -> tuple[Any, Any, Any]:
        tokenizer = AutoTokenizer.from_pretrained(learnable_model_dir)
        base = AutoModelForCausalLM.from_pretrained(learnable_model_dir, dtype=torch.float32).eval()
        trained_base = AutoModelForCausalLM.from_pretrained(learnable_model_dir, dtype=torch.float32)
        trained = PeftModel.from_pretrained(trained_base, stage_dir / "adapter").eval()
        return tokenizer, base, trained

    return load


def completion_logprob(model: Any, tokenizer: Any, prompt: list[dict[str, str]], answer: str) -> float:
    """Summed log-probability of the assistant turn `answer` (with its end token) after the chat `prompt`.

    The tokens are those of the chat template, as TRL's trainers see them.
    """
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
    full_ids = tokenizer.apply_chat_template(
        [*prompt, {"role": "assistant", "content": answer}], tokenize=True, return_dict=False
    )
    assert full_ids[: len(prompt_ids)] == prompt_ids, "the prompt must be a prefix of the conversation"
    ids = torch.tensor([full_ids])
    with torch.no_grad():
        logprobs = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
    targets = ids[0, 1:]
    per_token = logprobs.gather(-1, targets[:, None])[:, 0]
    return per_token[len(prompt_ids) - 1 :].sum().item()


@pytest.fixture
def logprob() -> Callable[..., float]:
    """`logprob(model, tokenizer, prompt_messages, answer)`: see `completion_logprob`."""
    return completion_logprob
