"""Run one training stage under `accelerate launch` and bring back its result or its failing rank's error.

The launch settings (processes, machines, DDP/FSDP/DeepSpeed config) decide
how the work is split, never what is computed: mixed precision follows the
recipe's `model.dtype` exactly as a single-process run would, and none of
them enters the stage's fingerprint.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from posttrain import preemption
from posttrain.errors import TrainingError, UserError
from posttrain.launch.job import ERRORS_DIR, JOB_FILE, RESULT_FILE, job_for, launch_dir, read_result
from posttrain.launch.watchdog import HangWatchdog
from posttrain.recipe.launch_checks import (
    LaunchShape,
    config_path,
    launch_shape,
    read_accelerate_config,
)
from posttrain.recipe.schema import LaunchSpec, Recipe
from posttrain.stagekit import StageContext, StageResult
from posttrain.stagekit.specs import ModelSpec

LOG_FILE = "launch.log"
PIDS_DIR = "pids"
DEFAULT_PORT = 29500


def shape_of(launch: LaunchSpec, base_dir: Path) -> LaunchShape:
    """Processes, machines and config of a validated `launch:` block."""
    config = read_accelerate_config(config_path(launch.config, base_dir)) if launch.config else None
    return launch_shape(launch.model_dump(), config)


def is_launched(recipe: Recipe, base_dir: Path) -> bool:
    """Whether the recipe's training stages run under `accelerate launch` rather than in this process."""
    return shape_of(recipe.launch, base_dir).distributed


def accelerate_argv(recipe: Recipe, base_dir: Path, job_path: Path) -> list[str]:
    """The `accelerate launch` command line that runs the worker on `job_path` on this machine."""
    launch = recipe.launch
    shape = shape_of(launch, base_dir)
    argv = [sys.executable, "-m", "accelerate.commands.launch"]
    if shape.config is not None:
        argv += ["--config_file", str(shape.config.path)]
    else:
        argv += ["--multi_gpu"]  # plain DDP through torchrun; on a CPU the trainer picks gloo
    port = launch.main_process_port or (DEFAULT_PORT if shape.machines > 1 else _free_port())
    argv += [
        "--num_processes", str(shape.processes), "--num_machines", str(shape.machines),
        "--machine_rank", str(launch.machine_rank), "--main_process_port", str(port),
        "--mixed_precision", mixed_precision(recipe.model), "--dynamo_backend", "no",
    ]
    if launch.main_process_ip:
        argv += ["--main_process_ip", launch.main_process_ip]
    return [*argv, "-m", "posttrain.launch.worker", str(job_path)]


def local_argv(processes: int, module: str, *args: str) -> list[str]:
    """`accelerate launch` of `python -m module args` on `processes` processes of this machine, no config.

    Full precision: the workers run the model in the dtype it was saved in.
    """
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--machine_rank", "0", "--main_process_port", str(_free_port()),
        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", module, *args,
    ]


def mixed_precision(model: ModelSpec) -> str:
    """accelerate's mixed precision for the recipe's dtype: the same rule as a single-process trainer."""
    import torch

    if not torch.cuda.is_available():
        return "no"
    if model.dtype == "float16":
        return "fp16"
    if model.dtype == "bfloat16" or (model.dtype == "auto" and torch.cuda.is_bf16_supported()):
        return "bf16"
    return "no"


def run_launched(
    ctx: StageContext, *, recipe: Recipe, stage: str, tokenizer: str, console: Console
) -> StageResult:
    """Train `stage` on the recipe's processes and machines; its result as `run(ctx, spec)` would return it.

    The model stays on disk (`model=None`): the pipeline loads the stage's
    lineage when it evaluates it.
    """
    folder = launch_dir(ctx.stage_dir)
    for stale in (folder / RESULT_FILE, *(folder / ERRORS_DIR).glob("rank*.json")):
        stale.unlink(missing_ok=True)
    job_path = job_for(ctx, recipe=recipe.model_dump(mode="json"), stage=stage, tokenizer=tokenizer).write(
        folder / JOB_FILE
    )
    shape = shape_of(recipe.launch, ctx.base_dir)
    kind = shape.config.distributed_type if shape.config else "DDP"
    if kind == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
        raise UserError(f"{shape.config.path} is a DeepSpeed config but deepspeed is not installed (pip install deepspeed)")
    console.print(f"launching {stage} on {shape.processes} processes, {shape.machines} machine(s) ({kind})")
    if shape.config is not None and shape.config.needs_gpus and not _has_gpu():
        console.print(f"[yellow]no GPU here[/]: accelerate runs a {kind} config as plain DDP on CPU processes (gloo)")
    shutil.rmtree(folder / PIDS_DIR, ignore_errors=True)
    # A SIGTERM/SIGUSR1 to this process goes on to the workers, which checkpoint at their next step and stop.
    watchdog = HangWatchdog(folder, recipe.launch.hang_timeout, what=f"stage {stage}")
    with preemption.deferred(forward=lambda signum: signal_workers(folder, signum)), watchdog:
        returncode = run_streaming(accelerate_argv(recipe, ctx.base_dir, job_path), folder / LOG_FILE, console,
                                   on_start=watchdog.watch)
    if watchdog.report is not None:
        raise TrainingError(watchdog.report)
    if returncode == 0 and (folder / RESULT_FILE).exists():
        return read_result(folder / RESULT_FILE)
    raise rank_error(stage, folder, returncode)


