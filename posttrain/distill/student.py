"""Teacher and student must speak one vocabulary: check it, and cut padded vocabularies to the shared part."""

from __future__ import annotations

from typing import Any

from posttrain.errors import UserError


def model_vocab_size(model: Any) -> int:
    return int(model.config.get_text_config().vocab_size)


def shared_vocab_size(
    teacher_tokenizer: Any,
    student_tokenizer: Any,
    *,
    teacher_vocab: int,
    student_vocab: int,
    names: tuple[str, str] = ("teacher", "student"),
) -> int:
    """How many logits the two models share, or a UserError if their vocabularies differ.

    Models of one family often pad the embedding matrix to different multiples
    (Qwen2.5-0.5B: 151936 rows, 7B: 152064, one tokenizer of 151665 tokens): the
    rows past the tokenizer are never a target, so comparing the first
    min(rows) logits is exact. A different tokenizer is a real mismatch.
    `names` says what the two sides are in messages.
    """
    first, second = names
    if teacher_tokenizer is not student_tokenizer and teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
        raise UserError(
            f"vocab mismatch: the {second}'s tokenizer ({len(student_tokenizer)} tokens, model vocab {student_vocab}) "
            f"differs from the {first}'s ({len(teacher_tokenizer)} tokens, model vocab {teacher_vocab}); "
            "distillation compares next-token distributions, so both must use the same tokenizer"
        )
    shared = min(teacher_vocab, student_vocab)
    if len(teacher_tokenizer) > shared:
        smaller = first if teacher_vocab < student_vocab else second
        raise UserError(
            f"vocab mismatch: the tokenizer has {len(teacher_tokenizer)} tokens but the {smaller} model's vocab "
            f"has only {shared} ({first} {teacher_vocab}, {second} {student_vocab})"
        )
    return shared


def truncate_vocab(model: Any, size: int) -> Any:
    """Keep the first `size` rows of the embeddings and the LM head (the logits of the shared vocabulary)."""
    if model_vocab_size(model) > size:
        model.resize_token_embeddings(size)
    return model
