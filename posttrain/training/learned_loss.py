"""SFT loss on a CPU from the learned positions only: the LM head projects just the tokens that have a label.

TRL 1.16 computes the SFT loss with its fused, chunked LM head. On devices
without Triton (CPUs) it projects EVERY position, padding and prompt
included, and folds each vocabulary tile with many small torch ops. Measured on
the 2-core development CPU (one thread) with SmolLM2-135M's head
(49152 x 576, bf16), forward + backward: 1040 positions (a padded batch of 8)
took 3.8 s that way; the ~400 positions with a label (completion-only loss)
took 1.1 s here. The loss is the same sum of -log p over the
labelled tokens, divided as TRL divides it (`tests/test_learned_loss.py`).

Large batches are projected in chunks of `CHUNK_POSITIONS`, each recomputed in
the backward pass, so the logits never need more than one chunk's memory. The
arithmetic (bf16 logits, fp32 softmax and gradient accumulation) is TRL's, so
one process trains what TRL's path trains under DDP.
"""

from __future__ import annotations

from typing import Any

import torch

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


def label_logprob_stats(
    head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, float, float]:
    """Summed -log p(label) over positions (differentiable), and the summed entropy and top-1 hits (for logs)."""
    device = hidden.device.type
    compute_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    nll = hidden.new_zeros((), dtype=torch.float32)
    entropy = correct = 0.0
    for start in range(0, max(len(labels), 1), CHUNK_POSITIONS):
        chunk = slice(start, start + CHUNK_POSITIONS)
        chunk_nll, chunk_entropy, chunk_correct = _LabelNLL.apply(hidden[chunk], head.weight, labels[chunk],
                                                                  compute_dtype)
        nll = nll + chunk_nll
        entropy += chunk_entropy.item()
        correct += chunk_correct.item()
    return nll, entropy, correct


class _LabelNLL(torch.autograd.Function):
    """Summed -log p(label) of `hidden @ weight.T`, with TRL's fused head's arithmetic on the labelled rows.

    Logits in the compute dtype (bf16 under autocast), softmax statistics in fp32,
    the logits' gradient rounded to the compute dtype, and the hidden/weight
    gradients accumulated in fp32, as TRL's fused head does, so one process
    trains what TRL's path trains under DDP (tests/launch/test_launch_equivalence.py).
    The backward recomputes the logits: only `[positions, vocab]` of one chunk lives at once.
    """

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                compute_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.autocast(hidden.device.type, enabled=False):
            logits = (hidden.to(compute_dtype) @ weight.to(compute_dtype).t()).float()
        log_z = torch.logsumexp(logits, dim=-1)
        nll = (log_z - logits.gather(1, labels[:, None]).squeeze(1)).sum()
        probs = (logits - log_z[:, None]).exp()
        entropy = (log_z - (probs * logits).sum(-1)).sum()
        correct = (logits.argmax(-1) == labels).sum()
        ctx.save_for_backward(hidden, weight, labels, log_z)
        ctx.compute_dtype = compute_dtype
        ctx.mark_non_differentiable(entropy, correct)
        return nll, entropy, correct

    @staticmethod
    def backward(ctx: Any, grad_nll: torch.Tensor, *_: Any) -> tuple[torch.Tensor | None, ...]:
        hidden, weight, labels, log_z = ctx.saved_tensors
        with torch.autocast(hidden.device.type, enabled=False):
            logits = (hidden.to(ctx.compute_dtype) @ weight.to(ctx.compute_dtype).t()).float()
            grad_logits = (logits - log_z[:, None]).exp_()
            grad_logits[torch.arange(len(labels)), labels] -= 1.0
            grad_logits = (grad_logits * grad_nll).to(ctx.compute_dtype).float()
            grad_hidden = (grad_logits @ weight.float()).to(hidden.dtype) if ctx.needs_input_grad[0] else None
            grad_weight = (grad_logits.t() @ hidden.float()).to(weight.dtype) if ctx.needs_input_grad[1] else None
        return grad_hidden, grad_weight, None, None
