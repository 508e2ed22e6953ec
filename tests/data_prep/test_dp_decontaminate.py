"""Decontamination removes every planted eval overlap and no clean row, including template look-alikes."""

from __future__ import annotations

from pathlib import Path

from data_prep.operators import OpContext
from data_prep.operators.decontaminate import DecontaminateSpec, decontaminate
from data_prep.rows import Row

EVAL = [
    'Lena shares 8 crayons equally among 2 friends. How many crayons does each friend get? End your reply with "Answer: <number>".',
    "What is 12 + 7?",
    "Describe how earthquakes are measured. Use no more than 19 words. Make sure to use the words always and easy.",
    "19",  # a bare answer: too short to count, would match everything
    "The mitochondria is the membrane-bound organelle that generates most of the chemical energy needed "
    "to power the biochemical reactions of the cell, stored in adenosine triphosphate.",
]


def chat(i: int, user: str, answer: str = "Sure.") -> Row:
    return Row(
        {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}, "t", i, 0
    )


def test_removes_planted_overlap_and_keeps_clean_rows():
    planted = [
        chat(1, EVAL[0], "The answer is 4.\nAnswer: 4"),  # verbatim prompt
        chat(2, "what is 12+7 ?", "19"),  # short prompt, other spacing and case
        chat(3, "Quick one. " + EVAL[2] + " Thanks!"),  # embedded in a longer turn
        chat(4, "Explain cells.", "Well: " + EVAL[4]),  # long eval text copied into an answer
    ]
    clean = [
        # Same templates as the eval prompts, other names and numbers.
        chat(
            10,
            'Omar shares 9 crayons equally among 3 friends. How many crayons does each friend get? End your reply with "Answer: <number>".',
        ),
        chat(11, "What is 12 - 7?", "5"),
        chat(12, "What is 12 + 75?", "87"),
        chat(
            13,
            "Describe how volcanoes form. Use no more than 19 words. Make sure to use the words always and easy.",
        ),
        chat(14, "How old is she?", "She is 19."),
        chat(15, "Explain cells.", "The mitochondria generates energy for the cell."),
    ]
    ctx = OpContext(kind="chat", base_dir=Path("."), eval_texts=EVAL)
    res = decontaminate(planted + clean, DecontaminateSpec(), ctx)
    assert sorted(r.line for r, _, _ in res.removed) == [1, 2, 3, 4]
    assert sorted(r.line for r in res.kept) == [10, 11, 12, 13, 14, 15]
    assert all(why == "eval_overlap" for _, why, _ in res.removed)
    assert res.details["eval_texts_too_short"] == 1


def test_any_ngram_mode_and_files(tmp_path):
    (tmp_path / "held_out.jsonl").write_text(
        '{"question": "What is the capital of Freedonia, the small country?", "id": 3}\n'
    )
    (tmp_path / "more.txt").write_text(
        "a completely different held out sentence that is long enough to matter here\n"
    )
    rows = [
        chat(1, "Tell me: what is the capital of Freedonia, the small country?"),
        chat(2, "Here is a completely different held out sentence that is long enough to matter here."),
        chat(3, "What is the capital of France?"),
    ]
    spec = DecontaminateSpec(against=["held_out.jsonl", "more.txt"], ngram=8, min_overlap=0)
    res = decontaminate(rows, spec, OpContext(kind="chat", base_dir=tmp_path))
    assert [r.line for r in res.kept] == [3]


def test_preference_and_prompt_rows():
    pref = Row(
        {"prompt": [{"role": "user", "content": "What is 12 + 7?"}], "chosen": "19", "rejected": "20"},
        "t",
        1,
        0,
    )
    prompt = Row({"prompt": [{"role": "user", "content": "What is 12 + 8?"}], "answer": "20"}, "t", 2, 0)
    assert not decontaminate(
        [pref], DecontaminateSpec(), OpContext("preference", Path("."), eval_texts=EVAL)
    ).kept
    assert decontaminate([prompt], DecontaminateSpec(), OpContext("prompt", Path("."), eval_texts=EVAL)).kept


def test_no_eval_texts_warns():
    res = decontaminate([chat(1, "hi")], DecontaminateSpec(), OpContext(kind="chat", base_dir=Path(".")))
    assert len(res.kept) == 1 and "warning" in res.details
