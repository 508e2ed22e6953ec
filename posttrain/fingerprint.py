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


def stage_fingerprint(spec: Any, input_fingerprint: str, data_fingerprint: str, seed: int) -> str:
    """A stage's identity: its resolved spec (less eval-only switches), its input model and its data."""
    return fingerprint(spec.model_dump(mode="json", exclude={"evaluate"}), input_fingerprint, data_fingerprint, seed)
