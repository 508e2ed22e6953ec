from __future__ import annotations

import pytest

from data_prep.formats import RowError, detect_format, normalize

U, A, S = "user", "assistant", "system"


def m(role, content):
    return {"role": role, "content": content}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"instruction": "Add", "input": "2 and 3", "output": "5"}, [m(U, "Add\n\n2 and 3"), m(A, "5")]),
        (
            {"instruction": "Hi", "output": "Hello", "system": "Be kind"},
            [m(S, "Be kind"), m(U, "Hi"), m(A, "Hello")],
        ),
        (
            {
                "conversations": [
                    {"from": "system", "value": ""},
                    {"from": "human", "value": "q"},
                    {"from": "gpt", "value": "a"},
                ]
            },
            [m(U, "q"), m(A, "a")],
        ),
        ({"prompt": "q", "completion": "a"}, [m(U, "q"), m(A, "a")]),
        ({"prompt": [m(U, "q")], "completion": [m(A, "a")]}, [m(U, "q"), m(A, "a")]),
        ({"messages": [m(U, [{"type": "text", "text": "q"}]), m(A, "a")]}, [m(U, "q"), m(A, "a")]),
    ],
)
def test_chat_conversions(record, expected):
    assert normalize(record, "auto", "chat") == {"messages": expected}


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([m(U, "q")], "turn_order"),
        ([m(A, "a"), m(U, "q")], "turn_order"),
        ([m(U, "q"), m(U, "q2"), m(A, "a")], "turn_order"),
        ([m(U, "q"), m(A, "a"), m(S, "late system")], "turn_order"),
        ([m("tool", "x"), m(A, "a")], "bad_role"),
        ([m(U, "q"), m(A, "")], "empty_turn"),
        ([m(U, "q"), {"role": A, "content": None}], "empty_turn"),
        ([m(U, "q"), {"role": A, "content": 5}], "bad_content"),
        ([m(U, "q\ud800"), m(A, "a")], "invalid_unicode"),
        ([], "bad_messages"),
    ],
)
def test_chat_validation(messages, reason):
    with pytest.raises(RowError) as e:
        normalize({"messages": messages}, "messages", "chat")
    assert e.value.reason == reason


def test_preference_shapes():
    flat = normalize({"prompt": "q", "chosen": "good", "rejected": "bad"}, "auto", "preference")
    assert flat == {"prompt": [m(U, "q")], "chosen": "good", "rejected": "bad"}
    conversational = {"prompt": [m(U, "q")], "chosen": [m(A, "good")], "rejected": [m(A, "bad")]}
    assert normalize(conversational, "auto", "preference") == flat
    hh = {"chosen": [m(U, "q"), m(A, "good")], "rejected": [m(U, "q"), m(A, "bad")]}
    assert normalize(hh, "auto", "preference") == flat
    with pytest.raises(RowError, match="same text"):
        normalize({"prompt": "q", "chosen": "x", "rejected": " x"}, "auto", "preference")
    with pytest.raises(RowError) as e:
        normalize(
            {"chosen": [m(U, "q"), m(A, "g")], "rejected": [m(U, "other"), m(A, "b")]}, "auto", "preference"
        )
    assert e.value.reason == "no_shared_prompt"


def test_prompt_rows_keep_answer_columns():
    row = normalize(
        {"prompt": "What is 2+3?", "answer": "5", "constraints": {"max_words": 3}}, "auto", "prompt"
    )
    assert row == {"prompt": [m(U, "What is 2+3?")], "answer": "5", "constraints": {"max_words": 3}}
    assert normalize({"instruction": "Say hi", "output": "hi"}, "auto", "prompt") == {
        "prompt": [m(U, "Say hi")],
        "answer": "hi",
    }
    with pytest.raises(RowError, match="expected user"):
        normalize({"prompt": [m(U, "q"), m(A, "a")]}, "auto", "prompt")


