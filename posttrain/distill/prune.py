"""Depth pruning (as in NVIDIA's Minitron): a student made of a subset of the teacher's layers.

The student is an exact copy of the teacher's embeddings, head and kept
decoder layers; distillation then repairs what the dropped layers did.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from posttrain.errors import UserError


def layers_to_keep(num_layers: int, *, keep_layers: list[int] | None = None, keep_fraction: float | None = None) -> list[int]:
    """The teacher layer indices a pruned student keeps, sorted.

    `keep_fraction` spreads round(fraction·L) layers evenly, first and last
    included: the first layers read the embeddings and the last feeds the head,
    and dropping either hurts far more than dropping a middle one.

    >>> layers_to_keep(30, keep_fraction=0.2)
    [0, 6, 12, 17, 23, 29]
    >>> layers_to_keep(4, keep_layers=[2, 0])
    [0, 2]
    """
    if (keep_layers is None) == (keep_fraction is None):
        raise ValueError("give exactly one of keep_layers or keep_fraction")
    if keep_layers is not None:
        bad = [i for i in keep_layers if not 0 <= i < num_layers]
        if bad:
            raise UserError(f"student.keep_layers {bad} out of range: the teacher has layers 0..{num_layers - 1}")
        if len(set(keep_layers)) != len(keep_layers):
            raise UserError(f"student.keep_layers {keep_layers} lists a layer twice")
        if not keep_layers:
            raise UserError("student.keep_layers is empty: keep at least one layer")
        return sorted(keep_layers)
    assert keep_fraction is not None
    count = max(1, min(num_layers, round(keep_fraction * num_layers)))
    if count == 1:
        return [0]
    return sorted({round(i * (num_layers - 1) / (count - 1)) for i in range(count)})


def decoder_layers(model: Any) -> nn.ModuleList:
    """The model's list of decoder layers (`model.model.layers` for Llama, Qwen, Mistral, Gemma...)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise UserError(
            f"cannot depth-prune a {type(model).__name__}: its decoder has no `layers` list; "
            "give the student as `student: {model: ...}` instead"
        )
    return layers


def prune_layers(teacher: Any, keep: list[int]) -> Any:
    """A copy of `teacher` with only the decoder layers in `keep`; the teacher is left untouched."""
    num_layers = teacher.config.num_hidden_layers
    student = copy.deepcopy(teacher)
    layers = decoder_layers(student)
    if len(layers) != num_layers:
        raise UserError(f"config says {num_layers} layers but the model has {len(layers)}; cannot prune it")
    kept = nn.ModuleList([layers[i] for i in keep])
    for new_index, layer in enumerate(kept):
        # The KV cache is indexed by `layer_idx`; stale indices would read or write past its end.
        for module in layer.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = new_index
    student.get_decoder().layers = kept
    _prune_config(student.config, keep, num_layers)
    return student


def _prune_config(config: Any, keep: list[int], num_layers: int) -> None:
    # Per-layer settings (layer_types, no_rope_layers, ...) are lists as long as the layer stack.
    for key, value in config.to_dict().items():
        if isinstance(value, list) and len(value) == num_layers and hasattr(config, key):
            setattr(config, key, [value[i] for i in keep])
    config.num_hidden_layers = len(keep)
