"""The `posttrain` command line: run, validate, plan, data, eval, export, leaderboard, report, compare, ui.

User mistakes (`UserError`) print one message and exit 2; a diverged training
run exits 1 with where it stopped; Ctrl-C exits 130 and a rerun resumes.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from posttrain.cli_inputs import eval_spec_from_options, load_named_recipe
from posttrain.errors import UserError
from posttrain.export.formats import EXPORT_FORMATS, default_formats

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

RecipeArg = Annotated[Path, typer.Argument(metavar="RECIPE", help="Recipe YAML file, or the name of a shipped recipe (quickstart).")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a recipe field: --set stages.sft.train.lr=1e-4 (repeatable)."),
]
RunsOpt = Annotated[Path, typer.Option("--runs-dir", help="Where run directories go.")]
_VERBOSE = False


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            console.print(f"posttrain {version('posttrain')}")
        except PackageNotFoundError:
            console.print("posttrain (not installed as a package)")
        raise typer.Exit(0)


@app.callback()
def _options(
    verbose: Annotated[bool, typer.Option("--verbose", help="Show library logs, warnings and progress bars.")] = False,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print posttrain's version and exit.")] = False,
) -> None:
    """Options for every command (before the command's name)."""
    global _VERBOSE
    _VERBOSE = verbose
    if not verbose:
        from posttrain.quiet import quiet_libraries

        quiet_libraries()


@contextlib.contextmanager
def _log_to_run_dir(run_dir: Path) -> Iterator[None]:
    """Library logs, warnings and stderr of this command go to `<run_dir>/log.txt` (and stay off the console)."""
    from posttrain.cli_exit import OUTPUT_DIR

    OUTPUT_DIR.append(run_dir)  # a full disk is reported against this folder
    if _VERBOSE:
        yield
        return
    from posttrain.quiet import detach_library_handlers, log_to_file, stderr_into

    for library in ("transformers", "datasets", "lm_eval"):  # each installs its stderr handler on import
        with contextlib.suppress(ImportError):
            __import__(library)
    detach_library_handlers()
    with stderr_into(log_to_file(run_dir)):
        yield


@app.command()
def run(
    recipe: RecipeArg,
    set_: SetOpt = None,
    force: Annotated[
        list[str] | None, typer.Option("--force", help="Rerun this stage (and those after it) even if cached.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and show the plan; train nothing.")] = False,
    runs_dir: RunsOpt = Path("runs"),
    num_processes: Annotated[
        int | None,
        typer.Option("--num-processes", min=1, help="Train each stage on N processes (accelerate launch).", show_default=False),
    ] = None,
    accelerate_config: Annotated[
        Path | None,
        typer.Option(
            "--accelerate-config",
            help="accelerate config file for training stages, or a shipped one: ddp, fsdp, zero2, zero3.",
        ),
    ] = None,
) -> None:
    """Run every stage of RECIPE; completed stages whose inputs are unchanged are reused."""
    launch = [f"launch.num_processes={num_processes}"] if num_processes else []
    if accelerate_config is not None:
        shipped = accelerate_config.parent == Path() and not accelerate_config.suffix  # `ddp`, `zero3`, ...
        # A file is relative to where the command runs, unlike paths written inside the recipe.
        launch.append(f"launch.config={accelerate_config if shipped else accelerate_config.expanduser().resolve()}")
    loaded = load_named_recipe(recipe, [*(set_ or []), *launch])
    if dry_run:
        _show_plan(loaded, runs_dir)
        return
    if loaded.recipe.launch.machine_rank > 0:
        _follow(loaded, runs_dir, set(force or ()))
        return
    from posttrain.pipeline.runner import run_recipe
    from posttrain.terminal import print_run_report

    started = time.monotonic()
    with _log_to_run_dir(runs_dir / loaded.recipe.name):
        report = run_recipe(loaded, runs_dir=runs_dir, force=set(force or ()), console=console)
    print_run_report(report, console=console)
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    console.print(f"run {loaded.recipe.name} finished in {minutes}m{seconds:02d}s")


@app.command()
def validate(
    recipes: Annotated[list[Path], typer.Argument(metavar="RECIPE...", help="One or more recipe files.")],
    set_: SetOpt = None,
) -> None:
    """Check recipes without running anything; every problem is listed with its file:line:col."""
    failures = []
    for path in recipes:
        try:
            load_named_recipe(path, set_)
            console.print(f"[green]✓[/] {path}")
        except UserError as exc:
            failures.append(exc)
            err_console.print(f"[red]✗[/] {exc.render()}")
    if failures:
        raise typer.Exit(2)


@app.command()
def plan(recipe: RecipeArg, set_: SetOpt = None, runs_dir: RunsOpt = Path("runs")) -> None:
    """Show the stages, what each starts from and trains on, and which are cached."""
    _show_plan(load_named_recipe(recipe, set_), runs_dir)


@app.command()
def data(recipe: RecipeArg, set_: SetOpt = None, runs_dir: RunsOpt = Path("runs")) -> None:
    """Run only the data curation of RECIPE and print each dataset's report."""
    from posttrain.locking import sole_writer
    from posttrain.pipeline.datasets import prepare_datasets
    from posttrain.pipeline.session import open_session
    from posttrain.run_layout import RunDir

    loaded = load_named_recipe(recipe, set_)
    with _log_to_run_dir(runs_dir / loaded.recipe.name):
        session = open_session(loaded, runs_dir=runs_dir, console=console)
        with sole_writer(RunDir(session.run_dir).lock_file, f"run directory {session.run_dir}"):
            prepare_datasets(session, list(session.recipe.datasets), console=console)


@app.command()
def leaderboard(
    runs_dir: RunsOpt = Path("runs"),
    task: Annotated[str | None, typer.Option("--task", help="Rank by this task (default: mean over tasks).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows to show.")] = 20,
    fmt: Annotated[
        str, typer.Option("--format", help="table, md (markdown), json (with stderr, intervals and each delta's test "
                                           "and p-value), csv, or html (writes RUNS_DIR/leaderboard.html: sortable, "
                                           "filterable by task, linked to each run's report).")
    ] = "table",
) -> None:
    """Every evaluated model of every run in RUNS_DIR, best first (by mean chance-normalized score)."""
    if fmt not in ("table", "md", "json", "csv", "html"):
        raise UserError(f"--format {fmt!r}: choose table, md, json, csv or html")
    from posttrain.leaderboard.store import LEADERBOARD_DB
    from posttrain.terminal import print_board

    if fmt in ("csv", "html"):
        from posttrain.leaderboard.store import top
        from posttrain.report.board import board_csv, write_board_html

        rows = top(runs_dir / LEADERBOARD_DB, task=task, limit=limit)
        if fmt == "csv":
            sys.stdout.write(board_csv(rows))
        else:
            console.print(f"board: {write_board_html(rows, runs_dir)}")
        return
    print_board(runs_dir / LEADERBOARD_DB, task=task, limit=limit, console=console, fmt=fmt)


@app.command("eval")
def eval_(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A run (runs/NAME) or one of its stages (runs/NAME/STAGE), a model folder, a "
                                              "PEFT adapter folder, a .gguf file, an alias or a hub id.")],
    tasks: Annotated[list[str] | None, typer.Option(
        "--tasks", help="Task or group names, comma-separated or repeated; NAME=FILE runs lm-eval task NAME on a "
                        "local data file (default: the recipe's, else pt_arith,pt_arith_mc).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Documents per task (default: all).")] = None,
    include: Annotated[list[Path] | None, typer.Option("--include", help="A folder of your own task YAMLs.")] = None,
    num_fewshot: Annotated[int | None, typer.Option("--num-fewshot", help="Few-shot examples per task.")] = None,
    gen_kwargs: Annotated[str | None, typer.Option(
        "--gen-kwargs", help="Generation settings for generate_until tasks: max_gen_toks=64,temperature=0.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Eval batch size.")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="lm-eval's random seeds.")] = 42,
    recipe: Annotated[Path | None, typer.Option("--recipe", help="Take the eval settings from this recipe's "
                                                 "`eval` section (--tasks/--limit/... override it).")] = None,
    artifact: Annotated[list[str] | None, typer.Option(
        "--artifact", help="Score exported artifacts of RUN (or RUN/STAGE) inside their engines instead: "
                           "gguf:q4_k_m,gguf:q8_0,vllm (the run's own eval settings; compared with the stage).")] = None,
    runs_dir: RunsOpt = Path("runs"),
) -> None:
    """Evaluate MODEL with the same lm-eval code path as a run, print the scores with their uncertainty,
    and record them on the leaderboard (run `eval`). With --artifact, score a run's exported artifacts in
    llama.cpp's or vLLM's server, each a leaderboard row `<stage>@<artifact>` with a paired verdict."""
    from posttrain.pipeline.evaluate_any import evaluate_reference
    from posttrain.terminal import print_eval

    if artifact:
        if tasks or limit is not None or include or num_fewshot is not None or gen_kwargs or recipe:
            raise UserError("--artifact scores with the run's own eval settings (those its stage was scored with, "
                            "for the paired test): drop --tasks/--limit/--include/--num-fewshot/--gen-kwargs/--recipe")
        from posttrain.pipeline.artifact_eval import evaluate_artifacts
        from posttrain.terminal import print_artifacts

        print_artifacts(evaluate_artifacts(Path(model), None, artifact, runs_dir=runs_dir, console=console),
                        console=console)
        return

    spec = eval_spec_from_options(recipe, tasks, limit, include, num_fewshot, gen_kwargs, batch_size)
    outcome = evaluate_reference(model, spec, runs_dir=runs_dir, seed=seed, console=console)
    print_eval(outcome, console=console)


