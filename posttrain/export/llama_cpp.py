"""llama.cpp's own GGUF tools, pinned with the llama-cpp-python we build: converter, LoRA converter, quantizer.

`scripts/setup_engines.sh tools` extracts `convert_hf_to_gguf.py`,
`convert_lora_to_gguf.py`, `conversion/` and the matching `gguf-py/` from the
llama-cpp-python sdist; the converters run in our own interpreter (they need
torch, transformers and sentencepiece, which posttrain has) with that `gguf-py`
first on the path. The quantizer is llama.cpp's C function
`llama_model_quantize`, reached through llama-cpp-python in the engine's own
virtualenv. Each tool runs in a subprocess, so a failure reaches the user as
one UserError with the tool's last lines, never as a traceback of ours.
"""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from posttrain.errors import UserError

LLAMA_CPP_VERSION = "0.3.36"
"""The llama-cpp-python release whose vendored llama.cpp gives the tools (scripts/setup_engines.sh)."""

QUANT_FTYPES = {
    "f16": "LLAMA_FTYPE_MOSTLY_F16", "bf16": "LLAMA_FTYPE_MOSTLY_BF16", "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
}
"""Recipe quant name -> llama.cpp's file type constant (llama_cpp.LLAMA_FTYPE_*)."""

_SETUP = "run `make engines` (or `scripts/setup_engines.sh tools` for the converters alone)"
_TAIL_LINES = 12

# Run by the llama.cpp venv's python: argv = source, destination, ftype constant name, threads.
_QUANTIZE = """
import sys, llama_cpp
src, dst, ftype, threads = sys.argv[1:5]
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = getattr(llama_cpp, ftype)
params.nthread = int(threads)
code = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
if code != 0:
    sys.exit(f"llama_model_quantize returned {code}")
"""


def engines_dir() -> Path:
    """Where scripts/setup_engines.sh installs the engines ($POSTTRAIN_ENGINES, default ~/.cache/posttrain/engines)."""
    return Path(os.environ.get("POSTTRAIN_ENGINES", Path.home() / ".cache" / "posttrain" / "engines")).expanduser()


def tools_dir() -> Path:
    """The extracted converters; UserError saying how to install them when absent."""
    tools = engines_dir() / "llama-cpp-tools" / LLAMA_CPP_VERSION
    if not (tools / "convert_hf_to_gguf.py").is_file() or not (tools / "gguf-py").is_dir():
        raise UserError(f"llama.cpp's GGUF converter (llama.cpp of llama-cpp-python {LLAMA_CPP_VERSION}) is not "
                        f"installed in {tools}; {_SETUP}")
    return tools


def engine_python() -> Path:
    """The python of the llama.cpp engine's virtualenv, which has llama-cpp-python (the quantizer)."""
    venv = engines_dir() / "llama-cpp-venv"
    python = venv / "bin" / "python"
    if not python.exists() or not list(venv.glob(f".installed-{LLAMA_CPP_VERSION}*")):
        raise UserError(f"llama.cpp's quantizer needs llama-cpp-python {LLAMA_CPP_VERSION} in {venv}; "
                        "run `make engines` (or `scripts/setup_engines.sh llama-cpp`)")
    return python


def supported_architectures() -> frozenset[str]:
    """Every Hugging Face architecture name llama.cpp's converter registers (`@ModelBase.register(...)`)."""
    return _registered(tools_dir())


@functools.cache
def _registered(tools: Path) -> frozenset[str]:
    # Read from the source, not by importing it: the import pulls torch and every model class in.
    names: set[str] = set()
    for source in [tools / "convert_hf_to_gguf.py", *sorted((tools / "conversion").glob("*.py"))]:
        tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                names.update(_register_args(node.decorator_list))
    return frozenset(names)


