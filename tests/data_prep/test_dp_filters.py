"""Token-length, quality and regex/keyword filters."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_prep.errors import DataPrepError
from data_prep.operators import OpContext
from data_prep.operators.length import TokenFilter, count_tokens, token_filter
from data_prep.operators.quality import QualitySpec, quality_filter, repetition, symbol_ratio
from data_prep.operators.regex import RegexSpec, regex_filter
from data_prep.rows import Row


def rows_of(pairs):
    return [
        Row(
            {"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]}, "t", i + 1, 0
        )
        for i, (u, a) in enumerate(pairs)
    ]


def test_token_filter_counts_through_the_chat_template(word_tokenizer):
    ctx = OpContext(kind="chat", base_dir=Path("."), tokenizer=word_tokenizer)
    rows = rows_of([("a b", "c"), ("a b c d", "e f g h"), ("a", "b")])
    # "<user> a b <assistant> c" = 5 tokens; the template tags count, as in training.
    assert count_tokens([r.data for r in rows], "chat", word_tokenizer) == [5, 10, 4]
    res = token_filter(rows, TokenFilter(min_tokens=5, max_tokens=8), ctx)
    assert [r.line for r in res.kept] == [1]
    assert sorted((r.line, why) for r, why, _ in res.removed) == [(2, "too_long"), (3, "too_short")]


def test_token_filter_preference_counts_the_longer_side(word_tokenizer):
    data = {"prompt": [{"role": "user", "content": "q"}], "chosen": "a b c", "rejected": "a"}
    assert count_tokens([data], "preference", word_tokenizer) == [6]
    prompt = {"prompt": [{"role": "user", "content": "q r"}], "answer": "5"}
    assert count_tokens([prompt], "prompt", word_tokenizer) == [4]  # + generation prompt


def test_token_filter_with_a_real_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {
        w: i
        for i, w in enumerate(["[UNK]", "<|im_start|>", "<|im_end|>", "user", "assistant", "hi", "there"])
    }
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    hf.chat_template = (
        "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    )
    assert count_tokens([rows_of([("hi", "there there")])[0].data], "chat", hf) == [9]


def test_token_filter_without_tokenizer_is_an_error():
    with pytest.raises(DataPrepError, match="tokenizer"):
        token_filter(
            rows_of([("a", "b")]), TokenFilter(max_tokens=3), OpContext(kind="chat", base_dir=Path("."))
        )


def test_quality_heuristics():
    ctx = OpContext(kind="chat", base_dir=Path("."))
    loop = "I am sorry. " * 20
    rows = rows_of(
        [
            ("q", "A normal, complete answer about gardens and the sun."),
            ("q", loop),
            ("q", "@@@ ### $$$ %%% ^^^ &&& *** !!!"),
            ("q", "Here is the code:\n```python\nprint(1)\n"),
            ("q", "The best way to start is to choose a spot and"),
            ("q", "The list:"),
            ("q", "42"),
        ]
    )
    res = quality_filter(rows, QualitySpec(), ctx)
    assert [r.line for r in res.kept] == [1, 7]
    assert {r.line: why for r, why, _ in res.removed} == {
        2: "repetitive",
        3: "symbols",
        4: "truncated",
        5: "truncated",
        6: "truncated",
    }
    assert (
        repetition(loop) > 0.8
        and repetition("one two three four five six seven eight nine ten eleven twelve") == 0
    )
    assert symbol_ratio("abc!") == 0.25


def test_quality_thresholds_can_be_disabled():
    ctx = OpContext(kind="chat", base_dir=Path("."))
    rows = rows_of([("q", "@@@ ### $$$")])
    assert quality_filter(rows, QualitySpec(max_symbol_ratio=None), ctx).kept == rows


def test_regex_and_keywords():
    ctx = OpContext(kind="chat", base_dir=Path("."))
    rows = rows_of(
        [
            ("Tell me a secret", "As an AI language model, I cannot."),
            ("What is a cat?", "A small animal."),
            ("Category theory?", "Maths about arrows."),
            ("Fish?", "Not a CAT."),
        ]
    )
    res = regex_filter(rows, RegexSpec(drop=[r"as an ai language model"], keywords=["cat"]), ctx)
    assert [r.line for r in res.kept] == [3]  # 'Category' is not the keyword 'cat'
    assert [why for _, why, _ in res.removed] == ["regex", "keyword", "keyword"]
    only_answers = regex_filter(rows, RegexSpec(keywords=["cat"], field="answer", ignore_case=False), ctx)
    assert [r.line for r in only_answers.kept] == [1, 2, 3, 4]
