"""SFT lowers the loss of answers the model never trained on."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

STAGE = """\
  - name: sft
    type: sft
    data: train
    evaluate: false
    lora: {r: 8, dropout: 0.0}
    train: {max_steps: 40, batch_size: 8, lr: 1.0e-2, scheduler: constant, logging_steps: 1, max_length: 64}
"""


def _chat(a: int, b: int) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": f"What is {a} + {b}?"},
        {"role": "assistant", "content": f"{a} + {b} = {a + b}. Answer: {a + b}"},
    ]


TRAIN = [{"messages": _chat(a, b)} for a in range(8) for b in range(4)]
HELD_OUT = [_chat(a, b) for a in range(40, 46) for b in (11, 17)]  # numbers never seen in training


def test_sft_lowers_the_held_out_answer_loss(run_one_stage, load_models, logprob) -> None:
    stage_dir: Path = run_one_stage(STAGE, TRAIN, kind="chat", seed=0)
    tokenizer, base, trained = load_models(stage_dir)

    def answer_nll(model) -> float:
        return -statistics.mean(logprob(model, tokenizer, chat[:1], chat[1]["content"]) for chat in HELD_OUT)

    before, after = answer_nll(base), answer_nll(trained)
    logged = [r["loss"] for r in map(json.loads, (stage_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    print(f"held-out answer NLL {before:.2f} -> {after:.2f} nats; logged loss {logged[0]:.3f} -> {logged[-1]:.3f}")

    # Measured: 105.4 -> 65.3 nats per answer (the unseen numbers stay hard; the template is learned),
    # logged loss 7.24 -> 3.82.
    assert after < 0.8 * before, (before, after)
    assert len(logged) == 40 and logged[-1] < 0.7 * logged[0], logged
