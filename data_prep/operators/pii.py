"""`pii`: find emails, phone numbers, IP addresses and key-like strings; scrub or drop.

Scrubbing replaces each match with a placeholder (<EMAIL>, <PHONE>, <IP>,
<KEY>) in message contents and chosen/rejected/completion texts. The answer columns of
prompt rows are left alone: a reward function compares against them verbatim.
Patterns favour precision: a bare run of digits ("12345678", an arithmetic
answer) is not a phone number; a phone needs separators or a leading +.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Literal

from pydantic import Field

from data_prep.operators.base import OpContext, Operator, OpResult, StrictSpec
from data_prep.rows import Row

PiiKind = Literal["email", "phone", "ip", "key"]


class PiiSpec(StrictSpec):
    action: Literal["scrub", "drop"] = Field(
        default="scrub",
        description="`scrub` replaces matches with placeholders like <EMAIL>; `drop` removes the row.",
    )
    kinds: list[PiiKind] = Field(
        default_factory=lambda: ["email", "phone", "ip", "key"], description="Which kinds of PII to look for."
    )


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
PATTERNS: dict[str, re.Pattern[str]] = {
    # Order matters: keys before phones (digits inside keys), IPs before phones.
    "key": re.compile(
        r"\b(?:sk-(?:proj-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}"
        r"|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z]{30,}"
        r"|(?=[A-Za-z0-9+/_-]*\d)(?=[A-Za-z0-9+/_-]*[A-Za-z])[A-Za-z0-9+/_-]{32,})\b"
    ),
    "email": re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
    "ip": re.compile(
        rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\d.])|\b(?:[0-9A-Fa-f]{{1,4}}:){{7}}[0-9A-Fa-f]{{1,4}}\b"
    ),
    "phone": re.compile(
        r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,3}"
        r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4})(?!\w)"
    ),
}
PLACEHOLDER = {"email": "<EMAIL>", "phone": "<PHONE>", "ip": "<IP>", "key": "<KEY>"}


def scrub(text: str, kinds: list[str], counts: Counter[str]) -> str:
    for kind in PATTERNS:
        if kind in kinds:
            text, n = PATTERNS[kind].subn(PLACEHOLDER[kind], text)
            if n:
                counts[kind] += n
    return text


def _scrub_row(data: dict, kind: str, kinds: list[str], counts: Counter[str]) -> dict:
    out = dict(data)
    key = "messages" if kind == "chat" else "prompt"
    out[key] = [{**m, "content": scrub(m["content"], kinds, counts)} for m in data[key]]
    if kind == "preference":
        out["chosen"] = scrub(data["chosen"], kinds, counts)
        out["rejected"] = scrub(data["rejected"], kinds, counts)
    if kind == "unpaired":
        out["completion"] = scrub(data["completion"], kinds, counts)
    return out


def pii_step(rows: list[Row], spec: PiiSpec, ctx: OpContext) -> OpResult:
    totals: Counter[str] = Counter()
    rows_with_pii = 0
    result = OpResult(kept=[])
    for row in rows:
        counts: Counter[str] = Counter()
        scrubbed = _scrub_row(row.data, ctx.kind, spec.kinds, counts)
        found = counts
        if not found:
            result.kept.append(row)
            continue
        rows_with_pii += 1
        totals.update(found)
        if spec.action == "drop":
            result.removed.append((row, "pii", ", ".join(f"{k} {n}" for k, n in found.items())))
        else:
            row.data = scrubbed
            result.kept.append(row)
    key = "scrubbed" if spec.action == "scrub" else "found"
    result.details = {key: dict(totals), "rows_with_pii": rows_with_pii}
    return result


def _action(value: Any) -> Any:
    return {"action": value} if isinstance(value, str) else value


OPERATOR = Operator(
    name="pii",
    spec=PiiSpec,
    apply=pii_step,
    description="PII scrubbing (emails, phones, IPs, key-like strings); `scrub` or `drop`.",
    short_forms=_action,
)
