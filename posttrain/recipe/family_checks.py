"""Checks of the recipe's LoRA stages and vLLM export against the base model's family, made before any training.

The model's modules are read from the model itself, built from its config.json on the meta device (no weights,
no memory): a `lora.target_modules` name no module has would fail PEFT when the stage starts, or silently adapt
fewer layers than asked. vLLM's side is asked of vLLM (`export/vllm_lora.py`, its own model registry in the
engine's venv): an adapter naming a module vLLM's model class takes no LoRA on would be refused only when the
export is written, after training. Like `export_checks.py`, these run on the raw YAML tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posttrain.recipe.export_checks import Problem, base_config


def check_family(document: Any, *, base_dir: Path) -> list[Problem]:
    stages = document.get("stages")
    if not isinstance(stages, list):
        return []
    adapters = {i: stage for i, stage in enumerate(stages) if _trains_adapter(stage)}
    widths = [i for i, stage in enumerate(stages) if _width_prunes_the_base_family(stage, stages)]
    if not adapters and not widths:
        return []
    config = base_config(document.get("model"), base_dir)
    model = _meta_model(config) if config else None
    if model is None:
        return []  # not readable now (a hub model not downloaded yet) or not one transformers builds
    from posttrain.training.lora import dense_linear_names, expert_modules

    linear = dense_linear_names(model)
    experts = bool(expert_modules(model))
    architecture = str((config.get("architectures") or ["?"])[0])
    problems: list[Problem] = _width_problems(model, architecture, widths)
    targets_of: dict[int, list[str]] = {}
    for index, stage in adapters.items():
        lora = stage.get("lora") if isinstance(stage.get("lora"), dict) else {}
        targets = lora.get("target_modules", "all-linear")
        if targets == "all-linear":
            targets = list(linear)
        elif isinstance(targets, list) and all(isinstance(t, str) for t in targets):
            missing = [t for t in targets if not _matches(t, model)]
            if missing:
                problems.append((("stages", index, "lora", "target_modules"),
                                 f"{architecture} has no module named {', '.join(missing)} (its linear layers: "
                                 f"{', '.join(linear)}), so this stage would fail to start or adapt fewer layers than "
                                 "asked. Fix: lora.target_modules among those, or all-linear"))
                continue
        else:
            continue  # the schema says what is wrong with it
        if experts and lora.get("experts", True) is not False:
            targets = [*targets, "experts"]  # PEFT's parameter wrappers on the fused expert weights
        targets_of[index] = targets
    if targets_of and _exports_vllm(document.get("export")):
        problems += _vllm_problems(document, config, targets_of)
    return problems


def _vllm_problems(document: dict, config: dict[str, Any], targets_of: dict[int, list[str]]) -> list[Problem]:
    from posttrain.errors import UserError
    from posttrain.export.vllm_lora import vllm_lora

    where = ("export", "formats", document["export"]["formats"].index("vllm"))
    try:
        facts = vllm_lora(config)
    except UserError as exc:
        return [(where, f"the vllm export is checked against vLLM's own model registry: {exc}")]
    if not facts.supports_lora:
        return [(where, f"vLLM {facts.vllm_version} serves {facts.architecture} with {facts.model_class}, which takes "
                        "no LoRA adapters. Fix: remove vllm from export.formats (merged serves in vLLM without "
                        "--enable-lora)")]
    problems: list[Problem] = []
    for index, targets in targets_of.items():
        refused = facts.unexpected(targets)
        if refused:
            problems.append((("stages", index, "lora", "target_modules"),
                             f"vLLM {facts.vllm_version} takes LoRA on {facts.architecture} ({facts.model_class}) "
                             f"only for {', '.join(sorted(facts.expected_modules))}, not {', '.join(refused)}, so "
                             "the vllm export would be refused after training. Fix: lora.target_modules among "
                             "those" + (", or lora.experts: false" if "experts" in refused else "")
                             + ", or remove vllm from export.formats"))
    return problems


def _width_prunes_the_base_family(stage: Any, stages: list[Any]) -> bool:
    """A distill stage whose student is the teacher with fewer MLP neurons, the teacher being of the base's family
    (the input, `base` or a stage; a teacher given as a model reference is read only when the stage runs)."""
    if not isinstance(stage, dict) or stage.get("type") != "distill":
        return False
    student = stage.get("student")
    if not isinstance(student, dict) or student.get("mlp_keep_fraction") is None:
        return False
    teacher = stage.get("teacher")
    if teacher is None:
        return True
    return isinstance(teacher, str) and (teacher == "base" or any(
        isinstance(other, dict) and other.get("name") == teacher for other in stages))


def _width_problems(model: Any, architecture: str, indices: list[int]) -> list[Problem]:
    from posttrain.distill.prune import gated_mlps
    from posttrain.errors import UserError

    if not indices:
        return []
    try:
        gated_mlps(model)
    except UserError as exc:
        return [(("stages", index, "student", "mlp_keep_fraction"), f"{architecture}: {exc}") for index in indices]
    return []


def _trains_adapter(stage: Any) -> bool:
    """A stage that trains a LoRA: its type's spec has a LoRA and it is not a full fine-tune (distill's default)."""
    from posttrain.stages import STAGES

    if not isinstance(stage, dict) or not isinstance(stage.get("type"), str) or stage["type"] not in STAGES:
        return False
    fields = STAGES[stage["type"]].spec.model_fields
    if "lora" not in fields:
        return False
    default = fields["full_finetune"].default if "full_finetune" in fields else False
    return stage.get("full_finetune", default) is False


def _exports_vllm(export: Any) -> bool:
    formats = export.get("formats") if isinstance(export, dict) else None
    return isinstance(formats, list) and "vllm" in formats


def _matches(target: str, model: Any) -> bool:
    """PEFT's rule for a list entry: a module whose name is the entry or ends with `.entry`."""
    return any(name == target or name.endswith("." + target) for name, _ in model.named_modules())


def _meta_model(config: dict[str, Any]) -> Any:
    """The model of `config` on the meta device; None where transformers cannot build it from the config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    fields = {k: v for k, v in config.items() if k != "model_type"}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # building it logs its generation config at info, which `validate` would print
    try:
        model_config = AutoConfig.for_model(config.get("model_type", ""), **fields)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(model_config)
    except (ValueError, KeyError, TypeError, ImportError):
        return None
    finally:
        hf_logging.set_verbosity(verbosity)
