"""The curation report: JSON for machines, Markdown + PNG for people, a rich table for the terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data_prep.records import PreparedDataset, StepRecord
from data_prep.rows import atomic_writer


def length_stats(lengths: list[int], unit: str, bins: int = 20) -> dict[str, Any]:
    if not lengths:
        return {"unit": unit, "count": 0}
    s = sorted(lengths)

    def pct(q: float) -> int:
        return s[min(len(s) - 1, int(q * len(s)))]

    lo, hi = s[0], s[-1]
    width = max(1, -(-(hi - lo + 1) // bins))
    counts = [0] * bins
    for v in s:
        counts[min(bins - 1, (v - lo) // width)] += 1
    return {
        "unit": unit,
        "count": len(s),
        "min": lo,
        "max": hi,
        "mean": round(sum(s) / len(s), 1),
        "p50": pct(0.5),
        "p95": pct(0.95),
        "histogram": {"edges": [lo + i * width for i in range(bins + 1)], "counts": counts},
    }


def write_length_plot(path: Path, lengths: list[int], unit: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    if lengths:
        ax.hist(lengths, bins=min(50, max(5, len(set(lengths)))), color="#4C72B0")
    ax.set_xlabel(f"{unit} per row")
    ax.set_ylabel("rows")
    ax.set_title(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    lines = [f"# Dataset `{report['name']}` ({report['kind']})", ""]
    lines += [f"Fingerprint `{report['fingerprint']}`, seed {report['seed']}.", ""]
    lines += ["| source | read | malformed | formats detected |", "|---|---:|---:|---|"]
    for src in report["sources"]:
        lines.append(f"| `{src['source']}` | {src['read']} | {src['malformed']} | {formats_text(src)} |")
    lines.append("")
    steps = [StepRecord.from_json(s) for s in report["steps"]]
    lines += ["| step | rows in | removed | rows out | reasons |", "|---|---:|---:|---:|---|"]
    for step in steps:
        reasons = ", ".join(f"{k}: {v}" for k, v in step.reasons.items())
        lines.append(f"| {step.step} | {step.rows_in} | {step.removed} | {step.rows_out} | {reasons} |")
    b = report["balance"]
    lines += [
        "",
        f"Rows read {b['read']} = out {b['out']} + malformed {b['malformed']} + removed {b['removed']}"
        f" - added {b['added']} (mix repeats, pairs split into unpaired rows).",
        f"Train {report['train_rows']}, eval {report['eval_rows']}.",
        "",
    ]
    ls = report["lengths"]
    if ls.get("count"):
        lines += [
            f"Lengths ({ls['unit']}): min {ls['min']}, p50 {ls['p50']}, mean {ls['mean']}, p95 {ls['p95']}, "
            f"max {ls['max']}.",
            "",
            "![lengths](lengths.png)",
            "",
        ]
    for step in steps:
        if step.details:
            lines.append(f"**{step.step}**: `{json.dumps(step.details)}`")
            lines.append("")
    if report["examples"]:
        lines += ["## Example removed rows", ""]
        for op, examples in report["examples"].items():
            lines.append(f"### {op}")
            for ex in examples:
                lines.append(f"- `{ex['source']}:{ex['line']}` {ex['reason']}: {ex['detail']}")
                shown = " ".join(ex["row"][:200].split()).replace("`", "'")
                lines.append(f"  `{shown}`")
            lines.append("")
    with atomic_writer(path) as f:
        f.write("\n".join(lines))


def formats_text(source_stats: dict[str, Any]) -> str:
    """`messages 120, sharegpt 3`: how many records of a source were read in each format."""
    found = source_stats.get("formats") or {}
    return ", ".join(f"{fmt} {n}" for fmt, n in found.items()) or "-"


def _reasons_cell(step: StepRecord) -> str:
    details = step.details
    parts = [f"{k} {v}" for k, v in list(step.reasons.items())[:4]]
    if details.get("scrubbed"):
        found = ", ".join(f"{k} {v}" for k, v in details["scrubbed"].items())
        parts.append(f"scrubbed {found} in {details['rows_with_pii']} rows")
    if details.get("warning"):
        parts.append(f"[yellow]warning: {details['warning']}[/yellow]")
    return ", ".join(parts)


def render_report(prepared: PreparedDataset) -> Any:
    """Terminal summary: rows in/out per step, with the reasons rows left."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    report = prepared.report
    table = Table(title=f"dataset {report['name']} ({report['kind']})", title_justify="left")
    table.add_column("step")
    table.add_column("in", justify="right")
    table.add_column("removed", justify="right")
    table.add_column("out", justify="right")
    table.add_column("reasons", overflow="fold")
    for step in prepared.steps:
        table.add_row(
            step.step, str(step.rows_in), str(step.removed or "-"), str(step.rows_out), _reasons_cell(step)
        )
    b = report["balance"]
    ls = report["lengths"]
    lengths = f"  {ls['unit']} p50 {ls['p50']} p95 {ls['p95']} max {ls['max']}" if ls.get("count") else ""
    formats = "".join(f"{src['source']}: {formats_text(src)}\n" for src in report["sources"])
    footer = Text(
        f"{formats}train {report['train_rows']}  eval {report['eval_rows']}  "
        f"malformed {b['malformed']}  removed {b['removed']}{lengths}\n-> {prepared.train_path.parent}",
        style="dim",
    )
    return Group(table, footer)