@app.command()
def export(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory (runs/NAME), or a run name inside --runs-dir.")],
    stage: Annotated[str | None, typer.Option("--stage", help="Stage to export (default: the last completed).")] = None,
    formats: Annotated[str, typer.Option("--format", help=f"Comma-separated: {','.join(EXPORT_FORMATS)}.")] = ",".join(
        default_formats()),
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: RUN/STAGE/export).")] = None,
    quant: Annotated[str | None, typer.Option(
        "--quant", help="GGUF quants, comma-separated, the first the one Ollama uses (q4_k_m,q8_0); "
        "default: the recipe's export.gguf.quants.")] = None,
    runs_dir: RunsOpt = Path("runs"),
) -> None:
    """Export a stage of a finished run for serving engines; formats already up to date are reused."""
    from posttrain.export.run_export import export_run

    run_dir = runs_dir / run if not run.exists() and (runs_dir / run).exists() else run
    quants = [q.strip().lower() for q in quant.split(",") if q.strip()] if quant else None
    paths = export_run(run_dir.resolve(), stage, [f.strip() for f in formats.split(",") if f.strip()], out,
                       quants=quants)
    for fmt, path in paths.items():
        console.print(f"[green]✓[/] {fmt}: {path}")


RunArg = Annotated[Path, typer.Argument(metavar="RUN", help="A run directory, or a run's name under --runs-dir.")]


