"""The recipe schema: the top-level sections, with one pydantic model per stage type.

Each field is documented once, in its `description`: shared building blocks in
posttrain/stagekit/specs.py, a stage type's own fields in its stage module,
datasets in data_prep/spec.py and data_prep/operators/. Unknown keys are errors. The `stages` list
accepts every type in the stage registry (`recipe_model()` builds it).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Field, NonNegativeInt, PositiveInt, create_model, field_validator

from data_prep.spec import DatasetSpec, dataset_model
from posttrain.stagekit.specs import EvalSpec, ModelSpec, StageCommon, Strict

if TYPE_CHECKING:
    from posttrain.export.declaration import ExportFormat


GgufQuant = Literal["f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m"]


class GgufSpec(Strict):
    """How the `gguf` format quantizes the merged model (llama.cpp's own converter, then its quantizer)."""

    quants: list[GgufQuant] = Field(
        default_factory=lambda: ["q4_k_m", "q8_0"], min_length=1,
        description="llama.cpp file types to write besides the f16 file every GGUF export holds: q4_k_m "
        "(Ollama's default, the laptop size), q5_k_m, q6_k, q8_0, bf16, f16. The first is the one Ollama's "
        "Modelfile and the serve command use.",
    )


class ExportSpec(Strict):
    """Which formats to export; `recipe_model()` narrows `formats` to the registered formats."""

    formats: list[str] = Field(default_factory=lambda: _default_formats(), description="Export formats.")
    gguf: GgufSpec = Field(default_factory=GgufSpec, description="Settings of the `gguf` format.")
    evaluate: bool = Field(
        False,
        description="Score what the run ships (the last stage's exports) inside the engine that runs it, on the "
        "recipe's eval tasks: each `gguf.quants` file in llama.cpp's server, the vllm adapter in vLLM's OpenAI "
        "server. Each becomes a leaderboard row `<stage>@<artifact>` with its interval and a paired test against "
        "the merged model. Other stages: `posttrain eval RUN/STAGE --artifact gguf:q4_k_m`.",
    )

    def format_settings(self) -> dict[str, dict[str, Any]]:
        """Format name -> its settings block, as `ExportJob.settings` carries them to the writers."""
        return {"gguf": self.gguf.model_dump()}


def _default_formats() -> list[str]:
    from posttrain.export.formats import default_formats

    return default_formats()


class LaunchSpec(Strict):
    """How training stages are launched: in this process, or under `accelerate launch` on N processes.

    Only training stages are launched; data curation, evaluation, export and the
    leaderboard stay in the orchestrating process. None of these settings enters
    a stage's fingerprint: the recipe's batch per optimizer step is
    `train.batch_size × train.grad_accum` on any number of processes (each of N
    processes accumulates `grad_accum / N` micro-batches), so the same recipe
    trains the same model on 1 or N processes.
    """

    config: str | None = Field(
        None,
        description="accelerate config file (DDP, FSDP, DeepSpeed): a path relative to the recipe, or the "
        "name of a shipped one (ddp, fsdp, zero2, zero3). None with num_processes > 1: plain DDP.",
    )
    num_processes: PositiveInt | None = Field(
        None, description="Processes in all, over every machine; default: the config's, else 1."
    )
    num_machines: PositiveInt | None = Field(None, description="Machines; default: the config's, else 1.")
    machine_rank: NonNegativeInt = Field(
        0, description="This machine's rank; 0 orchestrates, the others only join each training stage."
    )
    main_process_ip: str | None = Field(None, description="Address of machine 0 (several machines).")
    main_process_port: int | None = Field(None, ge=1, le=65535, description="Port of machine 0's rendezvous.")
    hang_timeout: PositiveInt = Field(
        1800,
        description="Seconds without a finished optimizer step on any rank (or, before the first step, since the "
        "launch, and then at least 300 s for loading) after which the stage fails with every rank's Python stack "
        "instead of waiting forever.",
    )


class TrackingSpec(Strict):
    tensorboard: bool = Field(
        False, description="Write TensorBoard event files (training logs and eval scores) under runs/<name>/tensorboard/<stage>/."
    )
    mlflow: bool = Field(
        False, description="Log to MLflow: one run per recipe run, one nested run per stage (training logs, eval scores)."
    )
    mlflow_uri: str | None = Field(
        None, description="MLflow tracking URI; default a local SQLite store, sqlite:///<runs dir>/mlflow.db."
    )
    experiment: str | None = Field(None, description="MLflow experiment name; default the recipe's name.")


class Recipe(Strict):
    """A whole recipe. `stages` items validate against their type's model (see `recipe_model`)."""

    name: str = Field(description="Run name; the run directory is runs/<name>/.")
    base_dir: str | None = Field(
        None,
        description="Folder that relative paths in this recipe are read from (absolute, or relative to the recipe "
        "file); default the recipe file's folder. The resolved recipe a run writes (runs/<name>/recipe.resolved.yaml) "
        "sets it, so that file validates, plans and reruns from any folder with the same fingerprints.",
    )
    seed: int = Field(42, description="Seed for data order, LoRA init and sampling.")
    model: ModelSpec = Field(description="The base model every lineage starts from.")
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict, description="Named datasets.")
    eval: EvalSpec = Field(default_factory=EvalSpec, description="Benchmarks run after every stage.")
    stages: list[StageCommon] = Field(min_length=1, description="Stages, in order; each trains one model.")
    export: ExportSpec = Field(default_factory=ExportSpec, description="Artifacts written for serving engines.")
    launch: LaunchSpec = Field(
        default_factory=LaunchSpec, description="Run training stages on several processes or machines."
    )
    tracking: TrackingSpec = Field(
        default_factory=TrackingSpec, description="Experiment trackers that receive training logs and eval scores."
    )

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", value):
            raise ValueError("use letters, digits, '-', '_' or '.' (it names a folder)")
        return value


