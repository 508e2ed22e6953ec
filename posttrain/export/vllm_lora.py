"""What vLLM takes LoRA on for an architecture, asked of vLLM itself (its model registry, in the engine's venv).

`serving/vllm_lora_probe.py` builds the architecture's vLLM model class on the meta device and answers which
adapter modules vLLM's loader accepts; the answer is cached per vLLM version and architecture under the engines
folder, so a recipe is checked against the vLLM that will serve it, once, in a few seconds.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.errors import UserError
from posttrain.rundir import write_json
from posttrain.serving import engines

PROBE = Path(__file__).resolve().parents[1] / "serving" / "vllm_lora_probe.py"


@dataclass(frozen=True)
class VllmLora:
    """vLLM's answer for one architecture: whether its model class takes LoRA, and on which modules."""

    architecture: str
    model_class: str
    supports_lora: bool
    expected_modules: frozenset[str]
    vllm_version: str

    def unexpected(self, targets: list[str]) -> list[str]:
        """The adapter's target module names (suffixes) vLLM's loader refuses for this architecture."""
        return sorted({t.rsplit(".", 1)[-1] for t in targets} - self.expected_modules)


def vllm_lora(config: dict[str, Any]) -> VllmLora:
    """vLLM's LoRA facts for the model whose config.json is `config`; UserError when vLLM is not installed or
    cannot build the architecture (said with its reason)."""
    python = engines.engine_python("vllm")
    version = engines.engine_version("vllm")
    architecture = str((config.get("architectures") or ["?"])[0])
    cache = engines.engines_dir() / "probes" / f"vllm-{version}" / f"{architecture}.json"
    if not cache.is_file():
        answer = _probe(python, config)
        write_json(cache, answer)
    answer = json.loads(cache.read_text())
    return VllmLora(architecture=architecture, model_class=answer["model_class"],
                    supports_lora=answer["supports_lora"],
                    expected_modules=frozenset(answer.get("expected_modules") or ()), vllm_version=version)


def _probe(python: Path, config: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="posttrain-vllm-probe-") as folder:
        (Path(folder) / "model").mkdir()
        (Path(folder) / "model" / "config.json").write_text(json.dumps(config))
        done = subprocess.run([str(python), str(PROBE), str(Path(folder) / "model"), str(Path(folder) / "init")],
                              capture_output=True, text=True, timeout=600, env=engines.engine_env(), cwd=folder)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"vLLM {engines.engine_version('vllm')} could not build {config.get('architectures')} "
                        f"to read which modules it takes LoRA on: {tail}")
    return json.loads(lines[-1])
