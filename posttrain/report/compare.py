"""`posttrain compare RUN_A RUN_B`: the report page with two runs side by side, and paired tests between them."""

from __future__ import annotations

from pathlib import Path

from posttrain.report.answers import paired
from posttrain.report.collect import BASE, RunData, read_run
from posttrain.report.page import write_page
from posttrain.report.sections import Section, Table, run_sections


def pairs_to_compare(a: RunData, b: RunData) -> list[tuple[str, str]]:
    """Model pairs (A's, B's): the same stage name in both runs, then the last stage of each."""
    names_a = [n for n, _ in a.models()]
    names_b = [n for n, _ in b.models()]
    out = [(n, n) for n in names_a if n in names_b]
    last = (names_a[-1], names_b[-1]) if names_a and names_b else None
    if last and last not in out:
        out.append(last)
    return out


def paired_section(a: RunData, b: RunData) -> Section:
    """Per matched pair and task: B − A, and the paired test where both scored the same documents."""
    evals_a, evals_b = dict(a.models()), dict(b.models())
    table = Table([f"{a.name} (A)", f"{b.name} (B)", "task", "A", "B", "B − A", "p (paired)", "documents", "verdict"],
                  [], {3, 4, 5, 6, 7})
    for name_a, name_b in pairs_to_compare(a, b):
        ea, eb = evals_a[name_a], evals_b[name_b]
        for task in [t for t in ea.scores if t in eb.scores]:
            test = paired(ea, eb, task)
            delta = eb.scores[task] - ea.scores[task]
            if test is None:
                p, n, verdict = "-", "0", "no shared documents: no paired test"
            elif test.p_value is None:
                p, n, verdict = "-", str(test.n_paired), test.note or "no paired test"
            else:
                p, n = f"{test.p_value:.3g}", str(test.n_paired)
                verdict = ("B better" if delta > 0 else "A better") if test.significant else "within noise"
            table.rows.append([name_a, name_b, task, f"{ea.scores[task]:.3f}", f"{eb.scores[task]:.3f}",
                               f"{delta:+.3f}", p, n, verdict])
    legend = ("Paired on the documents both models were scored on (McNemar for 0/1 scores, else a paired "
              "bootstrap); within noise means p ≥ 0.05.")
    return Section("paired", f"{a.name} vs {b.name}", table.html("paired") + f"<p class='legend'>{legend}</p>",
                   table.md() + f"\n{legend}\n")


def write_compare(run_a: Path, run_b: Path, out_dir: Path) -> Path:
    """`compare-<A>-vs-<B>.html` (and .md) in `out_dir`; returns the HTML path."""
    a, b = read_run(Path(run_a)), read_run(Path(run_b))
    sections = run_sections([a, b])
    at = next((i + 1 for i, s in enumerate(sections) if s.id == "eval"), len(sections))
    sections.insert(at, paired_section(a, b))
    stem = f"compare-{a.name}-vs-{b.name}"
    html_path, _ = write_page(Path(out_dir), stem, f"posttrain compare: {a.name} vs {b.name}",
                              f"A = {a.run_dir} · B = {b.run_dir} · {BASE} and same-named stages paired", sections)
    return html_path
