"""The README.md model card written next to every exported artifact.

A card says what the artifact is (base, the stages folded into it and the
adapters they left), where it came from (recipe), how good it is (scores with
95% intervals where lm-eval gave a standard error) and how to serve it with
each engine that was exported.
"""

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
    adapters: list[str] | None = None,
    recipe_path: str | None = None,
    stderrs: dict[str, float] | None = None,
    serving: list[str] | None = None,
) -> str:
    """Markdown with a YAML header; `serving` holds one ready section per engine (vLLM, llama.cpp, Ollama)."""
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
    ]
    if adapters:
        lines.append("- Lineage (LoRA adapters merged in order onto the base): " + ", ".join(f"`{a}`" for a in adapters))
    if recipe_path:
        lines.append(f"- Recipe as run: `{recipe_path}`")
    lines.append("")
    if scores:
        stderrs = stderrs or {}
        lines += ["## Evaluation (lm-eval)", "", "| task | base | this model | 95% interval | delta |", "|---|---|---|---|---|"]
        for task, score in scores.items():
            before = base_scores.get(task)
            delta = f"{score - before:+.3f}" if before is not None else ""
            err = stderrs.get(task)
            interval = f"{score - 1.96 * err:.3f} – {score + 1.96 * err:.3f}" if err is not None else "-"
            lines.append(f"| {task} | {_fmt(before)} | {score:.3f} | {interval} | {delta} |")
        lines.append("")
    lines += ["## Load", "", "```python", how_to_load.strip(), "```", ""]
    for section in serving or []:
        lines += [section.strip(), ""]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"
