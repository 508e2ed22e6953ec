"""TRL's GKD trainer with our loss: temperature on both distributions, an optional CE mix, shared vocab.

GKDTrainer already brings what we need around the loss: the ChatML collator
(prompt/answer split, left padding), the frozen teacher prepared by
accelerate, and on-policy batches (with probability `lmbda` the student's own
samples replace the data's answers). Its `compute_loss` ignores `temperature`
and has no CE term, so that is the one method replaced; the math lives in
`posttrain.distill.losses`.

Both models project only the answer window to the vocabulary (`logits_to_keep`,
see `answer_window`): the divergence reads no prompt position, and on a CPU the
vocabulary-wide logits, softmaxes and their gradients over the prompt were a large
part of a step.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import torch

# We chose trl.experimental's GKD knowingly (ARCHITECTURE.md); its import-time warning is noise for users.
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
from trl.experimental.gkd import GKDConfig, GKDTrainer

from posttrain.distill.losses import IGNORE_INDEX, Divergence, distill_loss

__all__ = ["DistillTrainer", "GKDConfig", "answer_window"]


def answer_window(labels: torch.Tensor) -> int:
    """How many final positions' logits the loss needs: from the one that predicts the batch's first labelled
    token to the end (left-padded answers all end there). The whole length when no token is labelled.

    >>> answer_window(torch.tensor([[-100, -100, -100, 7, 8], [-100, -100, 5, 6, 9]]))
    4
    """
    length = labels.shape[-1]
    labelled = (labels != IGNORE_INDEX).any(0).nonzero()
    if len(labelled) == 0:
        return length
    return min(length, length - int(labelled[0]) + 1)


def _takes_logits_to_keep(model: Any) -> bool:
    """The model's forward (under a PEFT wrapper: the base model's) can skip positions' logits."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


class DistillTrainer(GKDTrainer):
    def __init__(self, *args: Any, loss: Divergence = "forward_kl", ce_weight: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.divergence: Divergence = loss
        self.ce_weight = ce_weight
        self._on_policy = False
        self._parts: dict[str, list[float]] = {}
        # Our loss is a mean over each micro-batch's own answer tokens (on-policy batches change them after the
        # Trainer counted), so let the Trainer divide by the accumulation steps itself.
        self.model_accepts_loss_kwargs = False
        self._answer_window = _takes_logits_to_keep(self.model) and _takes_logits_to_keep(self.teacher_model)

    def generate_on_policy_outputs(self, model: Any, inputs: dict[str, Any], generation_config: Any) -> Any:  # type: ignore[override]
        self._on_policy = True
        return GKDTrainer.generate_on_policy_outputs(model, inputs, generation_config)

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        self._on_policy = False
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        # Left-padded batches: positions must count from each sequence's first real token, as in generation.
        position_ids = (inputs["attention_mask"].cumsum(-1) - 1).clamp_min(0)
        model_inputs = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], position_ids=position_ids)
        length = inputs["labels"].shape[-1]
        keep = answer_window(inputs["labels"]) if self._answer_window else length
        if keep < length:
            model_inputs["logits_to_keep"] = keep
        student = model(**model_inputs)
        self.teacher_model.eval()
        with torch.no_grad():
            teacher = self.teacher_model(**model_inputs)
        loss, parts = distill_loss(
            student.logits[:, :-1],
            teacher.logits[:, :-1],
            inputs["labels"][:, length - keep + 1 :],
            kind=self.divergence,
            beta=self.beta,
            temperature=self.temperature,
            # CE on the student's own samples would only reinforce them: on-policy batches learn from the teacher.
            ce_weight=0.0 if self._on_policy else self.ce_weight,
        )
        if model.training:
            for name, value in parts.items():
                self._parts.setdefault(name, []).append(value.item())
        return (loss, student) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # The loss's parts (kd, ce) next to the total, averaged since the last log.
        if "loss" in logs:
            for name, values in self._parts.items():
                logs[name] = sum(values) / len(values)
            self._parts = {}
        super().log(logs, start_time)
