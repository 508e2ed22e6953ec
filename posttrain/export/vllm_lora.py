"""What vLLM takes LoRA on for an architecture, asked of vLLM itself (its model registry, in the engine's venv).

`serving/vllm_lora_probe.py` builds the architecture's vLLM model class on the meta device and answers which
adapter modules vLLM's loader accepts; the answer is cached under the engines folder per vLLM version,
architecture and the config fields that change it (`PROBE_FIELDS`), so a recipe is checked against the vLLM that
will serve it, once, in a few seconds.
"""

from __future__ import annotations

import hashlib
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
# The config fields that change which modules vLLM's model class builds, so its answer: a tied output head has no
# lm_head module; the experts, and which layers are dense, decide whether `experts` / the router exist.
PROBE_FIELDS = ("model_type", "tie_word_embeddings", "num_experts", "num_local_experts", "n_routed_experts",
                "decoder_sparse_step", "mlp_only_layers", "first_k_dense_replace", "moe_layer_freq",
                "shared_expert_intermediate_size", "n_shared_experts")


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
    cache = engines.engines_dir() / "probes" / f"vllm-{version}" / f"{architecture}-{probe_key(config)}.json"
    if not cache.is_file():
        answer = _probe(python, config)
        write_json(cache, answer)
    answer = json.loads(cache.read_text())
    return VllmLora(architecture=architecture, model_class=answer["model_class"],
                    supports_lora=answer["supports_lora"],
                    expected_modules=frozenset(answer.get("expected_modules") or ()), vllm_version=version)


def probe_key(config: dict[str, Any]) -> str:
    """A short hash of the config fields that change the probe's answer (`PROBE_FIELDS`, absent ones as null)."""
    fields = {name: config.get(name) for name in PROBE_FIELDS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]


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
