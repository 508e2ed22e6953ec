"""`RunDir`: the one owner of a run directory's layout, stage state and lineage.

    runs/<name>/recipe.resolved.yaml        the recipe as run (model, stage order)
    runs/<name>/.posttrain.lock             held by the one process writing the run
    runs/<name>/log.txt                     library logs of every command on the run
    runs/<name>/data/<dataset>/...          curated data + its report
    runs/<name>/base/eval.json              the base model's evaluation
    runs/<name>/<stage>/stage.json          status, fingerprint, timings, versions, lineage, history
    runs/<name>/<stage>/metrics.jsonl       training logs
    runs/<name>/<stage>/eval.json           evaluation (+ samples/)
    runs/<name>/<stage>/objective.json      held-out objective before/after
    runs/<name>/<stage>/adapter/ | model/   this stage's LoRA (on its input) | whole model
    runs/<name>/<stage>/checkpoints/        trainer checkpoints while it trains
    runs/<name>/<stage>/export/             export formats
    runs/<name>/leaderboard.md
    runs/<name>/report.html, report.md, report/

Everything a stage.json records about where weights are is relative to the run
directory, and lineages are rebuilt from where the files are now, so a run
directory moved or copied elsewhere still evaluates, exports and reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from posttrain.errors import UserError
from posttrain.models.lineage import ADAPTER_CONFIG, Lineage
from posttrain.rundir import read_json, write_json

BASE = "base"
"""The base model's name among the stages (its folder holds only its evaluation)."""


