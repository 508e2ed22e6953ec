"""lm-eval's HFLM on one rank of several processes that share the documents, gathered in document order.

lm-eval shards a task's documents round-robin (rank r gets documents r,
r+N, r+2N, ...) and rank 0 gathers each rank's per-document samples and
metric values, appending rank after rank. Two things keep that from giving
the single-process answer here: HFLM sets up data parallelism only on GPUs
(on CPUs every rank would evaluate every document), and appending rank
after rank changes the order in which float metrics are summed. This HFLM
takes its rank from the accelerator it is given, and puts what rank 0
gathers back in document order, so the aggregates are summed in the same
order as in one process and come out bit for bit the same.
"""

from __future__ import annotations

from typing import Any

from lm_eval.models.huggingface import HFLM


class ShardedHFLM(HFLM):
    """An HFLM around an in-memory model, evaluating this rank's share of the documents."""

    def __init__(self, *, accelerator: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.accelerator = accelerator
        self._rank = accelerator.process_index
        self._world_size = accelerator.num_processes

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:
        gathered = super().gather_object(obj, dst)
        if gathered is None:
            return None
        # One merged "rank": lm-eval chains the gathered list, and a single item in order stays in order.
        return [in_document_order(gathered)]


def in_document_order(per_rank: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task, the ranks' lists interleaved back into the order one process produces.

    A task maps to its logged samples (a list, filter after filter, each
    filter's documents in order) or to its metric values (a dict of such
    lists, one per (metric, filter)).
    """
    merged: dict[str, Any] = {}
    for task, first in per_rank[0].items():
        shares = [rank_data[task] for rank_data in per_rank]
        if isinstance(first, dict):
            merged[task] = {key: _interleave([share[key] for share in shares]) for key in first}
        else:
            merged[task] = _samples_in_order(shares)
    return merged


def _samples_in_order(shares: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    filters: list[str] = []
    for share in shares:
        filters += [f for f in dict.fromkeys(s.get("filter") for s in share) if f not in filters]
    return [
        sample
        for name in filters
        for sample in _interleave([[s for s in share if s.get("filter") == name] for share in shares])
    ]


def _interleave(shares: list[list[Any]]) -> list[Any]:
    """Round-robin: item i of rank r was document i × N + r."""
    longest = max((len(share) for share in shares), default=0)
    return [share[i] for i in range(longest) for share in shares if i < len(share)]
