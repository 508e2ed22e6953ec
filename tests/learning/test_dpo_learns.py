"""DPO moves the model toward the chosen answers, on prompts it never trained on."""

from __future__ import annotations

import statistics
from pathlib import Path

# A pattern a tiny random model can learn: answer "number: N", not "Answer: N". Both have
# as many tokens, so the untrained model is near a tie, and it leans the wrong way (accuracy 0).
STAGE = """\
  - name: dpo
    type: dpo
    data: train
    evaluate: false
    beta: 0.1
    lora: {r: 8, dropout: 0.0}
    train: {max_steps: 24, batch_size: 8, lr: 1.0e-2, scheduler: constant, logging_steps: 4, max_length: 64}
"""


def _pair(a: int, b: int) -> dict:
    return {
        "prompt": [{"role": "user", "content": f"What is {a} + {b}?"}],
        "chosen": f"number: {a + b}",
        "rejected": f"Answer: {a + b}",
    }


TRAIN = [_pair(a, b) for a in range(8) for b in range(4)]
HELD_OUT = [_pair(a, b) for a in range(40, 46) for b in (11, 17)]  # numbers never seen in training


def _margins(model, tokenizer, logprob, pairs: list[dict]) -> list[float]:
    """logp(chosen) - logp(rejected) per pair."""
    return [
        logprob(model, tokenizer, p["prompt"], p["chosen"]) - logprob(model, tokenizer, p["prompt"], p["rejected"])
        for p in pairs
    ]


def test_dpo_raises_the_held_out_preference_margin(run_one_stage, load_models, logprob) -> None:
    assert not {str(p["prompt"]) for p in HELD_OUT} & {str(p["prompt"]) for p in TRAIN}
    stage_dir: Path = run_one_stage(STAGE, TRAIN, kind="preference", seed=0)
    tokenizer, reference, policy = load_models(stage_dir)

    before = _margins(reference, tokenizer, logprob, HELD_OUT)
    after = _margins(policy, tokenizer, logprob, HELD_OUT)
    # The implicit DPO reward margin of each held-out pair, in nats of log-probability.
    rewards = [a - b for a, b in zip(after, before, strict=True)]
    accuracy_before = sum(m > 0 for m in before) / len(before)
    accuracy_after = sum(m > 0 for m in after) / len(after)
    print(f"held-out margin {statistics.mean(before):.2f} -> {statistics.mean(after):.2f}, "
          f"accuracy {accuracy_before:.2f} -> {accuracy_after:.2f}")

    # Measured: mean margin -1.5 -> 23.5 nats, accuracy 0 -> 1; trained on swapped pairs it falls to -29.5.
    assert min(rewards) > 1.5, f"every held-out pair's margin must rise clearly: {rewards}"
    assert statistics.mean(rewards) > 2.5
    assert accuracy_before <= 0.5 and accuracy_after == 1.0
