"""Why a stage did not move its benchmark: what its held-out objective did, and which knobs its own logs point at.

A stage whose benchmark delta against its input model is within noise (or significantly worse) gets one
diagnosis per task. It is built only from that stage's files: the held-out objective (objective.json), the
training log (metrics.jsonl: loss trend, peak learning rate, steps), the spec it ran with (stage.json) and its
dataset's size (data/<name>/report.json). The advice follows from those numbers; a stage whose logs say
nothing gets no advice rather than a generic one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from posttrain.report.answers import paired
from posttrain.report.collect import BASE, EvalData, RunData, StageData

IMPROVING = 0.03
"""The last quarter's mean signal better than the third quarter's by this share: still improving at the end."""
FLAT = 0.05
"""The last quarter's mean signal within this share of the first quarter's: training barely moved it."""
MANY_EPOCHS = 2.0
"""Passes over the data beyond which a worse held-out objective reads as overfitting."""


@dataclass(frozen=True)
class TrainingFacts:
    """What a stage's log and spec say about how it trained."""

    steps: int | None
    peak_lr: float | None
    signal: str
    """What training progress is read from: `loss`, or `reward` for a stage that logs one (RL: its loss is no
    measure of progress)."""
    quarters: tuple[float, float, float, float] | None
    """Mean logged signal over each quarter of the logged steps."""
    examples_seen: int | None
    train_rows: int | None

    @property
    def epochs(self) -> float | None:
        if self.examples_seen is None or not self.train_rows:
            return None
        return self.examples_seen / self.train_rows


@dataclass(frozen=True)
class ObjectiveChange:
    metric: str
    before: float
    after: float
    band: float | None
    verdict: str
    """better | worse | within noise | unchanged"""


@dataclass(frozen=True)
class Diagnosis:
    stage: str
    task: str
    delta: float
    p_value: float | None
    outcome: str
    """"did not move" (within noise) or "lost" (significantly worse)."""
    objective: ObjectiveChange | None
    training: TrainingFacts
    knobs: list[str] = field(default_factory=list)

    def sentence(self) -> str:
        p = f", p = {self.p_value:.2g}" if self.p_value is not None else ""
        text = f"{self.stage} {self.outcome} {self.task} ({self.delta:+.3f} vs its input{p})."
        if self.objective is not None:
            o = self.objective
            band = f", 95% band ±{o.band:.4f}" if o.band is not None else ""
            text += (f" Its held-out {o.metric} went {o.before:.4f} → {o.after:.4f} ({o.verdict}{band}).")
        else:
            text += " It measured no held-out objective."
        text += " " + _training_sentence(self.training)
        if self.knobs:
            text += " What to try: " + " ".join(self.knobs)
        return text


def diagnoses(run: RunData) -> list[Diagnosis]:
    """One diagnosis per (stage, task) whose benchmark did not improve significantly over the stage's input."""
    evals: dict[str, EvalData] = {s.name: s.eval for s in run.stages if s.eval is not None}
    if run.base is not None:
        evals[BASE] = run.base
    rows = {ds.name: ds.report.get("train_rows") for ds in run.datasets}
    out = []
    for stage in run.stages:
        parent = evals.get(stage.input)
        if stage.eval is None or parent is None:
            continue
        for task in stage.eval.scores:
            test = paired(parent, stage.eval, task) if task in parent.scores else None
            if test is None or (test.significant and test.delta > 0):
                continue
            outcome = "lost" if test.significant else "did not move"
            objective = objective_change(stage.objective)
            facts = training_facts(stage, rows.get(stage.data or ""))
            out.append(Diagnosis(stage.name, task, test.delta, test.p_value, outcome, objective, facts,
                                 knobs_for(objective, facts, task)))
    return out


def objective_change(objective: dict[str, Any] | None) -> ObjectiveChange | None:
    """The first metric of a stage's held-out objective (its headline), or None when none was measured."""
    return next(iter(objective_changes(objective)), None)


def objective_changes(objective: dict[str, Any] | None) -> list[ObjectiveChange]:
    """Each metric of a stage's held-out objective (objective.json), before → after, judged against its 95% band."""
    if not objective:
        return []
    out = []
    lower = set(objective.get("lower_is_better") or ())
    for metric, before in (objective.get("before") or {}).items():
        after = (objective.get("after") or {}).get(metric)
        if not isinstance(before, int | float) or not isinstance(after, int | float):
            continue
        stderr = (objective.get("change_stderr") or {}).get(metric)
        band = 1.96 * stderr if isinstance(stderr, int | float) else None
        change = after - before
        if band is not None and abs(change) <= band:
            verdict = "within noise"
        elif change == 0:
            verdict = "unchanged"
        else:
            verdict = "better" if (change < 0) == (metric in lower) else "worse"
        out.append(ObjectiveChange(metric, float(before), float(after), band, verdict))
    return out


