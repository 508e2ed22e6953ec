"""The precision and speed decisions, with the facts of machines we are not on injected."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from posttrain.models.lineage import Lineage, materialize
from posttrain.models.precision import (
    DeviceFacts,
    attention_implementation,
    cpu_flags,
    detect,
    mixed_precision,
    sft_speed_options,
    weights_dtype,
)

BF16, FP32 = torch.bfloat16, torch.float32
CPU_PLAIN = DeviceFacts()
CPU_AMX = DeviceFacts(cpu_bf16=True)
GPU_H100 = DeviceFacts(cuda=True, cuda_bf16=True, cpu_bf16=True, liger=True, flash_attn=True)
GPU_BARE = DeviceFacts(cuda=True, cuda_bf16=True)
GPU_T4 = DeviceFacts(cuda=True, cuda_bf16=False)

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile amx_bf16 amx_int8
bugs\t\t: spectre_v1
"""


def test_cpu_flags_are_read_from_cpuinfo_text() -> None:
    flags = cpu_flags(CPUINFO)
    assert {"amx_bf16", "avx512_bf16", "avx2"} <= flags and "spectre_v1" not in flags
    assert cpu_flags("processor\t: 0\n") == frozenset()
    # ARM kernels call the line "Features".
    assert "bf16" in cpu_flags("Features\t: fp asimd bf16 i8mm\n")


def test_detect_reads_this_machine() -> None:
    facts = detect()
    assert facts.cuda == torch.cuda.is_available()
    assert facts.cpu_bf16 == bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


@pytest.mark.parametrize(
    ("facts", "purpose", "expected"),
    [
        (CPU_AMX, "adapter", BF16),
        (CPU_AMX, "inference", BF16),
        (CPU_AMX, "full", FP32),  # no fp32 master weights in plain Trainer on CPU
        (CPU_AMX, "export", FP32),
        (CPU_PLAIN, "adapter", FP32),
        (CPU_PLAIN, "inference", FP32),
        (GPU_H100, "adapter", BF16),
        (GPU_H100, "full", BF16),
        (GPU_H100, "export", FP32),
        (GPU_T4, "adapter", FP32),
        (GPU_T4, "full", FP32),
    ],
)
def test_auto_dtype_follows_device_and_purpose(facts: DeviceFacts, purpose: str, expected: torch.dtype) -> None:
    assert weights_dtype("auto", purpose, facts) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("facts", [CPU_PLAIN, CPU_AMX, GPU_H100, GPU_T4])
def test_a_named_dtype_always_wins(facts: DeviceFacts) -> None:
    for purpose in ("adapter", "full", "inference", "export"):
        assert weights_dtype("float32", purpose, facts) == FP32  # type: ignore[arg-type]
        assert weights_dtype("bfloat16", purpose, facts) == BF16  # type: ignore[arg-type]
        assert weights_dtype("float16", purpose, facts) == torch.float16  # type: ignore[arg-type]


def test_cpu_autocast_only_around_an_adapter_on_a_bf16_base() -> None:
    assert mixed_precision("auto", trains_adapter=True, facts=CPU_AMX) == {"bf16": True, "fp16": False}
    assert mixed_precision("auto", trains_adapter=False, facts=CPU_AMX) == {"bf16": False, "fp16": False}
    assert mixed_precision("float32", trains_adapter=True, facts=CPU_AMX) == {"bf16": False, "fp16": False}
    assert mixed_precision("auto", trains_adapter=True, facts=CPU_PLAIN) == {"bf16": False, "fp16": False}
    assert mixed_precision("bfloat16", trains_adapter=True, facts=CPU_PLAIN) == {"bf16": False, "fp16": False}


def test_gpu_mixed_precision_follows_the_weights() -> None:
    assert mixed_precision("auto", trains_adapter=False, facts=GPU_H100) == {"bf16": True, "fp16": False}
    assert mixed_precision("auto", trains_adapter=True, facts=GPU_T4) == {"bf16": False, "fp16": False}
    assert mixed_precision("float16", trains_adapter=True, facts=GPU_T4) == {"bf16": False, "fp16": True}
    assert mixed_precision("float32", trains_adapter=True, facts=GPU_H100) == {"bf16": False, "fp16": False}


def test_gpu_kernels_only_where_installed() -> None:
    assert sft_speed_options(packing=True, facts=GPU_H100) == {"use_liger_kernel": True, "padding_free": True}
    # TRL refuses padding_free without packing (max_length would not be enforced).
    assert sft_speed_options(packing=False, facts=GPU_H100) == {"use_liger_kernel": True}
    assert sft_speed_options(packing=True, facts=GPU_BARE) == {}
    # Liger's Triton kernels and flash-attention do not run on a CPU, whatever is installed.
    cpu_with_packages = DeviceFacts(cpu_bf16=True, liger=True, flash_attn=True)
    assert sft_speed_options(packing=True, facts=cpu_with_packages) == {}
    assert attention_implementation(GPU_H100) == "flash_attention_2"
    assert attention_implementation(GPU_BARE) is None
    assert attention_implementation(cpu_with_packages) is None


def test_merge_happens_in_fp32_then_casts(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A bf16 model of a lineage equals the fp32 merge rounded once, not a merge of rounded weights."""
    from peft import LoraConfig, get_peft_model

    from posttrain.models.loading import load_model

    base = load_model(str(tiny_model_dir), dtype="float32")
    torch.manual_seed(1)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=1e-3)  # small updates: what bf16 rounding of a merge would lose
    peft_model.save_pretrained(tmp_path / "adapter")
    lineage = Lineage(str(tiny_model_dir), [str(tmp_path / "adapter")])

    exact = materialize(lineage, dtype="float32")
    as_bf16 = materialize(lineage, dtype="bfloat16")
    exported = materialize(lineage, dtype="auto", purpose="export")
    name = "model.layers.0.self_attn.q_proj.weight"
    weights = dict(exact.named_parameters())
    assert dict(as_bf16.named_parameters())[name].dtype == BF16
    assert torch.equal(dict(as_bf16.named_parameters())[name], weights[name].to(BF16))
    assert dict(exported.named_parameters())[name].dtype == FP32
    assert torch.equal(dict(exported.named_parameters())[name], weights[name])