def run_streaming(
    argv: list[str], log_path: Path, console: Console, on_start: Callable[[subprocess.Popen], None] | None = None
) -> int:
    """Run `argv`, copying its output to `log_path` (and to the console unless it is quiet); `on_start` gets
    the process once it runs (the hang watchdog)."""
    env = dict(os.environ)
    source_root = Path(__file__).resolve().parents[2]
    if (source_root / "pyproject.toml").exists():  # a source checkout: the workers import this same code
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(source_root), env.get("PYTHONPATH")) if p)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as log, subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, errors="replace",
        preexec_fn=_launcher_signals,
    ) as process:
        if on_start is not None:
            on_start(process)
        try:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                log.flush()
                if not console.quiet:
                    console.out(line.rstrip("\n"), highlight=False)
            return process.wait()
        except KeyboardInterrupt:  # the launcher got the same Ctrl-C; give it time to stop its workers
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            raise


def _launcher_signals() -> None:
    die_with_parent(signal.SIGTERM)  # torchrun stops its workers on SIGTERM
    # torchrun has no SIGUSR1 handler and would die of one sent to every process of the job (Slurm's
    # --signal), taking its workers with it before they checkpoint; the workers install their own.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def signal_workers(folder: Path, signum: int) -> None:
    """Send `signum` to this machine's workers of the launch in `folder` (each wrote its pid at start)."""
    host = socket.gethostname()
    for path in (folder / PIDS_DIR).glob(f"{host}.*"):
        try:
            os.kill(int(path.suffix.lstrip(".")), signum)
        except (ValueError, ProcessLookupError, PermissionError):
            continue


def write_worker_pid(folder: Path) -> None:
    """Where `signal_workers` finds this worker."""
    (folder / PIDS_DIR).mkdir(parents=True, exist_ok=True)
    (folder / PIDS_DIR / f"{socket.gethostname()}.{os.getpid()}").touch()


def die_with_parent(sig: int) -> None:
    """Have the kernel send `sig` to this process when its parent dies (Linux; elsewhere a no-op).

    torchrun starts each worker in a session of its own, so killing the
    orchestrator's process group (a killed job, `kill -9`) would otherwise leave
    workers training on, writing checkpoints under the run that resumes next.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, sig)


def rank_error(stage: str, folder: Path, returncode: int, *, what: str = "stage") -> BaseException:
    """The error of the rank that failed first, as the exception the in-process stage would have raised.

    `what` names the launched work in the message ("stage sft", "evaluation of sft")."""
    records = []
    for path in (folder / ERRORS_DIR).glob("rank*.json"):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    log = folder / LOG_FILE
    if not records:
        return TrainingError(
            f"{what} {stage}: the launched processes exited with code {returncode} without reporting an error; "
            f"last lines of {log}:\n{_tail(log)}"
        )
    # The first failure is the cause; the others are usually peers losing their connection to it.
    first = min(records, key=lambda r: (r["kind"] == "crash", r["time"]))
    where = f"{what} {stage}, rank {first['rank']}"
    if first["kind"] == "interrupted":
        return KeyboardInterrupt()
    if first["kind"] == "preempted":
        return preemption.Preempted(first["message"].split(" ", 1)[0], f"{what} {stage}: {first['message']}")
    if first["kind"] == "user":
        return UserError(f"{where}: {first['message']}")
    if first["kind"] == "training":
        return TrainingError(f"{where}: {first['message']}")
    trace = first["traceback"].strip().splitlines()[-12:]
    return TrainingError(
        f"{where} failed: {first['type']}: {first['message']}\n" + "\n".join(trace) + f"\nfull log: {log}"
    )


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _free_port() -> int:
    # One machine: any free port, so concurrent runs on a host do not meet at 29500.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

