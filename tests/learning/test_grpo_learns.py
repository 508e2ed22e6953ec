"""GRPO raises the mean reward of the model's own samples, on prompts it never trained on."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

# A reward a tiny random model can learn: the share of digit characters in its answer.
# It is graded (random text already scores a little), so groups are rarely all tied.
REWARD_FILE = """\
from rewards import completion_text


def digits(completions, **kwargs):
    texts = [completion_text(c) for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(len(t), 1) for t in texts]
"""

# lr 1e-2 over 60 steps rather than 2e-2 over 30: at 2e-2 one seed's last update overshot, and
# the saved model sampled 0.08 though the step before it had logged 0.38.
STAGE = """\
  - name: grpo
    type: grpo
    data: train
    evaluate: false
    rewards: [{fn: my_rewards.py:digits}]
    num_generations: 8
    max_completion_length: 8
    use_vllm: false
    lora: {r: 8, dropout: 0.0}
    train: {max_steps: 60, batch_size: 16, lr: 1.0e-2, scheduler: constant, logging_steps: 1}
"""

TRAIN = [{"prompt": [{"role": "user", "content": f"What is {a} + {b}?"}]} for a in range(8) for b in range(4)]
HELD_OUT = [[{"role": "user", "content": f"What is {a} + {b}?"}] for a in (21, 34, 55) for b in (13, 16)]


def _digit_share(text: str) -> float:
    return sum(ch.isdigit() for ch in text) / max(len(text), 1)


def _mean_reward(model, tokenizer, prompts: list, samples: int = 16) -> float:
    """Mean reward of `samples` sampled answers per prompt (temperature 1, as in training), seeded."""
    torch.manual_seed(1234)
    scores = []
    for prompt in prompts:
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(
                **ids, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=8,
                num_return_sequences=samples, pad_token_id=tokenizer.pad_token_id,
            )
        texts = tokenizer.batch_decode(out[:, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        scores += [_digit_share(t) for t in texts]
    return statistics.mean(scores)


def test_grpo_raises_the_mean_reward_on_held_out_prompts(run_one_stage, load_models) -> None:
    stage_dir: Path = run_one_stage(STAGE, TRAIN, kind="prompt", seed=0, files={"my_rewards.py": REWARD_FILE})
    tokenizer, base, trained = load_models(stage_dir)
    before, after = _mean_reward(base, tokenizer, HELD_OUT), _mean_reward(trained, tokenizer, HELD_OUT)
    logged = [r["reward"] for r in map(json.loads, (stage_dir / "metrics.jsonl").read_text().splitlines()) if "reward" in r]
    print(f"held-out mean reward {before:.3f} -> {after:.3f}; logged {logged[0]:.3f} -> {logged[-1]:.3f}")

    # Measured over seeds 0-2: held-out 0.04 -> 0.35..0.55, the last ten logged steps 0.34..0.51.
    assert after > before + 0.15, (before, after)
    assert len(logged) == 60
    assert statistics.mean(logged[-10:]) > statistics.mean(logged[:10]) + 0.15, logged
