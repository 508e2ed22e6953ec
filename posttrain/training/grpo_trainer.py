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

Its log-prob passes (the loss, and the old/reference log-probs where TRL needs them) run each prompt once per
group of completions (posttrain/training/shared_prompts.py), where the model and inputs allow.
"""

from __future__ import annotations

from typing import Any

from trl import GRPOTrainer

from posttrain.training.rollouts import MergedCopy, generating_with, merged_copy_for
from posttrain.training.shared_prompts import shared_prompt_logps


class PosttrainGRPOTrainer(GRPOTrainer):
    def __init__(self, *args: Any, rollout_engine: str = "auto", vllm_rollouts: Any = None, share_prompts: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.share_prompts = share_prompts
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

    def _get_per_token_logps_and_entropies(self, model: Any, input_ids: Any, attention_mask: Any, logits_to_keep: int,
                                           batch_size: int | None = None, compute_entropy: bool = False,
                                           compute_aux_loss: bool = False, **inputs: Any) -> Any:
        if self._can_share_prompts(model, input_ids, batch_size, compute_aux_loss, inputs):
            with self.accelerator.autocast():
                shared = shared_prompt_logps(model, input_ids, attention_mask, logits_to_keep,
                                             compute_entropy=compute_entropy)
            if shared is not None:
                return (*shared, None)
        return super()._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss, **inputs)

    def _can_share_prompts(self, model: Any, input_ids: Any, batch_size: int | None, compute_aux_loss: bool,
                           inputs: dict[str, Any]) -> bool:
        """Text-only rows in one pass, no aux loss, an unsharded model without gradient checkpointing."""
        return (self.share_prompts and not compute_aux_loss and (batch_size is None or batch_size >= input_ids.size(0))
                and all(value is None for value in inputs.values())
                and not (self.is_fsdp_enabled or self.is_deepspeed_enabled)
                and not self.args.gradient_checkpointing)

    def _engine_rollouts(self, prompt_ids: list[list[int]]) -> tuple[list[list[int]], list[list[float]]]:
        """One completion per prompt row (TRL repeats each prompt num_generations times) from the vLLM server."""
        if self.state.global_step != self._synced_step:
            self.vllm_rollouts.sync(self.accelerator.unwrap_model(self.model))
            self._synced_step = self.state.global_step
        return self.vllm_rollouts.generate(
            prompt_ids, max_tokens=self.max_completion_length, temperature=self.temperature, top_p=self.top_p,
            top_k=self.top_k or 0,
        )