def test_detection_and_kind_mismatch():
    assert detect_format({"messages": [{"from": "human", "value": "x"}]}) == "sharegpt"
    assert detect_format({"prompt": "p", "chosen": "c", "rejected": "r"}) == "preference"
    with pytest.raises(RowError) as e:
        normalize({"prompt": "p", "chosen": "c", "rejected": "r"}, "auto", "chat")
    assert e.value.reason == "wrong_format"
    with pytest.raises(RowError) as e:
        normalize({"text": "t"}, "auto", "chat")
    assert e.value.reason == "unrecognized_format"


def test_detection_prefers_the_reading_that_fits_the_kind():
    uf = {
        "prompt": "q",
        "chosen": [m(U, "q"), m(A, "g")],
        "rejected": [m(U, "q"), m(A, "b")],
        "messages": [m(U, "q"), m(A, "g")],
    }
    assert detect_format(uf, "preference") == "preference"
    assert detect_format(uf, "chat") == "messages"
    assert detect_format(uf, "unpaired") == "preference"
    assert (
        detect_format({"prompt": "p", "completion": "c"}, "prompt") == "prompt"
    )  # completion kept as a column
    assert detect_format({"prompt": "p", "completion": "c", "label": True}) == "kto"
    assert detect_format({"question": "q", "answer": "#### 1"}, "chat") == "gsm8k"
    # A KTO row labelled undesirable must never become an SFT target via its prompt/completion reading.
    with pytest.raises(RowError, match="a kto row cannot make a chat row"):
        detect_format({"prompt": "p", "completion": "c", "label": True}, "chat")


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (
            {"prompt": "q", "chosen": [m(U, "q"), m(A, "same")], "rejected": [m(U, "q"), m(A, "same")]},
            "identical_pair",
        ),
        (
            {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: a"},
            "identical_pair",
        ),
        (
            {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: other\n\nAssistant: b"},
            "no_shared_prompt",
        ),
        ({"chosen": "good", "rejected": "bad"}, "no_shared_prompt"),
        (
            {
                "chosen": [m(U, "q"), m(A, "x"), m(U, "more"), m(A, "g")],
                "rejected": [m(U, "q"), m(A, "y"), m(U, "more"), m(A, "b")],
            },
            "bad_preference",
        ),
        (
            {"prompt": "unrelated", "chosen": [m(U, "q"), m(A, "g")], "rejected": [m(U, "q"), m(A, "b")]},
            "prompt_mismatch",
        ),
        ({"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant:"}, "empty_turn"),
    ],
)
def test_bad_pairs_are_rejected_with_their_reason(record, reason):
    with pytest.raises(RowError) as e:
        normalize(record, "auto", "preference")
    assert e.value.reason == reason


def test_explicit_presets_check_their_own_columns():
    llama = "<|start_header_id|>user<|end_header_id|>\n\nq<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\na<|eot_id|>"
    assert normalize({"text": llama}, "llama3", "chat") == {"messages": [m(U, "q"), m(A, "a")]}
    with pytest.raises(RowError) as e:
        normalize({"text": llama}, "chatml", "chat")
    assert e.value.reason == "bad_transcript"
    with pytest.raises(RowError, match="missing column 'response'"):
        normalize({"instruction": "i", "output": "r"}, "dolly", "chat")
    with pytest.raises(RowError) as e:
        normalize({"prompt": "p", "completion": "c", "label": "maybe"}, "kto", "unpaired")
    assert e.value.reason == "bad_label"


def test_readme_format_table_matches_detection_order_and_kinds():
    from pathlib import Path
    from typing import get_args

    from data_prep.formats import DETECTION_ORDER
    from data_prep.formats.transcripts import TRANSCRIPT_STYLES
    from data_prep.spec import COMPATIBLE_FORMATS, SourceFormat

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Dataset formats", 1)[1]
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| `")][1:]  # past the header
    documented = []
    for cells in rows:
        names = [n.strip(" `|") for n in cells[0].split(" / ")]
        kinds = [k.strip(" |") for k in cells[-1].split(",")]
        for name in names:
            documented.append(name)
            assert kinds == [
                k for k in ("chat", "preference", "prompt", "unpaired") if name in COMPATIBLE_FORMATS[k]
            ], name
    assert documented == [f for f, _ in DETECTION_ORDER] + list(TRANSCRIPT_STYLES)
    assert set(documented) == set(get_args(SourceFormat)) - {"auto"}
