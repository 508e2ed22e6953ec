"""On a CPU, TRL's fused LM head scores only the tokens that carry a label, as it does on GPUs.

TRL's trainers (SFT, DPO, KTO, GRPO) turn hidden states into per-token log-probs with a fused, vocabulary-
chunked LM head (`add_fused_lm_head` in trl/trainer/utils.py). Where Triton runs it keeps only the labelled
positions; everywhere else it scores every position (prompt, padding and all), because on XLA devices such as
Neuron a changing row count would recompile the kernel. A CPU compiles nothing, and there each extra row costs a
full-vocabulary projection plus a dozen fp32 element-wise passes in torch. GRPO on the 2-core CPU (SmolLM2-135M,
8 completions of ≤ 48 tokens after ~60-token prompts, vocabulary 49152): the loss phase went from 5.7 to 3.6-4.1 s
per step.

The labelled rows' numbers do not depend on which other rows are scored (each row is its own softmax);
tests/test_compact_scoring.py checks log-probs, entropies and gradients against TRL's own path, and
pins the one place TRL reads the switch, so a TRL that starts using it for anything else fails that test.
"""

from __future__ import annotations

from typing import Any

_MARK = "_posttrain_compact_on_cpu"


def score_labelled_tokens_only() -> None:
    """Make TRL's fused LM head compact on CPU devices too; other devices keep TRL's choice. Idempotent."""
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:
        return
    uses_triton = getattr(trl_utils, "_use_triton", None)
    if uses_triton is None or getattr(uses_triton, _MARK, False):
        return

    def compact_on_cpu(device: Any) -> bool:
        return device.type == "cpu" or uses_triton(device)

    setattr(compact_on_cpu, _MARK, True)
    compact_on_cpu.__wrapped__ = uses_triton  # type: ignore[attr-defined]
    trl_utils._use_triton = compact_on_cpu
