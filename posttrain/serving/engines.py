"""Where the serving engines' own virtualenvs are (scripts/setup_engines.sh puts them there), and their commands."""

from __future__ import annotations

import os
from pathlib import Path

from posttrain.errors import UserError
from posttrain.serving.process import HOST, PORT

ENGINE_VENVS = {"llama.cpp": "llama-cpp", "vllm": "vllm"}
"""Engine → the name of its virtualenv folder (`<name>-venv`)."""

NO_PENALTY_FIELDS: dict[str, dict[str, float]] = {
    # llama-cpp-python's server applies `repeat_penalty` 1.1 unless a request says otherwise, greedy decoding
    # included: every token already in the context (the prompt's numbers among them) is pushed down, so its
    # "greedy" replies were not the model's. transformers' and vLLM's defaults apply no penalty.
    "llama.cpp": {"repeat_penalty": 1.0},
    # Ollama (llama.cpp underneath) defaults to 1.1 too; the Modelfile sets it, so `ollama run` decodes as we scored.
    "ollama": {"repeat_penalty": 1.0},
    "vllm": {},
}
"""Fields every request to an engine sends (scoring, `posttrain ui`'s chat), so it decodes as transformers does."""


def engines_dir() -> Path:
    return Path(os.environ.get("POSTTRAIN_ENGINES", Path.home() / ".cache" / "posttrain" / "engines")).expanduser()


def engine_python(engine: str) -> Path:
    """The python of `engine`'s virtualenv; UserError saying how to install it when it is missing."""
    venv = engines_dir() / f"{ENGINE_VENVS[engine]}-venv"
    python = venv / "bin" / "python"
    if not list(venv.glob(".installed-*")) or not python.exists():
        raise UserError(f"the {engine} engine is not installed in {venv}: run `make engines` "
                        f"(scripts/setup_engines.sh; POSTTRAIN_ENGINES={engines_dir()})")
    return python


def engine_version(engine: str) -> str:
    """The installed version, from the virtualenv's `.installed-<version>[-extras]` stamp."""
    venv = engines_dir() / f"{ENGINE_VENVS[engine]}-venv"
    stamps = sorted(p.name.removeprefix(".installed-") for p in venv.glob(".installed-*"))
    return stamps[-1].split("-")[0] if stamps else "unknown"


def engine_env() -> dict[str, str]:
    """The environment an engine runs in: offline, no telemetry, and never our tree's packages on its path."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    env.pop("PYTHONPATH", None)
    return env


def llama_cpp_command(python: Path, model: Path, *, n_ctx: int = 2048, threads: int | None = None) -> list[str]:
    """llama-cpp-python's OpenAI server for one GGUF file. No --chat_format: the server then renders with the
    GGUF's own `tokenizer.chat_template` (Jinja2ChatFormatter), as users who serve the file get."""
    threads = threads or max(1, min(4, os.cpu_count() or 1))
    return [str(python), "-m", "llama_cpp.server", "--model", str(model), "--host", HOST, "--port", PORT,
            "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--seed", "0"]


def vllm_command(python: Path, manifest: dict, *, max_model_len: int = 2048) -> list[str]:
    """vLLM's OpenAI server from an export manifest (the adapter as a LoRA module over the base), on CPU."""
    command = [str(python), *manifest["python_command"][1:]]
    return [*command, "--host", HOST, "--port", PORT, "--dtype", "float32", "--max-model-len", str(max_model_len), "--seed", "0"]