def recipe_model() -> type[Recipe]:
    """`Recipe` whose `stages` items are the registered stage types, told apart by `type`, whose
    `export.formats` are the registered export formats, and whose datasets accept every registered
    curation operator."""
    from posttrain.export.formats import EXPORT_FORMATS
    from posttrain.stages import STAGES

    return _recipe_model(tuple(t.spec for t in STAGES.values()), tuple(EXPORT_FORMATS.values()), dataset_model())


def stage_spec_types() -> dict[str, type[StageCommon]]:
    """Stage type name → the model that validates it."""
    from posttrain.stages import STAGES

    return {name: t.spec for name, t in STAGES.items()}


@lru_cache(maxsize=8)
def _recipe_model(specs: tuple[type[StageCommon], ...], formats: tuple[ExportFormat, ...],
                  dataset: type[DatasetSpec] = DatasetSpec) -> type[Recipe]:
    stage: Any = Annotated[Union[specs], Field(discriminator="type")] if len(specs) > 1 else specs[0]  # noqa: UP007
    field = Recipe.model_fields["stages"]
    datasets = Recipe.model_fields["datasets"]
    return create_model(
        "Recipe", __base__=Recipe, __module__=__name__,
        stages=(list[stage], Field(min_length=1, description=field.description)),
        export=(_export_spec(formats), Field(default_factory=lambda: _export_spec(formats)(),
                                            description=Recipe.model_fields["export"].description)),
        datasets=(dict[str, dataset], Field(default_factory=dict, description=datasets.description)),
    )


@lru_cache(maxsize=8)
def _export_spec(formats: tuple[ExportFormat, ...]) -> type[ExportSpec]:
    names = tuple(f.name for f in formats)
    defaults = [f.name for f in formats if f.default]
    return create_model(
        "ExportSpec", __base__=ExportSpec, __module__=__name__,
        formats=(list[Literal[names]], Field(  # type: ignore[valid-type]
            default_factory=lambda: list(defaults),
            description="; ".join(f"{f.name}: {f.summary}" for f in formats) + ".",
        )),
    )