def _run_dir(run: Path, runs_dir: Path) -> Path:
    from posttrain.run_layout import RunDir

    for candidate in (run, runs_dir / run):
        if RunDir(candidate).is_run():
            return candidate
    raise UserError(f"{run}: no run directory there or in {runs_dir} "
                    f"(it holds {RunDir.RECIPE} and stage folders with {RunDir.STAGE})")


@app.command()
def report(run: RunArg, runs_dir: RunsOpt = Path("runs")) -> None:
    """Write RUN's report.html (one self-contained page) and report.md."""
    from posttrain.report import write_report

    console.print(f"report: {write_report(_run_dir(run, runs_dir))}")


@app.command()
def compare(
    run_a: RunArg, run_b: RunArg, runs_dir: RunsOpt = Path("runs"),
    out: Annotated[Path | None, typer.Option("--out", help="Folder for the page (default RUNS_DIR).")] = None,
) -> None:
    """Two runs on one page, stage by stage, with paired tests where they were scored on the same documents."""
    from posttrain.report import write_compare

    page = write_compare(_run_dir(run_a, runs_dir), _run_dir(run_b, runs_dir), out or runs_dir)
    console.print(f"compare: {page}")


@app.command()
def ui(
    runs_dir: RunsOpt = Path("runs"),
    recipes: Annotated[Path, typer.Option("--recipes", help="Folder of recipe files the page may start.")] = Path("."),
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8470,
    host: Annotated[str, typer.Option("--host", help="Address to bind; anything but 127.0.0.1/localhost needs the "
                                               "one-time token printed at start.")] = "127.0.0.1",
) -> None:
    """A local dashboard: live runs, the board, reports, compare, chat with any stage, start and stop recipes."""
    from posttrain.ui.server import serve

    if not recipes.is_dir():
        raise UserError(f"--recipes {recipes}: not a folder")
    serve(runs_dir, recipes, host=host, port=port, announce=console.print)


def _show_plan(loaded, runs_dir: Path) -> None:
    from posttrain.pipeline.plan import plan_run
    from posttrain.pipeline.session import open_session
    from posttrain.terminal import print_plan

    session = open_session(loaded, runs_dir=runs_dir, console=console)
    print_plan(plan_run(session), session.recipe, console=console)


def _follow(loaded, runs_dir: Path, force: set[str]) -> None:
    """Machines 1..M-1: join the launch of every stage machine 0 trains (the same plan, read here)."""
    from posttrain.launch.follower import follow_stages
    from posttrain.pipeline.plan import plan_run
    from posttrain.pipeline.session import open_session

    session = open_session(loaded, runs_dir=runs_dir, console=console)
    trained = [s.name for s in plan_run(session, force=force).stages if s.status != "cached"]
    joined = follow_stages(loaded, run_dir=session.run_dir, stages=trained, console=console)
    console.print(f"machine {loaded.recipe.launch.machine_rank}: joined {', '.join(joined) or 'no stage'}")


def main() -> None:
    # Everything runs offline by default: a recipe that names a hub id must say so
    # by exporting HF_HUB_OFFLINE=0.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(run_cli(sys.argv[1:]))


def run_cli(argv: list[str]) -> int:
    """Run one command; every way it can end becomes an exit status and at most one message."""
    from posttrain.cli_exit import run_app
    from posttrain.preemption import handle_preemption

    with handle_preemption():
        return run_app(app, argv, verbose=lambda: _VERBOSE, err_console=err_console)


if __name__ == "__main__":
    main()
