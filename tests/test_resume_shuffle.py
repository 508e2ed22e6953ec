"""A stage resumed mid-epoch on several processes sees the batches the uninterrupted run saw.

Built from the same accelerate pieces a 2-process trainer builds (a seeded sampler under `BatchSamplerShard`, then
`skip_first_batches` for the resumed epoch), run in one process: rank 0's batches are compared."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from accelerate.data_loader import (
    BatchSamplerShard,
    DataLoaderShard,
    SeedableRandomSampler,
    skip_first_batches,
)
from torch.utils.data import BatchSampler

from posttrain.training.callbacks import ResumedEpochShuffle

DATA = list(range(16))


def rank0_loader() -> DataLoaderShard:
    """What a freshly started rank 0 of 2 holds before its first epoch: batches of 2, shuffled per epoch."""
    sampler = SeedableRandomSampler(DATA, data_seed=11)
    shard = BatchSamplerShard(BatchSampler(sampler, 2, drop_last=False), num_processes=2, process_index=0)
    return DataLoaderShard(DATA, batch_sampler=shard)


def batches(loader) -> list[list[int]]:
    return [batch.tolist() for batch in loader]


def resumed_epoch(epoch: int, skip: int, *, callback: bool) -> list[list[int]]:
    """The trainer's resume of `epoch` after `skip` batches: its epoch-begin callbacks, then the skipping loader."""
    loader = rank0_loader()
    if callback:
        state = SimpleNamespace(epoch=epoch + skip / 4)
        ResumedEpochShuffle().on_epoch_begin(None, state, None, train_dataloader=loader)
    resumed = skip_first_batches(loader, skip)
    resumed.set_epoch(epoch)  # what transformers' epoch loop calls
    return batches(resumed)


def test_a_resumed_later_epoch_continues_that_epochs_order() -> None:
    uninterrupted = rank0_loader()
    epochs = []
    for epoch in range(3):
        uninterrupted.set_epoch(epoch)
        epochs.append(batches(uninterrupted))
    assert epochs[1] != epochs[0], "the sampler must shuffle each epoch differently for this test to mean anything"
    for epoch in range(3):
        assert resumed_epoch(epoch, 1, callback=True) == epochs[epoch][1:]


def test_without_the_callback_the_resumed_epoch_is_shuffled_as_epoch_0() -> None:
    # The upstream behaviour the callback corrects; when this fails, accelerate/transformers reach the sampler
    # themselves and ResumedEpochShuffle can go.
    uninterrupted = rank0_loader()
    uninterrupted.set_epoch(1)
    assert resumed_epoch(1, 1, callback=False) != batches(uninterrupted)[1:]


def test_the_epoch_is_the_one_the_state_is_in() -> None:
    loader = rank0_loader()
    sampler = loader.batch_sampler.batch_sampler.sampler
    for state_epoch, expected in [(1.25, 1), (2.0, 2), (2.9999999999, 3)]:  # the last: float drift at a boundary
        ResumedEpochShuffle().on_epoch_begin(None, SimpleNamespace(epoch=state_epoch), None, train_dataloader=loader)
        assert sampler.epoch == expected
    plain = torch.utils.data.DataLoader(DATA, shuffle=True)  # no epoch-seeded sampler: nothing to set, no error
    ResumedEpochShuffle().on_epoch_begin(None, SimpleNamespace(epoch=None), None, train_dataloader=plain)
