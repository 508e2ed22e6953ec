"""Content fingerprints: equal fingerprint means the stage's output would be the same."""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Bump when a change in posttrain itself changes what a stage produces, so old
# caches are not reused with the new behaviour.
FINGERPRINT_VERSION = 1


def fingerprint(*parts: Any) -> str:
    payload = json.dumps([FINGERPRINT_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


NEUTRAL_AT_DEFAULT = {"fingerprint": "when_set"}
"""`json_schema_extra` of a spec field added after runs were cached, whose default keeps what stages did before
it existed: at its default it stays out of the fingerprint, so adding it leaves every cache valid."""


def stage_fingerprint(spec: Any, input_fingerprint: str, data_fingerprint: str, seed: int) -> str:
    """A stage's identity: its resolved spec (less eval-only switches), its input model and its data."""
    return fingerprint(identity(spec, exclude={"evaluate"}), input_fingerprint, data_fingerprint, seed)


def identity(spec: Any, exclude: set[str] = frozenset()) -> Any:
    """`spec` as JSON, less fields marked NEUTRAL_AT_DEFAULT that hold their default (recursively)."""
    from pydantic import BaseModel

    if not isinstance(spec, BaseModel):
        return spec
    dumped = spec.model_dump(mode="json", exclude=set(exclude))
    for name, field in type(spec).model_fields.items():
        if name not in dumped:
            continue
        value = getattr(spec, name)
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("fingerprint") == "when_set" and value == field.get_default(call_default_factory=True):
            del dumped[name]
        elif isinstance(value, BaseModel):
            dumped[name] = identity(value)
    return dumped
