"""The README.md model card written next to every exported artifact."""

from __future__ import annotations

from typing import Any


def model_card(
    *,
    title: str,
    base_ref: str,
    base_path: str,
    recipe_name: str,
    stage: str,
    chain: list[str],
    scores: dict[str, float],
    base_scores: dict[str, float],
    how_to_load: str,
) -> str:
    lines = [
        "---",
        f"base_model: {base_path}",
        "library_name: peft" if "PeftModel" in how_to_load else "library_name: transformers",
        "tags: [posttrain]",
        "---",
        f"# {title}",
        "",
        f"Trained by posttrain, recipe `{recipe_name}`, stage `{stage}`.",
        "",
        f"- Base model: `{base_ref}` (weights at `{base_path}`)",
        f"- Stages folded into this artifact, in order: {', '.join(f'`{s}`' for s in chain) or 'none'}",
        "",
    ]
    if scores:
        lines += ["## Evaluation (lm-eval)", "", "| task | base | this model | delta |", "|---|---|---|---|"]
        for task, score in scores.items():
            before = base_scores.get(task)
            delta = f"{score - before:+.3f}" if before is not None else ""
            lines.append(f"| {task} | {_fmt(before)} | {score:.3f} | {delta} |")
        lines.append("")
    lines += ["## Load", "", "```python", how_to_load.strip(), "```", ""]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"
