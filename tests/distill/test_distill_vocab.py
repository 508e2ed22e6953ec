"""Teacher and student share a vocabulary: padding differences are cut, real mismatches are clear errors."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from posttrain.distill.student import shared_vocab_size, truncate_vocab
from posttrain.errors import UserError


def test_padded_vocabularies_share_the_smaller_size(tiny_tokenizer: Any) -> None:
    tok = tiny_tokenizer
    n = len(tok)
    assert shared_vocab_size(tok, tok, teacher_vocab=n + 128, student_vocab=n) == n
    assert shared_vocab_size(tok, copy.deepcopy(tok), teacher_vocab=n + 64, student_vocab=n + 8) == n + 8


def test_a_real_mismatch_names_both_sizes(tiny_tokenizer: Any) -> None:
    tok = tiny_tokenizer
    other = copy.deepcopy(tok)
    other.add_tokens(["<tool>"])
    with pytest.raises(UserError, match=rf"student's tokenizer \({len(other)} tokens.*teacher's \({len(tok)} tokens"):
        shared_vocab_size(tok, other, teacher_vocab=len(tok), student_vocab=len(other))
    with pytest.raises(UserError, match=rf"{len(tok)} tokens but the student model's vocab has only {len(tok) - 5}"):
        shared_vocab_size(tok, tok, teacher_vocab=len(tok), student_vocab=len(tok) - 5)


def test_truncated_model_gives_the_shared_logits(tiny_llama: Any) -> None:
    model = tiny_llama(300)
    ids = torch.randint(3, 250, (2, 7))
    with torch.no_grad():
        full = model(input_ids=ids).logits
        truncate_vocab(model, 256)
        cut = model(input_ids=ids).logits
    assert model.config.vocab_size == 256 and cut.shape[-1] == 256
    torch.testing.assert_close(cut, full[..., :256])
