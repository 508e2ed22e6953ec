"""Typed recipe schema for `datasets.<name>`: sources, canonical kind, curation steps.

Every model forbids unknown keys, so a misspelt option is a validation error
rather than a silently ignored setting. Curation steps are written in YAML as
single-key mappings (`{dedup: exact}`); the key picks the operator's step model
from the registry (`data_prep.operators.OPERATORS`, each operator's model and
short forms declared in its own module), and an unknown key (`{dedupe: exact}`)
fails with the list of known operators. `model_dump()` always gives the full
form of a step, which is what the cache fingerprint hashes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import Discriminator, Field, Tag, create_model, model_validator

from data_prep.operators import OPERATORS, CurateStepModel, Operator, operator_of, settings_of
from data_prep.operators.base import StrictSpec

Kind = Literal["chat", "preference", "prompt", "unpaired"]
SourceFormat = Literal[
    "auto",
    "messages",
    "sharegpt",
    "chatml",
    "llama3",
    "human_assistant",
    "alpaca",
    "dolly",
    "metamathqa",
    "gsm8k",
    "prompt_completion",
    "prompt",
    "preference",
    "hh_rlhf",
    "kto",
]

_SINGLE_TURN = {"alpaca", "dolly", "metamathqa", "gsm8k"}
_PAIRS = {"preference", "hh_rlhf"}
# Which input formats can produce which canonical kind (auto is checked per row).
COMPATIBLE_FORMATS: dict[str, set[str]] = {
    "chat": {"messages", "sharegpt", "chatml", "llama3", "human_assistant", "prompt_completion", *_SINGLE_TURN},
    "preference": _PAIRS,
    "prompt": {"prompt", *_SINGLE_TURN},
    "unpaired": {"kto", *_PAIRS},
}


class SourceSpec(StrictSpec):
    path: str | None = Field(
        default=None,
        description="Local JSONL/JSON/CSV/Parquet file (optionally .gz for JSONL); relative paths are "
        "resolved against the recipe file's folder.",
    )
    hub: str | None = Field(
        default=None, description="Hugging Face dataset id (needs the hub or its local cache)."
    )
    disk: str | None = Field(default=None, description="Folder written by `datasets` `save_to_disk`.")
    split: str = Field(
        default="train", description="Split to read from a hub dataset or a saved DatasetDict."
    )
    subset: str | None = Field(default=None, description="Hub dataset configuration name.")
    format: SourceFormat = Field(
        default="auto",
        description="Input row format: `auto` detects it per row from its columns and content (most "
        "specific reading that fits the dataset's kind), or a preset named after the dataset layout it "
        f"reads: {', '.join(get_args(SourceFormat)[1:])} (README: 'Dataset formats').",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Rename input columns before format detection: {source_column: canonical_column}.",
    )
    weight: float | None = Field(
        default=None,
        gt=0,
        description="Mixing multiplier on this source's curated rows: 0.5 keeps a seeded half, 2 repeats each row twice.",
    )
    max_rows: int | None = Field(
        default=None,
        gt=0,
        description="Cap on this source's rows in the final mix (seeded sample, after curation).",
    )

    @model_validator(mode="after")
    def _one_location(self) -> SourceSpec:
        given = [k for k in ("path", "hub", "disk") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"a source needs exactly one of path, hub, disk (got {given or 'none'})")
        if self.subset and not self.hub:
            raise ValueError("`subset` only applies to a hub source")
        return self

    @property
    def label(self) -> str:
        """How the source is named in reports and rejects (before path resolution)."""
        return self.path or (f"hub:{self.hub}" if self.hub else f"disk:{self.disk}")


# ---------------------------------------------------------------- curate steps


def _step_key(value: Any) -> str | None:
    if isinstance(value, CurateStepModel):
        return value.op
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    return None


def curate_step_type(operators: tuple[Operator, ...]) -> Any:
    """One curate step: a single-key mapping whose key picks the operator's step model."""
    names = ", ".join(op.name for op in operators)
    members = tuple(Annotated[op.step_model, Tag(op.name)] for op in operators)
    return Annotated[
        Union[members],  # noqa: UP007 (a union built from a tuple)
        Discriminator(
            _step_key,
            custom_error_type="curate_step",
            custom_error_message=f"a curate step is a single-key mapping naming an operator, one of: {names}",
        ),
    ]


_BUILT_IN: tuple[Operator, ...] = tuple(OPERATORS.values())
CurateStep = curate_step_type(_BUILT_IN)
"""A curate step with one of the operators shipped in data_prep/operators/."""


class DatasetSpec(StrictSpec):
    kind: Kind = Field(
        default="chat",
        description="Canonical row shape: chat `messages`, preference (prompt/chosen/rejected), prompt "
        "(RL prompts with answer columns) or unpaired (prompt/completion/label, for KTO). An `unpaired` "
        "dataset reads KTO rows (prompt, completion, label) and also preference sources: each pair "
        "becomes two rows, chosen with label true and rejected with label false.",
    )
    sources: list[SourceSpec] = Field(
        min_length=1, description="Input files or datasets, mixed into one dataset."
    )
    curate: list[CurateStep] = Field(  # type: ignore[valid-type]
        default_factory=list, description="Curation operators, applied in this order."
    )
    max_reject_fraction: float = Field(
        default=0.2, ge=0, le=1, description="Fail when more than this share of read rows is malformed."
    )
    max_line_bytes: int = Field(
        default=1 << 20, gt=0, description="Reject (without loading) input lines longer than this many bytes."
    )
    eval_split: float = Field(
        default=0.0, ge=0, lt=1, description="Share of the curated rows held out as eval.jsonl."
    )
    shuffle: bool = Field(default=True, description="Seeded shuffle of the final mix.")

    @model_validator(mode="after")
    def _formats_fit_kind(self) -> DatasetSpec:
        ok = COMPATIBLE_FORMATS[self.kind]
        bad = [
            f"{s.label} (format {s.format})"
            for s in self.sources
            if s.format != "auto" and s.format not in ok
        ]
        if bad:
            raise ValueError(f"kind {self.kind!r} accepts formats {sorted(ok)}; not: {', '.join(bad)}")
        return self

    @property
    def uses_tokenizer(self) -> bool:
        return any(operator_of(s).needs_tokenizer for s in self.curate)

    @property
    def uses_eval(self) -> bool:
        return any((op := operator_of(s)).reads_eval and op.reads_eval(settings_of(s)) for s in self.curate)

    @property
    def curate_input_files(self) -> list[str]:
        """Files the curate steps read (as written, relative to the recipe), in step order."""
        return [
            path
            for s in self.curate
            if (op := operator_of(s)).input_files
            for path in op.input_files(settings_of(s))
        ]


def dataset_model() -> type[DatasetSpec]:
    """`DatasetSpec` whose curate steps accept every registered operator, plug-ins included."""
    return _dataset_model(tuple(OPERATORS.values()))


@lru_cache(maxsize=8)
def _dataset_model(operators: tuple[Operator, ...]) -> type[DatasetSpec]:
    if operators == _BUILT_IN:
        return DatasetSpec
    field = DatasetSpec.model_fields["curate"]
    return create_model(
        "DatasetSpec",
        __base__=DatasetSpec,
        __module__=__name__,
        curate=(
            list[curate_step_type(operators)],  # type: ignore[misc]
            Field(default_factory=list, description=field.description),
        ),
    )
