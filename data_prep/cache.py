"""Content address of a curated dataset: its inputs, its spec, and what the operators depend on.

Local files are hashed by content (xxh3 runs at several GB/s, so this stays
cheap next to curation itself, and a copied or touched file with the same bytes
still hits the cache). Very large files fall back to size + mtime. `save_to_disk`
folders are addressed by their files' names, sizes and mtimes; hub datasets by
id, subset and split (offline, the cached copy is what will be read).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import xxhash

from data_prep.sources import resolve_path
from data_prep.spec import DatasetSpec

# Bump when curation logic changes what a given spec produces.
CURATION_VERSION = "2"  # 2: public dataset layouts, implicit-prompt pairs, unpaired kind
_HASH_CONTENT_UP_TO = 2 << 30
_BLOCK = 1 << 22


def texts_fingerprint(texts: Iterable[str]) -> str:
    """Hash of the eval texts handed to decontamination (pass as `eval_fingerprint`)."""
    h = xxhash.xxh3_128()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def file_fingerprint(path: Path) -> str:
    if not path.exists():
        return "missing"
    if path.is_dir():
        h = xxhash.xxh3_128()
        for p in sorted(path.rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return "dir:" + h.hexdigest()
    st = path.stat()
    if st.st_size > _HASH_CONTENT_UP_TO:
        return f"stat:{st.st_size}:{st.st_mtime_ns}"
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return "xxh3:" + h.hexdigest()


def dataset_fingerprint(
    spec: DatasetSpec,
    *,
    base_dir: Path,
    tokenizer_id: str | None = None,
    eval_fingerprint: str | None = None,
    seed: int = 0,
) -> str:
    inputs = []
    for src in spec.sources:
        if src.hub:
            inputs.append(f"hub:{src.hub}:{src.subset}:{src.split}")
        else:
            inputs.append(file_fingerprint(resolve_path(src, base_dir)))
    for p in spec.curate_input_files:
        inputs.append(file_fingerprint(_resolve(p, base_dir)))
    payload = {
        "version": CURATION_VERSION,
        "spec": spec.model_dump(mode="json"),
        "inputs": inputs,
        "tokenizer": tokenizer_id if spec.uses_tokenizer else None,
        "eval": eval_fingerprint if spec.uses_eval else None,
        "seed": seed,
    }
    return xxhash.xxh3_128_hexdigest(json.dumps(payload, sort_keys=True).encode())


def _resolve(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


def tokenizer_id(tokenizer: object) -> str | None:
    """What token counts depend on: the vocabulary and the chat template, not where the files live.

    Keyed by content so that moving the model cache ($POSTTRAIN_CACHE) or
    loading the same tokenizer from another folder keeps curated data cached.
    """
    if tokenizer is None:
        return None
    h = xxhash.xxh3_64(type(tokenizer).__name__.encode())
    get_vocab = getattr(tokenizer, "get_vocab", None)
    if callable(get_vocab):
        h.update(json.dumps(sorted(get_vocab().items())).encode())
    # The chat template changes token counts as much as the vocabulary does.
    h.update(str(getattr(tokenizer, "chat_template", None) or "").encode())
    return h.hexdigest()