def _register_args(decorators: list[ast.expr]) -> list[str]:
    found = []
    for decorator in decorators:
        if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr == "register" and isinstance(decorator.func.value, ast.Name)
                and decorator.func.value.id == "ModelBase"):
            found += [arg.value for arg in decorator.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
    return found


def convert_model(hf_folder: Path, out_file: Path, outtype: str = "f16", name: str | None = None) -> Path:
    """A Hugging Face model folder (weights, config, tokenizer) -> one GGUF file, by llama.cpp's converter.

    `name` is the file's `general.name` (default: the converter's guess from the folder name).
    """
    tools = tools_dir()
    command = [sys.executable, str(tools / "convert_hf_to_gguf.py"), str(hf_folder), "--outfile", str(out_file),
               "--outtype", outtype]
    if name:
        command += ["--model-name", name]
    _run_tool("convert_hf_to_gguf.py", command, tools, subject=hf_folder)
    return out_file


def convert_adapter(adapter_dir: Path, base_folder: Path, out_file: Path, outtype: str = "f16") -> Path:
    """A PEFT LoRA adapter -> a llama.cpp LoRA GGUF for the base in `base_folder`, by llama.cpp's converter."""
    tools = tools_dir()
    _run_tool("convert_lora_to_gguf.py", [sys.executable, str(tools / "convert_lora_to_gguf.py"), str(adapter_dir),
                                          "--base", str(base_folder), "--outfile", str(out_file), "--outtype", outtype],
              tools, subject=adapter_dir)
    return out_file


def quantize(src: Path, dst: Path, quant: str) -> Path:
    """Requantize an f16/f32 GGUF to `quant` with llama.cpp's quantizer (`llama_model_quantize`)."""
    if quant not in QUANT_FTYPES:
        raise UserError(f"unknown GGUF quantization {quant!r}; choose from {', '.join(QUANT_FTYPES)}")
    threads = os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count() or 1)  # the thread budget the user set
    done = subprocess.run([str(engine_python()), "-c", _QUANTIZE, str(src), str(dst), QUANT_FTYPES[quant], threads],
                          capture_output=True, text=True, env=_clean_env())
    if done.returncode != 0 or not dst.exists():
        raise UserError(f"llama.cpp's quantizer could not write {quant} from {src}:", _tail(done))
    return dst


@dataclass
class GgufFacts:
    """What a GGUF file's header says."""

    architecture: str
    file_type: str
    """llama.cpp's file type (`MOSTLY_Q4_K_M`); the mix of tensor types is in `tensor_types`."""
    tensor_count: int
    tensor_types: Counter[str] = field(default_factory=Counter)
    chat_template: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"architecture": self.architecture, "file_type": self.file_type, "tensor_count": self.tensor_count,
                "tensor_types": dict(sorted(self.tensor_types.items())), "chat_template": self.chat_template is not None}


def describe(path: Path) -> GgufFacts:
    """Read a GGUF file's header: architecture, file type, tensors by type, chat template.

    Read once per file version (path, size, modification time): gguf's reader parses every vocabulary entry,
    seconds for a large vocabulary, and the gguf and ollama exports both ask about the same file.
    """
    stat = Path(path).stat() if Path(path).is_file() else None
    if stat is None:
        return _describe(Path(path))
    return _describe_cached(Path(path).resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _describe_cached(path: Path, size: int, mtime_ns: int) -> GgufFacts:
    return _describe(path)


def _describe(path: Path) -> GgufFacts:
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not a GGUF file llama.cpp's gguf package can read: {exc}") from exc
    fields = reader.fields

    def value(key: str) -> object:
        return fields[key].contents() if key in fields else None

    ftype = value("general.file_type")
    try:
        file_type = gguf.LlamaFileType(int(ftype)).name if ftype is not None else "ALL_F32"
    except ValueError:
        file_type = f"type {ftype}"
    template = value("tokenizer.chat_template")
    return GgufFacts(
        architecture=str(value("general.architecture")), file_type=file_type, tensor_count=len(reader.tensors),
        tensor_types=Counter(t.tensor_type.name for t in reader.tensors),
        chat_template=template if isinstance(template, str) else None,
    )


def tensor_names(path: Path) -> list[str]:
    """The names of every tensor a GGUF file holds, in file order."""
    import gguf

    return [t.name for t in gguf.GGUFReader(path).tensors]


def _run_tool(name: str, command: list[str], tools: Path, *, subject: Path) -> None:
    env = {**_clean_env(), "PYTHONPATH": str(tools / "gguf-py"), "NO_LOCAL_GGUF": ""}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tools)
    if done.returncode != 0:
        raise UserError(f"llama.cpp's {name} (llama-cpp-python {LLAMA_CPP_VERSION}) could not convert {subject}:",
                        _tail(done))


def _clean_env() -> dict[str, str]:
    # Our PYTHONPATH would put posttrain's own tree (and another gguf) ahead of the tool's.
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _tail(done: subprocess.CompletedProcess) -> list[str]:
    lines = [line for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
    return lines[-_TAIL_LINES:] or [f"exit code {done.returncode}, no output"]

