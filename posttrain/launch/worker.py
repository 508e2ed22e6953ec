"""One rank of a launched training stage: `python -m posttrain.launch.worker <stage>/launch/job.json`.

`accelerate launch` starts it once per process. It rebuilds the stage's
context from the job file, runs the stage's `run` (the trainer finds the
process group through accelerate), and rank 0 writes the result file. Any
rank that fails writes its error, with its traceback, to
`errors/rank<N>.json` before exiting, so the orchestrator can report that
rank's message rather than a peer's "connection closed".
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console

from posttrain.errors import TrainingError, UserError
from posttrain.launch.job import ERRORS_DIR, RESULT_FILE, StageJob, datasets_of, launch_dir, write_result
from posttrain.models.lineage import Lineage
from posttrain.preemption import RESUMABLE_EXIT, Preempted, handle_preemption
from posttrain.run_layout import RunDir
from posttrain.stagekit import StageContext, StageResult
from posttrain.stagekit.specs import StageCommon


def rank_and_world() -> tuple[int, int]:
    """This process's global rank and the number of processes (torchrun's environment)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def per_process(spec: StageCommon, world: int) -> StageCommon:
    """The stage spec one of `world` processes trains with: the same batch per optimizer step.

    The recipe's batch per step is batch_size × grad_accum; N processes each
    accumulate grad_accum / N micro-batches of batch_size (the recipe check
    guarantees it divides).
    """
    if world == 1:
        return spec
    accum = spec.train.grad_accum
    if accum % world:
        raise UserError(f"stage {spec.name}: train.grad_accum {accum} does not split over {world} processes")
    return spec.model_copy(update={"train": spec.train.model_copy(update={"grad_accum": accum // world})})


def stage_context(job: StageJob, *, rank: int) -> tuple[StageContext, StageCommon]:
    """The stage's spec and a context equal to the one the orchestrator would have passed in process."""
    from posttrain.launch.watchdog import Heartbeat
    from posttrain.models.loading import load_tokenizer
    from posttrain.recipe.schema import recipe_model
    from posttrain.stages import STAGES
    from posttrain.training.callbacks import (
        CheckpointFailpoint,
        MetricsFile,
        NonFiniteLossGuard,
        PreemptionCheckpoint,
        ResumedEpochShuffle,
    )
    from posttrain.training.preflight import preflight_for

    base_dir = Path(job.base_dir)
    recipe = recipe_model().model_validate(job.recipe, context={"base_dir": base_dir})
    spec = next(s for s in recipe.stages if s.name == job.stage)
    model = recipe.model
    tokenizer = load_tokenizer(job.tokenizer, trust_remote_code=model.trust_remote_code, revision=model.revision)
    stage_dir = Path(job.stage_dir)
    ctx = StageContext(
        model_spec=model, eval_spec=recipe.eval, seed=recipe.seed, stage_dir=stage_dir,
        input=Lineage.from_dict(job.input), tokenizer=tokenizer, datasets=datasets_of(job),
        console=Console(stderr=True, quiet=rank != 0, highlight=False),
        resume_from=Path(job.resume_from) if job.resume_from else None, base_dir=base_dir,
        input_name=job.input_name, earlier={k: Lineage.from_dict(v) for k, v in job.earlier.items()},
        callbacks=[MetricsFile(stage_dir / RunDir.METRICS), NonFiniteLossGuard(), PreemptionCheckpoint(), ResumedEpochShuffle(),
                   Heartbeat(launch_dir(stage_dir), rank), CheckpointFailpoint(),
                   preflight_for(spec.name, spec, STAGES[spec.type].data_kinds)],
    )
    return ctx, spec


def run_job(job_path: Path) -> StageResult:
    from posttrain.stages import STAGES

    rank, world = rank_and_world()
    job = StageJob.read(job_path)
    ctx, spec = stage_context(job, rank=rank)
    result = STAGES[spec.type].run(ctx, per_process(spec, world))  # type: ignore[attr-defined]
    result.metrics["processes"] = world
    if rank == 0:
        write_result(job_path.parent / RESULT_FILE, result, launch={"processes": world, "distributed_type": _distributed_type()})
    return result


def _distributed_type() -> str:
    """How accelerate actually ran the trainer: on CPUs it runs FSDP and DeepSpeed configs as MULTI_CPU."""
    from accelerate.state import AcceleratorState

    if not AcceleratorState._shared_state:
        return "unknown"
    return str(AcceleratorState().distributed_type.value)


def error_record(exc: BaseException, rank: int) -> dict[str, Any]:
    """What the orchestrator shows of a failed rank; `kind` picks the exception it raises."""
    if isinstance(exc, KeyboardInterrupt):
        kind = "interrupted"
    elif isinstance(exc, Preempted):
        kind = "preempted"
    elif isinstance(exc, UserError):
        kind = "user"
    elif isinstance(exc, TrainingError):
        kind = "training"
    else:
        kind = "crash"
    message = exc.render() if isinstance(exc, UserError) else str(exc)
    return {
        "rank": rank, "kind": kind, "type": type(exc).__name__, "message": message or type(exc).__name__,
        "traceback": traceback.format_exc(), "time": time.time(),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m posttrain.launch.worker <stage>/launch/job.json", file=sys.stderr)
        return 2
    job_path = Path(args[0])
    rank, _ = rank_and_world()
    from posttrain.launch.launcher import die_with_parent, write_worker_pid

    die_with_parent(signal.SIGKILL)  # a killed launcher takes its workers with it
    if os.getppid() == 1:  # the launcher died before the line above took effect: nobody waits for this rank
        return 1
    write_worker_pid(job_path.parent)
    from posttrain.launch.watchdog import dump_stacks_on_request

    stacks = dump_stacks_on_request(job_path.parent, rank)  # noqa: F841 - open while the job runs
    try:
        with handle_preemption():  # SIGTERM/SIGUSR1: checkpoint at the next step, report "preempted"
            run_job(job_path)
    except BaseException as exc:  # every failure, Ctrl-C included, is reported to the orchestrator
        return record_failure(exc, rank, job_path.parent)
    return 0


def record_failure(exc: BaseException, rank: int, folder: Path) -> int:
    """Write this rank's error to `folder/errors/rank<N>.json` for the orchestrator; the exit code."""
    errors = folder / ERRORS_DIR
    errors.mkdir(parents=True, exist_ok=True)
    (errors / f"rank{rank}.json").write_text(json.dumps(error_record(exc, rank), indent=1))
    traceback.print_exc()
    if isinstance(exc, Preempted):
        return RESUMABLE_EXIT
    return 130 if isinstance(exc, KeyboardInterrupt) else 1


if __name__ == "__main__":
    sys.exit(main())
