"""QLoRA (`model.quantize: 4bit`): stages train LoRAs on NF4 weights; everything after training uses the
dequantized base, so the merged export equals dequantized base + cumulative adapter."""

from __future__ import annotations

import json
from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch
from peft import PeftModel
from rich.console import Console
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from posttrain.models.lineage import Lineage, load_quantized, materialize
from posttrain.models.loading import dequantized_base, load_model
from posttrain.pipeline.runner import run_recipe
from posttrain.recipe.loader import load_recipe
from tests.launch.conftest import write_data

RECIPE = """\
name: qlora
seed: 2
model: {{base: {model}, quantize: 4bit}}
datasets:
  chat: {{sources: [{{path: data/chat.jsonl}}]}}
  prefs: {{kind: preference, sources: [{{path: data/prefs.jsonl}}]}}
  prompts: {{kind: prompt, sources: [{{path: data/prompts.jsonl}}]}}
eval: {{tasks: [pt_arith_mc], limit: 2, batch_size: 2, on_base: false}}
stages:
  - {{name: sft, type: sft, data: chat, lora: {{r: 4}},
     train: {{max_steps: 2, batch_size: 4, lr: 1.0e-2, logging_steps: 1, max_length: 64}}}}
  - {{name: dpo, type: dpo, data: prefs, lora: {{r: 2}},
     train: {{max_steps: 1, batch_size: 4, lr: 1.0e-2, logging_steps: 1, max_length: 64}}}}
  - {{name: grpo, type: grpo, data: prompts, rewards: [{{fn: my_rewards.py:longer}}], num_generations: 2,
     max_completion_length: 8, lora: {{r: 2}}, train: {{max_steps: 1, batch_size: 4, lr: 1.0e-2, logging_steps: 1}}}}
export: {{formats: [peft, merged]}}
"""


def _linear_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: m.weight.detach() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def test_dequantized_base_is_what_nf4_training_sees(nf4_model_dir: Path, tmp_path: Path) -> None:
    folder = dequantized_base(str(nf4_model_dir), tmp_path / "nf4")
    original, dequantized = load_model(str(nf4_model_dir), dtype="float32"), load_model(str(folder), dtype="float32")
    quantized = load_quantized(Lineage(str(folder)), dtype="float32", scratch=tmp_path / "scratch")
    layers = [m for m in quantized.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 14  # every attention and MLP projection of both layers; lm_head stays full
    # Quantizing is lossy, and quantizing the dequantized weights again is exact: in training mode the
    # 4-bit model computes exactly the dequantized model.
    before, after = _linear_weights(original), _linear_weights(dequantized)
    assert max((before[k] - after[k]).abs().max().item() for k in after if "proj" in k) > 1e-3
    ids = torch.randint(3, 300, (2, 9))
    quantized.train()
    dequantized.train()
    torch.testing.assert_close(quantized(input_ids=ids).logits, dequantized(input_ids=ids).logits, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_qlora_stages_train_evaluate_and_export_on_the_dequantized_base(
    nf4_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTTRAIN_CACHE", str(tmp_path / "cache"))
    write_data(tmp_path / "data")
    prompts = [{"prompt": [{"role": "user", "content": f"What is {i} + 5?"}], "answer": str(i + 5)} for i in range(4)]
    (tmp_path / "data" / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in prompts))
    # A graded reward: random text of a random model still differs in length, so GRPO has advantages.
    (tmp_path / "my_rewards.py").write_text(
        "def longer(completions, **kwargs):\n    return [len(c[0]['content']) / 40 for c in completions]\n"
    )
    recipe = tmp_path / "qlora.yaml"
    recipe.write_text(RECIPE.format(model=nf4_model_dir))
    report = run_recipe(load_recipe(recipe), runs_dir=tmp_path / "runs", console=Console(quiet=True))

    run_dir = tmp_path / "runs" / "qlora"
    lineage = report.stages[-1].lineage
    assert Path(lineage.base).parent == tmp_path / "cache" / "models"  # the dequantized base, made once
    for stage in report.stages:
        weights = load_file(str(run_dir / stage.name / "adapter" / "adapter_model.safetensors"))
        assert sum(w.abs().sum().item() for k, w in weights.items() if "lora_B" in k) > 0, stage.name
        assert "pt_arith_mc" in stage.scores
    assert not (run_dir / "dpo" / "input-merged").exists()  # the fp32 merge quantized for DPO is cleaned up
    assert [len(s.lineage.adapters) for s in report.stages] == [1, 2, 3]

    base = AutoModelForCausalLM.from_pretrained(lineage.base, dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(base, run_dir / "grpo" / "export" / "peft").eval()
    merged = AutoModelForCausalLM.from_pretrained(run_dir / "grpo" / "export" / "merged", dtype=torch.float32).eval()
    chained = materialize(lineage, dtype="float32").eval()
    on_original = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(nf4_model_dir, dtype=torch.float32), run_dir / "grpo" / "export" / "peft"
    ).eval()
    ids = torch.randint(3, 300, (2, 9))
    with torch.no_grad():
        expected = with_adapter(input_ids=ids).logits
        torch.testing.assert_close(merged(input_ids=ids).logits, expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(chained(input_ids=ids).logits, expected, rtol=0, atol=1e-5)
        # The merge went into the dequantized weights: on the original base the same adapter gives other logits.
        assert (on_original(input_ids=ids).logits - expected).abs().max() > 1e-3
