"""The `posttrain` command line: run, validate, plan, data, export.

User mistakes (`UserError`) print one message and exit 2; a diverged training
run exits 1 with where it stopped; Ctrl-C exits 130 and a rerun resumes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console

from posttrain.errors import TrainingError, UserError

app = typer.Typer(
    name="posttrain",
    help="Post-train a language model from one YAML recipe: curate → SFT → distill → DPO → GRPO, "
    "each stage evaluated with lm-eval and exported for serving engines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file, or the name of a shipped recipe (quickstart).")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a recipe field: --set stages.sft.train.lr=1e-4 (repeatable)."),
]
RunsOpt = Annotated[Path, typer.Option("--runs-dir", help="Where run directories go.")]


@app.command()
def run(
    recipe: RecipeArg,
    set_: SetOpt = None,
    force: Annotated[
        list[str] | None, typer.Option("--force", help="Rerun this stage (and those after it) even if cached.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and show the plan; train nothing.")] = False,
    runs_dir: RunsOpt = Path("runs"),
) -> None:
    """Run every stage of RECIPE; completed stages whose inputs are unchanged are reused."""
    loaded = _load(recipe, set_)
    if dry_run:
        _show_plan(loaded, runs_dir)
        return
    from posttrain.pipeline.runner import run_recipe
    from posttrain.report import print_run_report

    report = run_recipe(loaded, runs_dir=runs_dir, force=set(force or ()), console=console)
    print_run_report(report, console=console)


@app.command()
def validate(
    recipes: Annotated[list[Path], typer.Argument(help="One or more recipe files.")],
    set_: SetOpt = None,
) -> None:
    """Check recipes without running anything; every problem is listed with its file:line:col."""
    failures = []
    for path in recipes:
        try:
            _load(path, set_)
            console.print(f"[green]✓[/] {path}")
        except UserError as exc:
            failures.append(exc)
            err_console.print(f"[red]✗[/] {exc.render()}")
    if failures:
        raise typer.Exit(2)


@app.command()
def plan(recipe: RecipeArg, set_: SetOpt = None, runs_dir: RunsOpt = Path("runs")) -> None:
    """Show the stages, what each starts from and trains on, and which are cached."""
    _show_plan(_load(recipe, set_), runs_dir)


@app.command()
def data(recipe: RecipeArg, set_: SetOpt = None, runs_dir: RunsOpt = Path("runs")) -> None:
    """Run only the data curation of RECIPE and print each dataset's report."""
    from posttrain.models.loading import load_tokenizer
    from posttrain.models.resolve import resolve_model
    from posttrain.pipeline.datasets import prepare_datasets

    loaded = _load(recipe, set_)
    model = loaded.recipe.model
    base = resolve_model(model.base, base_dir=loaded.base_dir, prefer_hub=model.prefer_hub)
    tokenizer = load_tokenizer(base.path, trust_remote_code=model.trust_remote_code)
    run_dir = (runs_dir / loaded.recipe.name).resolve()
    prepare_datasets(loaded, run_dir=run_dir, tokenizer=tokenizer, console=console, only_used=False)


@app.command()
def leaderboard(
    runs_dir: RunsOpt = Path("runs"),
    task: Annotated[str | None, typer.Option("--task", help="Rank by this task (default: mean over tasks).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows to show.")] = 20,
) -> None:
    """Every evaluated model of every run in RUNS_DIR, best first."""
    from posttrain.pipeline.leaderboard import LEADERBOARD_DB
    from posttrain.report import print_board

    print_board(runs_dir / LEADERBOARD_DB, task=task, limit=limit, console=console)


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="Run directory (runs/<name>), or a run name inside --runs-dir.")],
    stage: Annotated[str | None, typer.Option("--stage", help="Stage to export (default: the last completed).")] = None,
    formats: Annotated[str, typer.Option("--format", help="Comma-separated: peft,merged,vllm,gguf,ollama.")] = "peft,merged",
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: RUN/STAGE/export).")] = None,
    runs_dir: RunsOpt = Path("runs"),
) -> None:
    """Export a stage of a finished run for serving engines; formats already up to date are reused."""
    from posttrain.export.run_export import export_run

    run_dir = runs_dir / run if not run.exists() and (runs_dir / run).exists() else run
    paths = export_run(run_dir.resolve(), stage, [f.strip() for f in formats.split(",") if f.strip()], out)
    for fmt, path in paths.items():
        console.print(f"[green]✓[/] {fmt}: {path}")


def _load(recipe: Path, overrides: list[str] | None):
    from posttrain.paths import recipes_dir
    from posttrain.recipe.loader import load_recipe

    if not recipe.exists() and recipe.suffix == "" and (recipes_dir() / f"{recipe}.yaml").exists():
        recipe = recipes_dir() / f"{recipe}.yaml"
    return load_recipe(recipe, overrides or [])


def _show_plan(loaded, runs_dir: Path) -> None:
    from posttrain.report import print_plan

    print_plan(loaded, runs_dir=runs_dir, console=console)


def main() -> None:
    # Everything runs offline by default: a recipe that names a hub id must say so
    # by exporting HF_HUB_OFFLINE=0.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        code = app(standalone_mode=False)
    except UserError as exc:
        err_console.print(f"[red]error:[/] {exc.render()}")
        sys.exit(exc.exit_code)
    except TrainingError as exc:
        err_console.print(f"[red]training failed:[/] {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("\n[yellow]interrupted[/]: finished stages are kept; rerun the same command to resume.")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # usage errors, in non-standalone mode
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
