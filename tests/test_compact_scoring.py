"""On a CPU, TRL's fused LM head scores only the labelled tokens, with the same numbers as TRL's own path."""

from __future__ import annotations

import inspect

import pytest
import torch

from posttrain.training.compact_scoring import score_labelled_tokens_only
from tests.conftest import build_tiny_model


def test_trl_reads_the_switch_only_to_choose_compact_rows() -> None:
    """The patch is safe only while trl.trainer.utils asks `_use_triton` nothing else (kernels choose their own)."""
    import trl.trainer.utils as trl_utils

    source = inspect.getsource(trl_utils)
    assert source.count("_use_triton(") == 1
    assert "compact = _use_triton(hidden_states.device)" in source


def _scored(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor, rows: list[int]):
    import trl.trainer.utils as trl_utils

    function = trl_utils._ChunkedLogProbFunction

    class Counting(function):  # type: ignore[misc, valid-type]
        @staticmethod
        def forward(ctx, hidden, *args):
            rows.append(hidden.shape[0])
            return function.forward(ctx, hidden, *args)

    trl_utils._ChunkedLogProbFunction = Counting
    try:
        model.zero_grad()
        out = model(input_ids=input_ids, attention_mask=(input_ids != 0).long(), labels=labels, fused_lm_head=True)
        (out.log_probs.sum() + out.entropy.sum()).backward()
    finally:
        trl_utils._ChunkedLogProbFunction = function
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out.log_probs.detach(), out.entropy.detach(), grads


def test_compact_rows_give_trls_numbers_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import trl.trainer.utils as trl_utils
    from trl.trainer.utils import add_fused_lm_head

    plain = getattr(trl_utils._use_triton, "__wrapped__", trl_utils._use_triton)
    monkeypatch.setattr(trl_utils, "_use_triton", plain)
    model = build_tiny_model(64, seed=3)
    add_fused_lm_head(model, temperature=0.7, outputs=("log_probs", "entropy"))
    torch.manual_seed(0)
    input_ids = torch.randint(3, 64, (3, 12))
    input_ids[1, 9:] = 0  # right padding
    labels = input_ids.masked_fill(input_ids == 0, -100)
    labels[:, :5] = -100  # the prompt carries no label
    valid = labels[:, 1:] != -100

    full_rows: list[int] = []
    full = _scored(model, input_ids, labels, full_rows)
    score_labelled_tokens_only()
    score_labelled_tokens_only()  # idempotent: wraps once
    assert getattr(trl_utils._use_triton, "__wrapped__", None) is plain
    compact_rows: list[int] = []
    compact = _scored(model, input_ids, labels, compact_rows)

    assert full_rows == [3 * 11] and compact_rows == [int(valid.sum())]
    for before, after in zip(full[:2], compact[:2], strict=True):
        torch.testing.assert_close(after[valid], before[valid], rtol=1e-5, atol=1e-6)
        assert torch.equal(after[~valid], torch.zeros_like(after[~valid]))
        assert torch.equal(before[~valid], torch.zeros_like(before[~valid]))
    assert full[2].keys() == compact[2].keys() and full[2]
    for name, grad in full[2].items():
        torch.testing.assert_close(compact[2][name], grad, rtol=1e-4, atol=1e-6)
