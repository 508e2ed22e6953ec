"""Send training logs and eval scores to TensorBoard and/or MLflow, as the recipe's `tracking:` block asks.

Training logs go through transformers' own integrations (`report_to`): the
stage's Trainer reads where to write from the environment, which `stage()` sets
for the duration of one stage (so a stage launched in another process inherits
it too):

- TensorBoard: `TENSORBOARD_LOGGING_DIR=<run>/tensorboard/<stage>`;
- MLflow: `MLFLOW_TRACKING_URI`, `MLFLOW_EXPERIMENT_NAME` and `MLFLOW_RUN_ID` of a
  run created here, nested under the recipe run (tag `mlflow.parentRunId`), which
  the Trainer's MLflowCallback resumes, logs into and ends.

Eval scores are written here, as `eval/<task>` scalars in the stage's event files
and metrics of the stage's MLflow run (the base model's on the parent run).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPORT_TO_ENV = "POSTTRAIN_REPORT_TO"
"""Comma-separated trackers the stage's TrainingArguments report to (set only inside `Tracker.stage`)."""
TENSORBOARD_DIR = "tensorboard"


def report_to() -> list[str] | str:
    """The `report_to` value for TrainingArguments: the trackers of the stage being trained, or "none"."""
    value = os.environ.get(REPORT_TO_ENV, "")
    names = [n for n in value.split(",") if n]
    return names or "none"


def default_mlflow_uri(runs_dir: Path) -> str:
    return f"sqlite:///{Path(runs_dir).resolve() / 'mlflow.db'}"


class Tracker:
    """The trackers of one `posttrain run`; does nothing when the recipe asks for none."""

    def __init__(self, spec: Any, *, run_dir: Path, runs_dir: Path, name: str) -> None:
        self.tensorboard = bool(spec.tensorboard)
        self.mlflow = bool(spec.mlflow)
        self.run_dir = Path(run_dir)
        self.uri = spec.mlflow_uri or default_mlflow_uri(runs_dir)
        self.experiment = spec.experiment or name
        self.name = name
        self.parent_id: str | None = None
        self.stage_runs: dict[str, str] = {}
        self._client: Any = None

    @property
    def enabled(self) -> bool:
        return self.tensorboard or self.mlflow

    def start(self) -> None:
        from posttrain.errors import UserError

        for wanted, module in ((self.tensorboard, "tensorboard"), (self.mlflow, "mlflow"), (self.mlflow, "sqlalchemy")):
            if wanted and importlib.util.find_spec(module) is None:
                raise UserError(f"recipe tracking: needs {module}; install it with `pip install 'posttrain[tracking]'`")
        if not self.mlflow:
            return
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.uri)
        experiment = self._client.get_experiment_by_name(self.experiment)
        experiment_id = experiment.experiment_id if experiment else self._client.create_experiment(self.experiment)
        run = self._client.create_run(experiment_id, run_name=self.name, tags={"posttrain.run_dir": str(self.run_dir)})
        self.parent_id = run.info.run_id
        self._experiment_id = experiment_id

    def finish(self, status: str) -> None:
        if self._client is None:
            return
        for run_id in [*self.stage_runs.values(), self.parent_id]:
            if run_id and self._client.get_run(run_id).info.status == "RUNNING":
                self._client.set_terminated(run_id, status)

    def _stage_run(self, stage: str) -> str:
        if stage not in self.stage_runs:
            run = self._client.create_run(
                self._experiment_id, run_name=stage,
                tags={"mlflow.parentRunId": self.parent_id, "posttrain.stage": stage},
            )
            self.stage_runs[stage] = run.info.run_id
        return self.stage_runs[stage]

    @contextlib.contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        """Environment for training `stage`: its trackers, its event folder, its nested MLflow run."""
        if not self.enabled:
            yield
            return
        env = {REPORT_TO_ENV: ",".join(n for n, on in (("tensorboard", self.tensorboard), ("mlflow", self.mlflow)) if on)}
        if self.tensorboard:
            env["TENSORBOARD_LOGGING_DIR"] = str(self.run_dir / TENSORBOARD_DIR / stage)
        if self.mlflow:
            env.update(MLFLOW_TRACKING_URI=self.uri, MLFLOW_EXPERIMENT_NAME=self.experiment,
                       MLFLOW_RUN_ID=self._stage_run(stage))
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            _end_active_mlflow_run()

    def scores(self, label: str, scores: dict[str, float], *, base: bool = False) -> None:
        """Eval scores of the base model (`base=True`, on the parent run) or of a stage (its nested run)."""
        if not scores:
            return
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            with contextlib.closing(SummaryWriter(log_dir=str(self.run_dir / TENSORBOARD_DIR / label))) as writer:
                for task, score in scores.items():
                    writer.add_scalar(f"eval/{task}", score, 0)
        if self._client is not None:
            run_id = self.parent_id if base else self._stage_run(label)
            prefix = f"eval/{label}/" if base else "eval/"
            for task, score in scores.items():
                self._client.log_metric(run_id, prefix + task, float(score))
            if self.parent_id and not base:  # the parent run shows every stage's scores side by side
                for task, score in scores.items():
                    self._client.log_metric(self.parent_id, f"eval/{label}/{task}", float(score))


def _end_active_mlflow_run() -> None:
    # A stage that failed mid-training leaves the Trainer's fluent MLflow run active in this process.
    import sys

    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and mlflow.active_run() is not None:
        mlflow.end_run()


@contextlib.contextmanager
def tracking(spec: Any, *, run_dir: Path, runs_dir: Path, name: str) -> Iterator[Tracker]:
    """A `Tracker` for one run; its MLflow runs end FINISHED, or FAILED when the run raised."""
    tracker = Tracker(spec, run_dir=run_dir, runs_dir=runs_dir, name=name)
    tracker.start()
    try:
        yield tracker
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish("FINISHED")
