"""Precision and speed decisions: the dtype a model loads in, and the trainer switches that make it fast.

Every decision is a pure function of `DeviceFacts`, so it can be tested with
the facts of a machine we are not on (a GPU, a CPU without bf16 units).

What `dtype: auto` means, by what the model is loaded for (`Purpose`):

| purpose     | GPU with bf16 | CPU with bf16 units | otherwise |
|-------------|---------------|---------------------|-----------|
| `adapter`   | bf16          | bf16                | fp32      |
| `inference` | bf16          | bf16                | fp32      |
| `full`      | bf16          | fp32                | fp32      |
| `export`    | fp32          | fp32                | fp32      |

`adapter`: the frozen base under a LoRA; the adapter itself stays fp32 (its
Adam updates are smaller than bf16 can represent) and runs under bf16 autocast. `full`: weights that train; plain Trainer on CPU has no fp32 master
copy, so they stay fp32 there. `export`: merges that must be exact.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch

Purpose = Literal["adapter", "full", "inference", "export"]

NAMED_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

CPU_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
"""`/proc/cpuinfo` flags of CPU matrix units that multiply bf16 natively (Intel AMX, AVX512-BF16)."""


@dataclass(frozen=True)
class DeviceFacts:
    """What the machine can do fast; `detect()` reads them, tests inject them."""

    cuda: bool = False
    cuda_bf16: bool = False
    cpu_bf16: bool = False
    """The CPU has bf16 matrix units (see CPU_BF16_FLAGS)."""
    liger: bool = False
    """liger_kernel is importable (Triton kernels: GPU only)."""
    flash_attn: bool = False
    """flash_attn is importable: attention over packed sequences without a dense mask."""

    @property
    def fast_bf16(self) -> bool:
        """bf16 matrix multiplies run faster than fp32 on the device training uses."""
        return self.cuda_bf16 if self.cuda else self.cpu_bf16


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU feature flags of `/proc/cpuinfo` (or of the text given); empty where there is none (macOS)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@lru_cache(maxsize=1)
def detect() -> DeviceFacts:
    """The facts of this machine (read once per process)."""
    cuda = torch.cuda.is_available()
    return DeviceFacts(
        cuda=cuda,
        cuda_bf16=cuda and torch.cuda.is_bf16_supported(),
        cpu_bf16=bool(cpu_flags() & CPU_BF16_FLAGS),
        liger=importlib.util.find_spec("liger_kernel") is not None,
        flash_attn=importlib.util.find_spec("flash_attn") is not None,
    )


def weights_dtype(name: str, purpose: Purpose = "full", facts: DeviceFacts | None = None) -> torch.dtype:
    """The dtype to load weights in: the recipe's `model.dtype`, or for `auto` the table in this module's docstring."""
    if name != "auto":
        return NAMED_DTYPES[name]
    facts = facts or detect()
    if purpose == "export":
        return torch.float32
    if facts.cuda:
        return torch.bfloat16 if facts.cuda_bf16 else torch.float32
    if purpose in ("adapter", "inference") and facts.cpu_bf16:
        return torch.bfloat16
    return torch.float32


def precision_key(name: str, facts: DeviceFacts | None = None) -> str:
    """What `model.dtype` resolves to on this device, for fingerprints: `auto` trains and scores
    differently on a CPU with bf16 units than on one without, so their results must not share a cache."""
    if name != "auto":
        return name
    purposes: tuple[Purpose, ...] = ("adapter", "inference", "full", "export")
    resolved = ",".join(f"{p}={str(weights_dtype(name, p, facts)).removeprefix('torch.')}" for p in purposes)
    return f"auto({resolved})"


def mixed_precision(name: str, *, trains_adapter: bool, facts: DeviceFacts | None = None) -> dict[str, bool]:
    """TrainingArguments' `bf16`/`fp16` switches (autocast) for a stage.

    On GPU: as the weights' dtype says. On CPU: bf16 autocast around a LoRA
    on a bf16 base, so the fp32 adapter's matmuls use the bf16 units too (what
    TRL does by default). Whether no autocast is faster there is NOT settled:
    the runs that suggested it ran configurations in threads of one process, which biased them.
    Full fine-tunes keep fp32 without autocast.
    """
    facts = facts or detect()
    if facts.cuda:
        dtype = weights_dtype(name, "full", facts)
        return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}
    adapter_on_bf16 = trains_adapter and weights_dtype(name, "adapter", facts) == torch.bfloat16
    return {"bf16": adapter_on_bf16 and facts.cpu_bf16, "fp16": False}


def attention_implementation(facts: DeviceFacts | None = None) -> str | None:
    """`attn_implementation` for from_pretrained: flash-attention-2 where installed on a GPU, else the model's default."""
    facts = facts or detect()
    return "flash_attention_2" if facts.cuda and facts.flash_attn else None


def sft_speed_options(*, packing: bool, facts: DeviceFacts | None = None) -> dict[str, Any]:
    """Extra SFTConfig switches for speed; each is on only where the device has what it needs.

    - `use_liger_kernel`: Liger's fused Triton kernels (RMSNorm, RoPE, SwiGLU,
      chunked cross-entropy) on a GPU with liger_kernel installed.
    - `padding_free`: a packed batch is one row of concatenated sequences kept
      apart by `position_ids`, with no pad tokens and no dense mask; only with
      a varlen attention kernel (flash-attention-2). TRL refuses it without
      packing (max_length would not be enforced), so it follows `packing`.
    """
    facts = facts or detect()
    options: dict[str, Any] = {}
    if facts.cuda and facts.liger:
        options["use_liger_kernel"] = True
    if packing and attention_implementation(facts) == "flash_attention_2":
        options["padding_free"] = True
    return options
