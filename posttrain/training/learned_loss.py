"""SFT loss on a CPU from the learned positions only: the LM head projects just the tokens that have a label.

TRL 1.16 computes the SFT loss with its fused, chunked LM head. On devices
without Triton (CPUs) it projects EVERY position, padding and prompt
included, and folds each vocabulary tile with many small torch ops. Measured on
the 2-core development CPU with SmolLM2-135M's head (49152 x 576, bf16),
forward + backward: 1040 positions (a padded batch of 8) took 11.7 s that
way; the ~400 positions with a label (completion-only loss) took 2.2 s as one
matmul and `cross_entropy`. The loss is the same sum of -log p over the
labelled tokens, divided as TRL divides it (`tests/test_learned_loss.py`).

Large batches are projected in chunks of `CHUNK_POSITIONS`, each recomputed in
the backward pass, so the logits never need more than one chunk's memory.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

CHUNK_POSITIONS = 2048
"""Positions projected at once: 2048 x 49152 fp32 logits are 400 MB."""

SCALED_LOGIT_SETTINGS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                         "logits_scaling")
"""Config fields of models whose logits are not `lm_head(hidden)` as is; those keep TRL's head."""


def learned_positions_loss(trainer_class: type) -> type:
    """A subclass of TRL's SFTTrainer (or a subclass of it) computing the loss as this module says, where it fits.

    It fits on CPU, one process, for the plain next-token loss of a model with
    unscaled logits; everything else (GPU with Triton, DDP, label smoothing,
    DFT loss, MoE aux loss, `return_outputs`) goes to TRL's own compute_loss.
    """

    class LearnedPositionsLoss(trainer_class):  # type: ignore[misc, valid-type]
        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            if return_outputs or not self._learned_loss_fits(model):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            causal_lm = self.accelerator.unwrap_model(model)
            if hasattr(causal_lm, "get_base_model"):  # a PEFT wrapper: its LoRA layers sit inside the base model
                causal_lm = causal_lm.get_base_model()
            backbone_inputs = {k: v for k, v in inputs.items() if k != "labels"}
            with self.accelerator.autocast():
                hidden = causal_lm.base_model(**backbone_inputs, use_cache=False).last_hidden_state
                targets = inputs["labels"][:, 1:]
                learned = targets != -100
                nll, entropy, correct = label_logprob_stats(
                    causal_lm.get_output_embeddings(), hidden[:, :-1][learned], targets[learned]
                )
            count = learned.sum()
            divisor = count if num_items_in_batch is None else num_items_in_batch
            loss = nll / torch.as_tensor(divisor).clamp(min=1)
            self._log_like_trl(inputs, count, entropy, correct)
            return loss

        def _learned_loss_fits(self, model: Any) -> bool:
            config = self.accelerator.unwrap_model(model).config
            return (
                self.accelerator.device.type == "cpu"
                and self.accelerator.num_processes == 1
                and self.compute_loss_func is None
                and self.label_smoother is None
                and self.args.loss_type == "nll"
                and not self.aux_loss_enabled
                and all(getattr(config, name, None) is None for name in SCALED_LOGIT_SETTINGS)
            )

        def _log_like_trl(self, inputs: dict[str, Any], count: torch.Tensor, entropy: float, correct: float) -> None:
            """The metrics TRL's compute_loss logs: entropy, mean_token_accuracy, num_tokens (non-pad tokens seen)."""
            mode = "train" if self.model.training else "eval"
            valid = count.item()
            self._metrics[mode]["entropy"].append(entropy / valid if valid else 0.0)
            self._metrics[mode]["mean_token_accuracy"].append(correct / valid if valid else 0.0)
            if mode == "train":
                mask = inputs.get("attention_mask")
                self._total_train_tokens += int(mask.sum()) if mask is not None else inputs["position_ids"].size(1)
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]

    LearnedPositionsLoss.__name__ = LearnedPositionsLoss.__qualname__ = f"LearnedLoss{trainer_class.__name__}"
    return LearnedPositionsLoss


def label_logprob_stats(head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """Summed -log p(label) over positions (differentiable), and the summed entropy and top-1 hits (for logs)."""
    nll = hidden.new_zeros((), dtype=torch.float32)
    entropy = correct = 0.0
    for start in range(0, max(len(labels), 1), CHUNK_POSITIONS):
        h, y = hidden[start:start + CHUNK_POSITIONS], labels[start:start + CHUNK_POSITIONS]
        if len(labels) > CHUNK_POSITIONS and torch.is_grad_enabled():
            chunk_nll = checkpoint(_chunk_nll, head, h, y, use_reentrant=False)
            with torch.no_grad():
                logits = head(h).float()
        else:
            logits = head(h).float()
            chunk_nll = F.cross_entropy(logits, y, reduction="sum")
        nll = nll + chunk_nll
        with torch.no_grad():
            logp = logits.log_softmax(-1)
            entropy += -(logp.exp() * logp).sum().item()
            correct += (logits.argmax(-1) == y).sum().item()
    return nll, entropy, correct


def _chunk_nll(head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), labels, reduction="sum")
