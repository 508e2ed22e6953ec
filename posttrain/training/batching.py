"""How SFT batches are laid out: padded rows, or one padding-free row of the batch's sequences.

A padded batch of chat examples spends compute on pad tokens. Padding-free
batches concatenate the examples into one row; `position_ids` restart at 0
for each example, which a varlen kernel (flash-attention-2) reads as
sequence boundaries, and which transformers turns into a block-causal mask
for SDPA, so examples never attend to each other and the loss is the padded
batch's loss.
"""

from __future__ import annotations

from typing import Any

from posttrain.models.precision import DeviceFacts, attention_implementation, detect


def padding_free_fits(*, packing: bool, facts: DeviceFacts | None = None) -> bool:
    """Whether the SFT collator should drop padding (when the recipe does not pack; packing is padding-free already).

    Only with a varlen attention kernel (flash-attention-2 on a GPU). SDPA
    with a block mask loses its fast kernels: on GPU padding is cheaper
    (DESIGN.md). On CPU it is off until measured: the one run that showed
    it 2x slower ran configurations in threads of one process, which biased it.
    """
    facts = facts or detect()
    return not packing and attention_implementation(facts) == "flash_attention_2"


def sft_batching(tokenizer: Any, *, packing: bool, facts: DeviceFacts | None = None) -> dict[str, Any]:
    """Extra SFTTrainer keyword arguments: a padding-free collator where it fits, else nothing.

    TRL's own `padding_free=True` is refused without packing (it would not
    enforce max_length); its collator on its own keeps TRL's truncation.
    """
    if not padding_free_fits(packing=packing, facts=facts):
        return {}
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return {"data_collator": DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)}
