"""The building blocks every report section is made of: `Section`, `Table`, images and number formatting."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from posttrain.report.collect import RunData


@dataclass
class Section:
    id: str
    title: str
    html: str
    md: str
    images: dict[str, bytes] = field(default_factory=dict)
    """File name → PNG bytes: inlined in the HTML, written beside report.md and linked from it."""


@dataclass(frozen=True)
class Cell:
    """A cell with more than its text: a CSS class (a significant change, a failed check) and a tooltip.

    The text is what both renderings show; the class and tooltip exist in the HTML only, so anything a
    markdown reader needs too belongs in the text or in a note under the table."""

    text: str
    css: str = ""
    tip: str = ""


@dataclass
class Table:
    """A table rendered both ways; cells are plain text (escaped on the way out) or `Cell`s."""

    header: list[str]
    rows: list[list[str | Cell]]
    numeric: set[int] = field(default_factory=set)

    def html(self, css: str = "") -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>" + "".join(_html_cell(c, i in self.numeric) for i, c in enumerate(row)) + "</tr>"
            for row in self.rows
        )
        return f"<table class='{css}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def md(self) -> str:
        if not self.rows:
            return "_none_\n"
        align = ["---:" if i in self.numeric else "---" for i in range(len(self.header))]
        lines = ["| " + " | ".join(_md_cell(h) for h in self.header) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"


def _html_cell(cell: str | Cell, numeric: bool) -> str:
    if isinstance(cell, str):
        return f"<td{' class=num' if numeric else ''}>{html.escape(cell)}</td>"
    classes = " ".join(c for c in ("num" if numeric else "", cell.css) if c)
    attrs = (f" class='{classes}'" if classes else "") + (f" title='{html.escape(cell.tip)}'" if cell.tip else "")
    return f"<td{attrs}>{html.escape(cell.text)}</td>"


def _md_cell(cell: str | Cell) -> str:
    text = cell.text if isinstance(cell, Cell) else cell
    return text.replace("|", "\\|").replace("\n", "<br>")


def img(name: str, alt: str) -> tuple[str, str]:
    """The placeholder the page replaces with the inlined image, and the markdown link."""
    return f"<img class='plot' data-src='{name}' alt='{html.escape(alt)}'>", f"![{alt}](report/{name})\n"


def when(ts: float | None) -> str:
    """A Unix time as `YYYY-MM-DD HH:MM UTC`, or `-`."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if ts else "-"


def num(value: Any, digits: int = 3) -> str:
    """A number with `digits` decimals, or `-` when it is not one."""
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def prefix(run: RunData, runs: Sequence[RunData]) -> str:
    """`<run>/` before stage names on a page with several runs, nothing on a one-run page."""
    return f"{run.name}/" if len(runs) > 1 else ""