def training_facts(stage: StageData, train_rows: Any) -> TrainingFacts:
    """Steps, peak learning rate, loss by quarter and examples seen, from the stage's log and spec."""
    steps = max((r["step"] for r in stage.curves if isinstance(r.get("step"), int)), default=None)
    lrs = [r["learning_rate"] for r in stage.curves if isinstance(r.get("learning_rate"), int | float)]
    train = (stage.spec or {}).get("train") or {}
    peak_lr = max(lrs) if lrs else (train.get("lr") if isinstance(train.get("lr"), int | float) else None)
    signal = "reward" if any(isinstance(r.get("reward"), int | float) for r in stage.curves) else "loss"
    values = [float(r[signal]) for r in stage.curves if isinstance(r.get(signal), int | float)]
    quarters = None
    if len(values) >= 4:
        cut = [round(i * len(values) / 4) for i in range(5)]
        q1, q2, q3, q4 = (fmean(values[cut[i]:cut[i + 1]]) for i in range(4))
        quarters = (q1, q2, q3, q4)
    per_step = train.get("batch_size", 0) * train.get("grad_accum", 1) if isinstance(train.get("batch_size"), int) else 0
    seen = steps * per_step if steps and per_step else None
    rows = int(train_rows) if isinstance(train_rows, int) and train_rows > 0 else None
    return TrainingFacts(steps, peak_lr, signal, quarters, seen, rows)


def knobs_for(objective: ObjectiveChange | None, facts: TrainingFacts, task: str) -> list[str]:
    """What the numbers point at, most telling first; empty when the log holds too little to say."""
    knobs: list[str] = []
    q = facts.quarters
    sign = 1.0 if facts.signal == "reward" else -1.0  # +: higher is better
    improving = q is not None and sign * (q[3] - q[2]) > IMPROVING * abs(q[2])
    flat = q is not None and abs(q[3] - q[0]) < FLAT * max(abs(q[0]), 1e-8)
    epochs = facts.epochs
    repeated = epochs is not None and epochs > MANY_EPOCHS
    more_steps = f"train.max_steps {facts.steps} → {2 * facts.steps}" if facts.steps else "more train.max_steps"
    if objective is not None and objective.verdict == "worse":
        if repeated:
            knobs.append(f"It went over its {facts.train_rows} rows {epochs:.1f} times and got worse on held-out "
                         "rows (overfitting): fewer steps, or more rows.")
        elif facts.peak_lr is not None:
            knobs.append(f"Its held-out objective got worse at peak learning rate {facts.peak_lr:.2g}: a lower "
                         f"train.lr (e.g. {facts.peak_lr / 3:.2g}).")
        return knobs
    if objective is not None and objective.verdict == "better":
        knobs.append(f"It learned its own objective, but that did not carry over to {task}: rows closer to what "
                     f"{task} asks, or more of them.")
    if improving and repeated:
        knobs.append(f"Its {facts.signal} was still improving ({q[2]:.3f} → {q[3]:.3f} over the last quarter), but "
                     f"on rows it had seen {epochs:.1f} times: more rows rather than more steps.")
    elif improving:
        knobs.append(f"Its {facts.signal} was still improving over the last quarter of training ({q[2]:.3f} → "
                     f"{q[3]:.3f}): more steps ({more_steps}).")
    elif flat and facts.peak_lr is not None:
        knobs.append(f"Its {facts.signal} barely moved ({q[0]:.3f} → {q[3]:.3f}) at peak learning rate "
                     f"{facts.peak_lr:.2g}: a higher train.lr (e.g. {facts.peak_lr * 3:.2g}) or more steps "
                     f"({more_steps}).")
    if epochs is not None and epochs < 1 and not improving:
        knobs.append(f"It saw {epochs:.0%} of its {facts.train_rows} rows once: {more_steps}.")
    return knobs


def _training_sentence(facts: TrainingFacts) -> str:
    parts = []
    if facts.steps is not None:
        parts.append(f"{facts.steps} steps")
    if facts.epochs is not None:
        parts.append(f"{facts.epochs:.2f} passes over {facts.train_rows} rows")
    if facts.peak_lr is not None:
        parts.append(f"peak learning rate {facts.peak_lr:.2g}")
    if facts.quarters is not None:
        parts.append(f"{facts.signal} by quarter " + " → ".join(f"{v:.3f}" for v in facts.quarters))
    return ("It trained " + ", ".join(parts) + ".") if parts else "Its training log is empty."
