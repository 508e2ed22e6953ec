"""The recipe's `launch:` block checked against its accelerate config, its stages and this machine.

Like `references.py`, these checks read the raw YAML tree, so they report
alongside schema problems. What they catch before anything runs: a config
file that is missing or not an accelerate config, processes that do not
split evenly over machines or over a stage's gradient accumulation, FSDP
or ZeRO-3 on a 4-bit base, and more processes per machine than GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.recipe.references import Problem

DISTRIBUTED_TYPES = ("NO", "MULTI_CPU", "MULTI_GPU", "FSDP", "DEEPSPEED")
"""The accelerate `distributed_type`s posttrain launches (accelerate knows more: TPU, NPU, ...)."""
CPU_TYPES = ("NO", "MULTI_CPU")


@dataclass(frozen=True)
class AccelerateConfig:
    """What posttrain needs to know of an accelerate config file."""

    path: Path
    distributed_type: str
    num_processes: int | None
    num_machines: int | None
    zero_stage: int | None
    use_cpu: bool

    @property
    def needs_gpus(self) -> bool:
        return not self.use_cpu and self.distributed_type not in CPU_TYPES


def shipped_configs_dir() -> Path:
    from posttrain.paths import recipes_dir

    return recipes_dir() / "accelerate"


def config_path(ref: str, base_dir: Path) -> Path:
    """A `launch.config` value as a file: a path (relative to the recipe) or a shipped config's name."""
    path = Path(ref).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    shipped = shipped_configs_dir() / f"{ref}.yaml"
    if not path.exists() and "/" not in ref and shipped.exists():
        return shipped
    return path


def read_accelerate_config(path: Path) -> AccelerateConfig:
    """Parse an accelerate config file; ValueError says what is wrong with it."""
    import yaml

    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in shipped_configs_dir().glob("*.yaml")))
        raise ValueError(f"accelerate config file not found: {path} (shipped configs: {shipped})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: an accelerate config is a YAML mapping (distributed_type:, num_processes: ...)")
    kind = str(data.get("distributed_type", "NO")).upper()
    if kind not in DISTRIBUTED_TYPES:
        raise ValueError(f"{path}: distributed_type {kind!r} is not one posttrain launches ({', '.join(DISTRIBUTED_TYPES)})")
    deepspeed = data.get("deepspeed_config") or {}
    return AccelerateConfig(
        path=path, distributed_type=kind, num_processes=_int(data.get("num_processes")),
        num_machines=_int(data.get("num_machines")),
        zero_stage=_int(deepspeed.get("zero_stage")) if kind == "DEEPSPEED" else None,
        use_cpu=bool(data.get("use_cpu", False)),
    )


@dataclass(frozen=True)
class LaunchShape:
    """How many processes on how many machines, after the recipe's settings override the config's."""

    processes: int
    machines: int
    config: AccelerateConfig | None

    @property
    def distributed(self) -> bool:
        """Whether training stages leave this process for `accelerate launch`."""
        return self.config is not None or self.processes > 1 or self.machines > 1


def launch_shape(launch: dict[str, Any], config: AccelerateConfig | None) -> LaunchShape:
    processes = _int(launch.get("num_processes")) or (config.num_processes if config else None) or 1
    machines = _int(launch.get("num_machines")) or (config.num_machines if config else None) or 1
    return LaunchShape(processes=processes, machines=machines, config=config)


def check_launch(document: Any, *, base_dir: Path) -> list[Problem]:
    launch = document.get("launch")
    if not isinstance(launch, dict):
        return []
    config = None
    if isinstance(launch.get("config"), str):
        try:
            config = read_accelerate_config(config_path(launch["config"], base_dir))
        except ValueError as exc:
            return [(("launch", "config"), str(exc))]
        except OSError as exc:  # a name too long, a folder without permission, ...
            return [(("launch", "config"), f"cannot read accelerate config {launch['config']!r}: {exc.strerror}")]
    shape = launch_shape(launch, config)
    problems: list[Problem] = []
    if shape.processes % shape.machines:
        problems.append(
            (("launch", "num_processes"), f"{shape.processes} processes do not split evenly over {shape.machines} machines")
        )
    rank = _int(launch.get("machine_rank")) or 0
    if rank >= shape.machines:
        problems.append((("launch", "machine_rank"), f"machine_rank {rank} but only {shape.machines} machines"))
    if shape.machines > 1 and not launch.get("main_process_ip"):
        problems.append((("launch", "main_process_ip"), f"{shape.machines} machines need the address of machine 0"))
    problems += _quantized_base_problems(document, config)
    problems += _batch_problems(document, shape.processes)
    problems += _device_problems(shape)
    return problems


def _quantized_base_problems(document: Any, config: AccelerateConfig | None) -> list[Problem]:
    model = document.get("model")
    if config is None or not isinstance(model, dict) or model.get("quantize") != "4bit":
        return []
    if config.distributed_type == "FSDP":
        return [(("launch", "config"), "FSDP cannot shard a 4-bit base (model.quantize: 4bit): use ddp or zero2")]
    if config.zero_stage == 3:
        return [(("launch", "config"), "DeepSpeed ZeRO-3 cannot partition a 4-bit base (model.quantize: 4bit): use ddp or zero2")]
    return []


def _batch_problems(document: Any, processes: int) -> list[Problem]:
    """The recipe's batch per optimizer step is batch_size × grad_accum: N processes share the accumulation."""
    stages = document.get("stages")
    if processes == 1 or not isinstance(stages, list):
        return []
    problems: list[Problem] = []
    for index, stage in enumerate(stages):
        train = stage.get("train") if isinstance(stage, dict) else None
        accum = _int(train.get("grad_accum")) if isinstance(train, dict) else None
        accum = accum or 1
        if accum % processes:
            problems.append((
                ("stages", index, "train", "grad_accum"),
                f"grad_accum {accum} does not split over {processes} processes: the batch per optimizer step is "
                f"batch_size × grad_accum however many processes share it, each accumulating grad_accum / "
                f"{processes}; use a multiple of {processes}",
            ))
    return problems


def _device_problems(shape: LaunchShape) -> list[Problem]:
    """More processes on a machine than it has GPUs (checked where GPUs are visible)."""
    if shape.config is None or not shape.config.needs_gpus:
        return []
    import torch

    gpus = torch.cuda.device_count()
    per_machine = shape.processes // shape.machines
    if 0 < gpus < per_machine:
        return [(
            ("launch", "num_processes"),
            f"{per_machine} processes per machine but this machine has {gpus} GPU(s) for "
            f"{shape.config.distributed_type}",
        )]
    return []


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
