"""Typed recipe schema for `datasets.<name>`: sources, canonical kind, curation steps.

Every model forbids unknown keys, so a misspelt option is a validation error
rather than a silently ignored setting. Curation steps are written in YAML as
single-key mappings (`{dedup: exact}`); the key picks the operator model, and
an unknown key (`{dedupe: exact}`) fails with the list of known operators.
Short forms (`dedup: exact`, `pii: scrub`, `quality: default`,
`dedup: {minhash: 0.85}`) are expanded by before-validators into the full
models, and `model_dump()` always gives the full form, which is what the cache
fingerprint hashes.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

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
PiiKind = Literal["email", "phone", "ip", "key"]
TextField = Literal["all", "prompt", "answer"]

_SINGLE_TURN = {"alpaca", "dolly", "metamathqa", "gsm8k"}
_PAIRS = {"preference", "hh_rlhf"}
# Which input formats can produce which canonical kind (auto is checked per row).
COMPATIBLE_FORMATS: dict[str, set[str]] = {
    "chat": {"messages", "sharegpt", "chatml", "llama3", "human_assistant", "prompt_completion", *_SINGLE_TURN},
    "preference": _PAIRS,
    "prompt": {"prompt", *_SINGLE_TURN},
    "unpaired": {"kto", *_PAIRS},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceSpec(_Strict):
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


# ---------------------------------------------------------------- operators


class ExactDedup(_Strict):
    method: Literal["exact"] = Field(
        default="exact", description="Hash of the normalized text (case and whitespace folded)."
    )
    on: TextField = Field(
        default="all", description="Which text identifies a duplicate: the whole row, prompt or answer."
    )


class MinHashDedup(_Strict):
    method: Literal["minhash"] = Field(
        default="minhash", description="MinHash + LSH near-duplicate detection."
    )
    threshold: float = Field(
        default=0.8, gt=0, lt=1, description="Jaccard similarity above which rows are near-duplicates."
    )
    num_perm: int = Field(default=128, ge=16, le=1024, description="MinHash signature length (permutations).")
    shingle: int = Field(default=3, ge=1, le=16, description="Word n-gram size of the shingles.")
    on: TextField = Field(
        default="all", description="Which text is compared: the whole row, prompt or answer."
    )


def _expand_method(value: Any) -> Any:
    """`exact` / `minhash` / `{minhash: 0.85}` / `{minhash: {...}}` -> `{method: ..., ...}`."""
    if isinstance(value, str):
        return {"method": value}
    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        if key in ("exact", "minhash"):
            if isinstance(inner, (int, float)) and not isinstance(inner, bool):
                return {"method": key, "threshold": inner}
            if isinstance(inner, dict):
                return {"method": key, **inner}
            if inner is None:
                return {"method": key}
    return value


class TokenFilter(_Strict):
    min_tokens: int = Field(default=0, ge=0, description="Drop rows shorter than this many tokens.")
    max_tokens: int | None = Field(
        default=None,
        gt=0,
        description="Drop rows longer than this many tokens (as the chat template renders them).",
    )


class QualitySpec(_Strict):
    min_answer_chars: int | None = Field(
        default=1, ge=0, description="Drop rows whose answer has fewer non-space characters."
    )
    max_repetition: float | None = Field(
        default=0.3, gt=0, le=1, description="Drop answers whose share of repeated word 3-grams exceeds this."
    )
    max_symbol_ratio: float | None = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Drop answers whose share of non-alphanumeric characters exceeds this.",
    )
    drop_truncated: bool = Field(
        default=True,
        description="Drop answers that look cut off (open code fence, trailing comma/connective).",
    )


class RegexSpec(_Strict):
    drop: list[str] = Field(default_factory=list, description="Drop rows where any of these regexes matches.")
    keywords: list[str] = Field(
        default_factory=list, description="Drop rows containing any of these whole words."
    )
    field: TextField = Field(default="all", description="Which text the patterns are matched against.")
    ignore_case: bool = Field(default=True, description="Case-insensitive matching.")

    @field_validator("drop")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"invalid regex {p!r}: {e}") from None
        return patterns


class PiiSpec(_Strict):
    action: Literal["scrub", "drop"] = Field(
        default="scrub",
        description="`scrub` replaces matches with placeholders like <EMAIL>; `drop` removes the row.",
    )
    kinds: list[PiiKind] = Field(
        default_factory=lambda: ["email", "phone", "ip", "key"], description="Which kinds of PII to look for."
    )


class DecontaminateSpec(_Strict):
    against: Literal["eval"] | list[str] = Field(
        default="eval",
        description="`eval` (the recipe's eval suite texts) or a list of files (JSONL or text; `eval` may be listed too).",
    )
    ngram: int = Field(default=13, ge=3, le=64, description="Word n-gram length counted as overlap.")
    min_ngram: int = Field(
        default=6,
        ge=1,
        description="Eval texts shorter than `ngram` but at least this many tokens are matched whole.",
    )
    min_overlap: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Share of an eval text's n-grams a row must contain to count as contaminated "
        "(0: any single n-gram).",
    )
    field: TextField = Field(default="all", description="Which text of a training row is checked.")


class _Step(_Strict):
    op: ClassVar[str]


class DedupStep(_Step):
    op: ClassVar[str] = "dedup"
    dedup: Annotated[ExactDedup | MinHashDedup, Field(discriminator="method")] = Field(
        description="Duplicate removal: `exact`, `minhash`, `{minhash: 0.85}` or `{minhash: {threshold, num_perm, shingle}}`."
    )

    @field_validator("dedup", mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        return _expand_method(v)


class FilterStep(_Step):
    op: ClassVar[str] = "filter"
    filter: TokenFilter = Field(description="Token-length filter using the stage model's tokenizer.")


class QualityStep(_Step):
    op: ClassVar[str] = "quality"
    quality: QualitySpec = Field(description="Heuristic quality filters; `default` uses the defaults.")

    @field_validator("quality", mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        return {} if v in ("default", None) else v


class RegexStep(_Step):
    op: ClassVar[str] = "regex"
    regex: RegexSpec = Field(description="Regex / keyword filters.")


class PiiStep(_Step):
    op: ClassVar[str] = "pii"
    pii: PiiSpec = Field(
        description="PII scrubbing (emails, phones, IPs, key-like strings); `scrub` or `drop`."
    )

    @field_validator("pii", mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        return {"action": v} if isinstance(v, str) else v


class DecontaminateStep(_Step):
    op: ClassVar[str] = "decontaminate"
    decontaminate: DecontaminateSpec = Field(
        description="Remove rows overlapping the eval suite (n-gram match)."
    )

    @field_validator("decontaminate", mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        return {"against": v} if isinstance(v, (str, list)) else v


_STEPS: tuple[type[_Step], ...] = (DedupStep, FilterStep, QualityStep, RegexStep, PiiStep, DecontaminateStep)
OPERATOR_NAMES = tuple(s.op for s in _STEPS)


def _step_key(value: Any) -> str | None:
    if isinstance(value, _Step):
        return value.op
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    return None


CurateStep = Annotated[
    Annotated[DedupStep, Tag("dedup")]
    | Annotated[FilterStep, Tag("filter")]
    | Annotated[QualityStep, Tag("quality")]
    | Annotated[RegexStep, Tag("regex")]
    | Annotated[PiiStep, Tag("pii")]
    | Annotated[DecontaminateStep, Tag("decontaminate")],
    Discriminator(
        _step_key,
        custom_error_type="curate_step",
        custom_error_message="a curate step is a single-key mapping naming an operator, one of: "
        + ", ".join(OPERATOR_NAMES),
    ),
]


class DatasetSpec(_Strict):
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
    curate: list[CurateStep] = Field(
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
        return any(isinstance(s, FilterStep) for s in self.curate)

    @property
    def uses_eval(self) -> bool:
        return any(
            isinstance(s, DecontaminateStep)
            and (s.decontaminate.against == "eval" or "eval" in s.decontaminate.against)
            for s in self.curate
        )
