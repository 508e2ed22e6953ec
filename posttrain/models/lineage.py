"""A stage's model is its lineage: a base plus the LoRA adapters of the stages before it.

Stage k trains a LoRA on top of stage k-1's merged weights, so

    W_k = W_0 + s_1 B_1 A_1 + ... + s_k B_k A_k

and the whole chain is exactly one LoRA of rank r_1 + ... + r_k on the base:
concatenate the A's along the rank axis and the scaled B's along theirs
(`cumulative_adapter`). A full fine-tune or a distilled student starts a new
lineage whose base is that stage's saved model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # precision imports torch; reading a run directory's lineages must stay cheap
    from posttrain.models.precision import Purpose

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class Lineage:
    """How to rebuild a model: load `base`, then merge each adapter in order."""

    base: str
    adapters: list[str] = field(default_factory=list)
    revision: str | None = None
    """Hub revision of `base` when it is a hub id (the recipe's `model.revision`)."""

    def extended(self, adapter_dir: Path | str) -> Lineage:
        return Lineage(self.base, [*self.adapters, str(adapter_dir)], self.revision)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lineage:
        return cls(base=data["base"], adapters=list(data.get("adapters", [])), revision=data.get("revision"))


def materialize(
    lineage: Lineage, *, dtype: str = "auto", trust_remote_code: bool = False, purpose: Purpose = "inference"
) -> Any:
    """The lineage's model as plain weights: base with every adapter merged in.

    Adapters merge into fp32 weights, then the model is cast to the dtype the
    purpose asks for: rounding once, not once per stage.
    """
    from peft import PeftModel

    from posttrain.models.loading import load_model, torch_dtype

    merge_in = "float32" if lineage.adapters else dtype
    model = load_model(
        lineage.base, dtype=merge_in, trust_remote_code=trust_remote_code, revision=lineage.revision, purpose=purpose
    )
    for adapter in lineage.adapters:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return model.to(torch_dtype(dtype, purpose))


def load_quantized(lineage: Lineage, *, dtype: str = "auto", trust_remote_code: bool = False, scratch: Path) -> Any:
    """The lineage's model with its linear layers in NF4, for QLoRA training.

    A lineage with adapters is merged in full precision first (into the
    dequantized base, never into 4-bit weights), written to `scratch` and
    quantized from there; `scratch` is removed afterwards.
    """
    import shutil

    from posttrain.models.loading import load_model

    if not lineage.adapters:
        return load_model(
            lineage.base, dtype=dtype, trust_remote_code=trust_remote_code, revision=lineage.revision,
            quantize="4bit",
        )
    materialize(lineage, dtype="float32", trust_remote_code=trust_remote_code).save_pretrained(
        scratch, safe_serialization=True
    )
    try:
        model = load_model(str(scratch), dtype=dtype, trust_remote_code=trust_remote_code, quantize="4bit")
        model.name_or_path = model.config._name_or_path = lineage.base  # adapters record the lineage's base
        return model
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _lora_scale(config: dict[str, Any], rank: int | None = None) -> float:
    """alpha / r of a LoRA (alpha / sqrt(r) with rsLoRA); `rank` picks a module's own rank of `rank_pattern`,
    whose alpha is the `alpha_pattern` entry of the same key (else the adapter's alpha)."""
    r, alpha = config["r"], config["lora_alpha"]
    if rank is not None and rank != r:
        keys = [k for k, v in (config.get("rank_pattern") or {}).items() if v == rank]
        if not keys:
            raise ValueError(f"a module of rank {rank} matches no rank_pattern entry of an adapter of rank {r}")
        r, alpha = rank, (config.get("alpha_pattern") or {}).get(keys[0], alpha)
    elif config.get("alpha_pattern") and not config.get("rank_pattern"):
        raise ValueError("adapters with a per-module alpha_pattern alone are not supported here")
    return alpha / r**0.5 if config.get("use_rslora") else alpha / r


def _experts_of(base_model: str) -> int:
    """Experts per mixture-of-experts layer of the base (1 for a dense model), from its config.json."""
    try:
        config = json.loads((Path(base_model) / "config.json").read_text())
    except (OSError, ValueError):
        return 1
    config = config.get("text_config", config)
    return int(config.get("num_experts") or config.get("num_local_experts") or 1)


def cumulative_adapter(adapter_dirs: list[Path | str], out_dir: Path, *, base_model: str) -> Path:
    """Write one PEFT LoRA on the base that equals the whole chain of `adapter_dirs`.

    Modules a stage did not target contribute zero blocks, so the result is
    exact for any mix of target modules. The scale of every stage is folded
    into its B block and the combined adapter has scale 1 (alpha == r).
    A mixture-of-experts layer's fused expert weights are adapted by PEFT's parameter wrappers: their A is
    (experts × rank, in) expert-major and their B (out, rank × experts) rank-major; the ranks are joined per
    expert in that layout, and `rank_pattern` (the wrappers' own ranks) summed like `r`.
    """
    import torch
    from safetensors.torch import load_file, save_file

    if not adapter_dirs:
        raise ValueError("cumulative_adapter needs at least one adapter")
    configs = [json.loads((Path(d) / ADAPTER_CONFIG).read_text()) for d in adapter_dirs]
    weights = [load_file(str(Path(d) / ADAPTER_WEIGHTS)) for d in adapter_dirs]
    for config in configs:
        if config.get("use_dora") or config.get("modules_to_save") or config.get("bias", "none") != "none":
            raise ValueError("cumulative adapters need plain LoRA (no DoRA, bias or modules_to_save)")
    num_experts = _experts_of(base_model)

    modules = sorted({k[: -len(".lora_A.weight")] for w in weights for k in w if k.endswith(".lora_A.weight")})
    total_rank = sum(c["r"] for c in configs)
    combined: dict[str, Any] = {}
    for module in modules:
        experts = num_experts if ".experts" in module else 1
        first = next(w for w in weights if f"{module}.lora_A.weight" in w)
        in_features = first[f"{module}.lora_A.weight"].shape[1]
        out_features = first[f"{module}.lora_B.weight"].shape[0]
        a_blocks, b_blocks = [], []
        for config, w in zip(configs, weights, strict=True):
            if f"{module}.lora_A.weight" in w:
                a, b = w[f"{module}.lora_A.weight"].float(), w[f"{module}.lora_B.weight"].float()
                rank = a.shape[0] // experts
            else:  # not targeted by this stage: a zero block of the stage's rank
                rank = config["r"]
                a, b = torch.zeros(experts * rank, in_features), torch.zeros(out_features, rank * experts)
            scale = _lora_scale(config, rank)
            a_blocks.append(a.reshape(experts, rank, in_features))
            b_blocks.append(b.reshape(out_features, rank, experts) * scale)
        joined_a = torch.cat(a_blocks, dim=1)
        combined[f"{module}.lora_A.weight"] = joined_a.reshape(-1, in_features).contiguous()
        combined[f"{module}.lora_B.weight"] = torch.cat(b_blocks, dim=1).reshape(out_features, -1).contiguous()

    rank_pattern = {key: sum((c.get("rank_pattern") or {}).get(key, c["r"]) for c in configs)
                    for key in sorted({k for c in configs for k in (c.get("rank_pattern") or {})})}
    parameters = sorted({p for c in configs for p in (c.get("target_parameters") or [])})
    if parameters:  # wrapped parameters name their modules themselves; the rest are the adapters' own targets
        target_modules = sorted({m for c in configs for m in (c.get("target_modules") or [])})
    else:
        target_modules = sorted({m.rsplit(".", 1)[-1] for m in modules})
    config = dict(configs[-1])
    config.update(
        r=total_rank,
        lora_alpha=total_rank,
        lora_dropout=0.0,
        use_rslora=False,
        target_modules=target_modules,
        base_model_name_or_path=base_model,
        rank_pattern=rank_pattern,
        alpha_pattern=dict(rank_pattern),
    )
    if parameters:
        config["target_parameters"] = parameters
    # Trained token rows (PEFT trainable tokens, a chat template's added tokens) hold values, not deltas: the last
    # stage that trained them has the chain's final rows.
    rows = next(((c, w) for c, w in zip(reversed(configs), reversed(weights), strict=True)
                 if c.get("trainable_token_indices")), None)
    if rows is not None:
        config["trainable_token_indices"] = rows[0]["trainable_token_indices"]
        combined.update({k: v for k, v in rows[1].items() if ".trainable_tokens_delta" in k})
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(combined, str(out_dir / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (out_dir / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
    return out_dir
