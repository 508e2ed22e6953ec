from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from data_prep.operators import OpContext
from data_prep.operators.pii import PiiSpec, pii_step, scrub
from data_prep.rows import Row

ALL = ["email", "phone", "ip", "key"]


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("write to jane.doe+x@mail.example.co.uk today", "write to <EMAIL> today", "email"),
        ("call (415) 555-0132 now", "call <PHONE> now", "phone"),
        ("call +44 20 7946 0958", "call <PHONE>", "phone"),
        ("or 415-555-0100.", "or <PHONE>.", "phone"),
        ("host 192.168.10.254 is up", "host <IP> is up", "ip"),
        ("v6 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "v6 <IP>", "ip"),
        ("export KEY=sk-proj-abcdefghijklmnopqrstuvwxyz012345", "export KEY=<KEY>", "key"),
        ("AKIAIOSFODNN7EXAMPLE", "<KEY>", "key"),
        ("token ghp_0123456789abcdefghijklmnopqrstuvwxyzAB", "token <KEY>", "key"),
    ],
)
def test_finds_each_kind(text, expected, kind):
    counts: Counter[str] = Counter()
    assert scrub(text, ALL, counts) == expected
    assert counts == Counter({kind: 1})


@pytest.mark.parametrize(
    "text",
    [
        "12345678 + 87654321 = 99999999",
        "On 2024-01-15 at 10:30 it cost 3.14 dollars",
        "version 1.2.3 of the library",
        "the years 1999-2005",
        "an_ordinary_identifier_name_in_code",
        "What is 48 - 8?",
    ],
)
def test_leaves_ordinary_text_alone(text):
    counts: Counter[str] = Counter()
    assert scrub(text, ALL, counts) == text
    assert not counts


def _rows():
    def row(i, a):
        return Row(
            {"messages": [{"role": "user", "content": "Reach me?"}, {"role": "assistant", "content": a}]},
            "t",
            i,
            0,
        )

    return [row(1, "Mail bob@example.com or call 415-555-0100."), row(2, "No contact details here.")]


def test_scrub_counts_and_keeps_rows():
    res = pii_step(_rows(), PiiSpec(), OpContext(kind="chat", base_dir=Path(".")))
    assert len(res.kept) == 2 and not res.removed
    assert res.kept[0].data["messages"][1]["content"] == "Mail <EMAIL> or call <PHONE>."
    assert res.details == {"scrubbed": {"email": 1, "phone": 1}, "rows_with_pii": 1}


def test_drop_and_kind_selection():
    ctx = OpContext(kind="chat", base_dir=Path("."))
    res = pii_step(_rows(), PiiSpec(action="drop"), ctx)
    assert [r.line for r in res.kept] == [2] and res.removed[0][1] == "pii"
    only_ip = pii_step(_rows(), PiiSpec(kinds=["ip"]), ctx)
    assert only_ip.details["rows_with_pii"] == 0


def test_preference_rows_scrub_both_answers():
    data = {"prompt": [{"role": "user", "content": "email?"}], "chosen": "a@b.io", "rejected": "c@d.io no"}
    res = pii_step([Row(data, "t", 1, 0)], PiiSpec(), OpContext(kind="preference", base_dir=Path(".")))
    assert res.kept[0].data["chosen"] == "<EMAIL>" and res.kept[0].data["rejected"] == "<EMAIL> no"