class RunDir:
    """Paths, stage state, stage order and lineages of one run directory."""

    RECIPE = "recipe.resolved.yaml"
    STAGE = "stage.json"
    LOCK = ".posttrain.lock"
    LOG = "log.txt"
    METRICS = "metrics.jsonl"
    EVAL = "eval.json"
    OBJECTIVE = "objective.json"
    LOSS_MASK = "loss_mask.json"
    """An SFT stage's first training example as the loss sees it (training/mask_check.py), for the report."""
    ADAPTER = "adapter"
    MODEL = "model"
    CHECKPOINTS = "checkpoints"
    EXPORT = "export"
    DATA = "data"
    LEADERBOARD = "leaderboard.md"
    REPORT = "report"
    ARTIFACT_SCORES = "scored"
    """Under a stage's export folder: one folder per exported artifact scored inside its engine."""
    ARTIFACT = "artifact.json"
    """Stem of report.html and report.md, and the folder of the report's images."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    # --- paths -----------------------------------------------------------------------------------------------

    @property
    def recipe_file(self) -> Path:
        return self.root / self.RECIPE

    @property
    def lock_file(self) -> Path:
        return self.root / self.LOCK

    @property
    def log_file(self) -> Path:
        return self.root / self.LOG

    @property
    def leaderboard_file(self) -> Path:
        return self.root / self.LEADERBOARD

    @property
    def report_html(self) -> Path:
        return self.root / f"{self.REPORT}.html"

    @property
    def report_md(self) -> Path:
        return self.root / f"{self.REPORT}.md"

    @property
    def data_root(self) -> Path:
        return self.root / self.DATA

    def data_dir(self, dataset: str) -> Path:
        return self.data_root / dataset

    def stage_dir(self, stage: str) -> Path:
        """A stage's folder; `base` is the base model's (its evaluation only)."""
        return self.root / stage

    def stage_file(self, stage: str) -> Path:
        return self.stage_dir(stage) / self.STAGE

    def metrics_file(self, stage: str) -> Path:
        return self.stage_dir(stage) / self.METRICS

    def eval_file(self, stage: str) -> Path:
        return self.stage_dir(stage) / self.EVAL

    def objective_file(self, stage: str) -> Path:
        return self.stage_dir(stage) / self.OBJECTIVE

    def loss_mask_file(self, stage: str) -> Path:
        return self.stage_dir(stage) / self.LOSS_MASK

    def adapter_dir(self, stage: str) -> Path:
        return self.stage_dir(stage) / self.ADAPTER

    def model_dir(self, stage: str) -> Path:
        return self.stage_dir(stage) / self.MODEL

    def checkpoints_dir(self, stage: str) -> Path:
        return self.stage_dir(stage) / self.CHECKPOINTS

    def export_dir(self, stage: str) -> Path:
        return self.stage_dir(stage) / self.EXPORT

    def artifact_score_dir(self, stage: str, artifact: str) -> Path:
        """Where an exported artifact's score in its engine lives (`q4_k_m`, `q8_0`, `vllm`): `eval.json` and
        `samples/` as a stage's evaluation, plus `artifact.json` (engine, file, size, speed, parity, verdicts)."""
        return self.export_dir(stage) / self.ARTIFACT_SCORES / artifact

    def scored_artifacts(self, stage: str) -> list[str]:
        """The artifacts of `stage` scored in their engine (those with an `artifact.json`), by name."""
        folder = self.export_dir(stage) / self.ARTIFACT_SCORES
        return sorted(p.parent.name for p in folder.glob(f"*/{self.ARTIFACT}")) if folder.is_dir() else []

    # --- what the directory holds ------------------------------------------------------------------------------

    def is_run(self) -> bool:
        """Whether this looks like a run directory: a resolved recipe or at least one stage folder."""
        return self.recipe_file.is_file() or any(self.root.glob(f"*/{self.STAGE}"))

    def is_stage_dir(self, folder: Path) -> bool:
        return (folder / self.STAGE).is_file()

    def recipe(self) -> dict[str, Any]:
        """The resolved recipe as plain data ({} when there is none)."""
        if not self.recipe_file.is_file():
            return {}
        # YAML 1.2, the dialect the runner writes it in (it also quotes what 1.1 readers would misread)
        try:
            data = YAML(typ="safe", pure=True).load(self.recipe_file.read_text(encoding="utf-8"))
        except YAMLError as exc:
            raise UserError(f"{self.recipe_file}: not valid YAML ({exc}); rerun the recipe to write it again") from None
        return data if isinstance(data, dict) else {}

    def write_recipe(self, text: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.recipe_file.write_text(text, encoding="utf-8")

    def recipe_stages(self) -> list[str]:
        """Stage names as the resolved recipe lists them."""
        stages = self.recipe().get("stages") or []
        return [str(s["name"]) for s in stages if isinstance(s, dict) and s.get("name")]

    def stages(self) -> list[str]:
        """The stages in recipe order, then any other folder with a stage.json (a stage since removed), by name."""
        names = self.recipe_stages()
        found = sorted(p.parent.name for p in self.root.glob(f"*/{self.STAGE}"))
        return names + [n for n in found if n not in names]

    def last_completed_stage(self) -> str | None:
        """The last stage, in recipe order, whose stage.json says completed: what a run's name stands for."""
        completed = [n for n in self.stages() if self.is_completed(n)]
        return completed[-1] if completed else None

    # --- stage state --------------------------------------------------------------------------------------------

    def read_stage(self, stage: str) -> dict[str, Any] | None:
        """The stage's stage.json, or None when it has none (or it does not parse)."""
        return read_json(self.stage_file(stage))

    def write_stage(self, stage: str, record: dict[str, Any]) -> None:
        """Write stage.json atomically (a kill never leaves half of it)."""
        write_json(self.stage_file(stage), record)

    def is_completed(self, stage: str) -> bool:
        return (self.read_stage(stage) or {}).get("status") == "completed"

    # --- lineage ---------------------------------------------------------------------------------------------

    def chain(self, stage: str) -> list[str]:
        """The stages whose weights make up `stage`, oldest first, back to the base or a whole model.

        Read from each stage.json's `input` and from what the folder holds: an `adapter/`
        extends its input's lineage, a `model/` starts one, and a stage with neither kept
        its input's model (it adds no weights).
        """
        chain: list[str] = []
        name, seen = stage, set()
        while name != BASE:
            if name in seen:
                raise UserError(f"stage inputs in {self.root} form a loop at {name!r}")
            seen.add(name)
            record = self.read_stage(name)
            if record is None:
                raise UserError(f"{self.stage_file(name)} is missing; the run directory is incomplete")
            if (self.adapter_dir(name) / ADAPTER_CONFIG).is_file():
                chain.insert(0, name)
            elif self.model_dir(name).is_dir():
                chain.insert(0, name)
                break
            name = str(record.get("input") or BASE)
        return chain

    def lineage(self, stage: str, base: Lineage | None = None) -> Lineage:
        """`stage`'s model as base + adapters, with today's paths of this directory.

        `base` is the run's base model (the runner passes its session's); without it the
        base is resolved from the recipe's `model` (see `base_lineage`). A stage.json whose
        folder holds no weights (written by hand, or by an old version) falls back to the
        lineage it records: relative paths against this directory, absolute ones as they are.
        """
        if not self._has_weights(stage):
            return self._from_record(self._recorded_lineage(stage), base)
        chain = self.chain(stage)
        adapters = [str(self.adapter_dir(n)) for n in chain]
        if chain and not (self.adapter_dir(chain[0]) / ADAPTER_CONFIG).is_file():  # a whole model, adapters on it
            return Lineage(str(self.model_dir(chain[0])), adapters[1:])
        base = base or self.base_lineage(chain[0] if chain else None)
        return Lineage(base.base, adapters, base.revision)

    def lineage_record(self, lineage: Lineage, base: Lineage) -> dict[str, Any]:
        """What stage.json records as a stage's `lineage`: `base` for the run's base model, and every path in
        this directory relative to it (`sft/adapter`, `distill/model`), so the record survives a move."""

        def relative(path: str) -> str:
            try:
                return Path(path).resolve().relative_to(self.root.resolve()).as_posix()
            except ValueError:  # outside the run directory (a stage may start from any model)
                return path

        start = BASE if lineage.base == base.base else relative(lineage.base)
        return {"base": start, "adapters": [relative(a) for a in lineage.adapters]}

    def base_lineage(self, first_stage: str | None = None) -> Lineage:
        """The run's base model, resolved from the recipe's `model` (relative to its `base_dir`, else the cwd)
        as a run's session resolves it (`quantize: 4bit`: the dequantized NF4 base its adapters trained on).

        When it does not resolve here, an old stage.json's recorded absolute base path is
        used if that still exists.
        """
        from posttrain.models.chat_template import load_chat_template
        from posttrain.models.loading import start_of_lineages
        from posttrain.models.resolve import resolve_model

        recipe = self.recipe()
        model = recipe.get("model") or {}
        ref, revision = str(model.get("base", "")), model.get("revision")
        base_dir = Path(recipe.get("base_dir") or Path.cwd())  # where the recipe's relative paths were read from
        try:
            resolved = resolve_model(ref, base_dir=base_dir, prefer_hub=bool(model.get("prefer_hub", False)))
            if Path(resolved.path).exists() or not Path(resolved.path).is_absolute():  # a folder, or a hub id
                template = model.get("chat_template")
                return start_of_lineages(resolved, quantize=model.get("quantize"), revision=revision,
                                         trust_remote_code=bool(model.get("trust_remote_code", False)),
                                         chat_template=load_chat_template(template, base_dir) if template else None)
        except UserError:
            pass
        recorded = ((self.read_stage(first_stage) or {}).get("lineage") or {}).get("base") if first_stage else None
        if recorded and recorded != BASE and Path(recorded).is_absolute() and Path(recorded).exists():
            return Lineage(recorded, revision=revision)
        raise UserError(f"cannot find the base model {ref!r} of {self.root} (not resolvable from here"
                        + (f", and the recorded path {recorded!r} is gone)" if recorded else ")"))

    def _has_weights(self, stage: str) -> bool:
        return (self.adapter_dir(stage) / ADAPTER_CONFIG).is_file() or self.model_dir(stage).is_dir()

    def _recorded_lineage(self, stage: str) -> dict[str, Any]:
        recorded = (self.read_stage(stage) or {}).get("lineage")
        if not isinstance(recorded, dict) or not recorded.get("base"):
            raise UserError(f"{self.stage_dir(stage)} holds neither an adapter/ nor a model/, and its "
                            f"{self.STAGE} records no lineage: stage {stage!r} has no weights")
        return recorded

    def _from_record(self, recorded: dict[str, Any], base: Lineage | None) -> Lineage:
        def here(path: str) -> str:
            return path if Path(path).is_absolute() else str(self.root / path)

        adapters = [here(str(a)) for a in recorded.get("adapters") or []]
        start = str(recorded["base"])
        if start != BASE and Path(here(start)).exists():  # a whole model in the run, or an old absolute base
            return Lineage(here(start), adapters, recorded.get("revision"))
        base = base or self.base_lineage()
        return Lineage(base.base, adapters, base.revision)
