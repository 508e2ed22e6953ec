"""TRL's GRPOTrainer with posttrain's rollout engines plugged into its generation step.

TRL generates in `_generate_single_turn`; everything around it (prompt tokenization, reward
scoring, advantages, the loss) stays TRL's. Engines, by `rollouts.engine`:
- `auto`: a LoRA policy generates from a merged copy (posttrain/training/rollouts.py); where the
  copy cannot be exact (quantized base, DoRA, FSDP/DeepSpeed shards, TRL's own vLLM) TRL's path
  runs unchanged.
- `hf`: TRL's path unchanged.
- `vllm`: a vLLM server that reloads the adapter each step (posttrain/training/vllm_rollouts.py).
  The trainer then stands where TRL's own vLLM integration stands (`use_vllm` is set after
  construction), so TRL computes the policy's log-probs of the engine's tokens and applies its
  importance-sampling correction (`vllm_importance_sampling_*` of GRPOConfig) to the loss.
"""

from __future__ import annotations

from typing import Any

from trl import GRPOTrainer

from posttrain.training.rollouts import MergedCopy, generating_with, merged_copy_for


class PosttrainGRPOTrainer(GRPOTrainer):
    def __init__(self, *args: Any, rollout_engine: str = "auto", vllm_rollouts: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rollout_copy: MergedCopy | None = None
        self.vllm_rollouts = vllm_rollouts
        sharded = self.is_fsdp_enabled or self.is_deepspeed_enabled
        if rollout_engine == "auto" and not self.use_vllm and not sharded:
            self.rollout_copy = merged_copy_for(self.accelerator.unwrap_model(self.model))
        if vllm_rollouts is not None:
            self.use_vllm = True  # TRL's importance correction for engine rollouts; generation stays ours (below)
        # -1: the first generation syncs, after a resume has loaded the checkpoint's adapter too.
        self._synced_step = -1

    def _generate_single_turn(self, prompt_ids: Any, images: Any, multimodal_fields: Any, num_generations: int,
                              has_tool_images: bool = False) -> Any:
        if self.vllm_rollouts is not None:
            return self._engine_rollouts(prompt_ids)
        plain = (self.rollout_copy is None or images is not None or multimodal_fields
                 or self.use_transformers_continuous_batching)
        if plain:
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
        if self.state.global_step != self._synced_step:
            self.rollout_copy.sync()
            self._synced_step = self.state.global_step
        with generating_with(self, self.rollout_copy.model):
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)

    def _engine_rollouts(self, prompt_ids: list[list[int]]) -> tuple[list[list[int]], list[list[float]]]:
        """One completion per prompt row (TRL repeats each prompt num_generations times) from the vLLM server."""
        if self.state.global_step != self._synced_step:
            self.vllm_rollouts.sync(self.accelerator.unwrap_model(self.model))
            self._synced_step = self.state.global_step
        return self.vllm_rollouts.generate(
            prompt_ids, max_tokens=self.max_completion_length, temperature=self.temperature, top_p=self.top_p,
            top_k=self.top_k or 0,
        )
