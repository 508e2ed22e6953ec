"""`Operator`: the one declaration a curation operator module makes about itself.

An operator module declares the model of its YAML block (fields documented
where they are declared), its apply function and `OPERATOR = Operator(...)`.
`data_prep.operators.OPERATORS` collects the declarations; the dataset schema
(`data_prep.spec`), the cache fingerprint and `prepare_dataset` read operators
from there, and nothing else lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from data_prep.rows import Row

TextField = Literal["all", "prompt", "answer"]
"""Which text of a row an operator looks at (see `data_prep.rows.texts`)."""


class StrictSpec(BaseModel):
    """Base of every curation model: unknown keys are errors, not silently ignored settings."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class OpContext:
    kind: str
    base_dir: Path
    tokenizer: Any = None
    eval_texts: Sequence[str] = ()
    seed: int = 0


@dataclass
class OpResult:
    kept: list[Row]
    removed: list[tuple[Row, str, str]] = field(default_factory=list)  # (row, reason, detail)
    details: dict[str, Any] = field(default_factory=dict)  # operator-specific counts for the report


class CurateStepModel(StrictSpec):
    """A curate step as YAML writes it: one field, named after its operator (`{pii: {...}}`)."""

    op: ClassVar[str]
    """The operator's name, which is also the one field's name."""
    operator: ClassVar[Operator]
    """The declaration this model was built from."""


@dataclass(frozen=True, eq=False)
class Operator:
    name: str
    """The key a curate step is written with (`{dedup: exact}` names `dedup`)."""
    spec: Any
    """Type of the value under that key: a pydantic model, or an annotated union of models."""
    apply: Callable[[list[Row], Any, OpContext], OpResult]
    """`(rows, settings, ctx) -> OpResult`: every input row ends up kept or removed with a reason.
    Heavy libraries are imported inside it, so collecting the declarations stays cheap."""
    description: str
    """What the step does, shown as the description of its key in the schema."""
    short_forms: Callable[[Any], Any] | None = None
    """Expands short YAML forms (`pii: scrub`) to the full mapping before validation; the model
    dump is always the full form, which is what the cache fingerprint hashes."""
    label: Callable[[Any], str] | None = None
    """Name of a step in rejects.jsonl and the report, from its settings; default `name`."""
    needs_tokenizer: bool = False
    """The step counts tokens with the stage model's tokenizer (its id enters the fingerprint)."""
    reads_eval: Callable[[Any], bool] | None = None
    """Whether a step with these settings reads the recipe's eval texts (their hash enters the
    fingerprint)."""
    input_files: Callable[[Any], list[str]] | None = None
    """Files a step with these settings reads, relative to the recipe; their content enters the
    fingerprint."""
    step_model: type[CurateStepModel] = field(init=False, repr=False, compare=False)
    """The pydantic model of a whole curate step, `{<name>: <spec>}`, built from the fields above."""

    def __post_init__(self) -> None:
        # The name becomes a pydantic field of the step model: it must not shadow the model's own attributes.
        if not self.name.isidentifier() or self.name in ("op", "operator") or self.name.startswith("model_"):
            raise ValueError(f"curation operator name {self.name!r}: use a Python identifier, not op/operator/model_*")
        validators = {}
        if self.short_forms is not None:
            expand = self.short_forms
            validators["_short_forms"] = field_validator(self.name, mode="before")(lambda cls, v: expand(v))
        model = create_model(
            f"{self.name.title().replace('_', '')}Step",
            __base__=CurateStepModel,
            __module__=__name__,
            __validators__=validators,
            **{self.name: (self.spec, Field(description=self.description))},
        )
        model.op = self.name
        model.operator = self
        object.__setattr__(self, "step_model", model)

    def step_label(self, settings: Any) -> str:
        return self.label(settings) if self.label else self.name
