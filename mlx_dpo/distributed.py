"""Data-parallel training over `mx.distributed` (started by `mlx.launch`).

Every rank walks the same global batch order; rank r scores pairs r, r+n,
r+2n, ... of each global batch. Gradients and metrics are averaged across
ranks weighted by how many pairs each scored, so the update equals the one a
single process makes on the whole global batch: the sequence of updates does
not depend on the number of ranks. Only rank 0 writes files and reports.
"""

from __future__ import annotations

from typing import Any, Sequence

import mlx.core as mx
from mlx.utils import tree_map


class World:
    def __init__(self) -> None:
        self.group = mx.distributed.init()
        self.rank, self.size = self.group.rank(), self.group.size()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def my_pairs(self, indices: Sequence[int]) -> tuple[list[int], int]:
        """This rank's slice of a global batch and how many pairs it really owns.

        A rank left with nothing (a global batch smaller than the world) scores
        the batch's first pair with weight 0, so every rank joins every reduction.
        """
        mine = list(indices[self.rank::self.size])
        return (mine, len(mine)) if mine else ([indices[0]], 0)

    def mean(self, tree: Any, pairs: int) -> Any:
        """Pair-weighted mean over ranks of per-rank means (identity on one rank)."""
        if self.size == 1:
            return tree
        total = mx.distributed.all_sum(mx.array(float(pairs)), stream=mx.cpu)
        return tree_map(lambda x: mx.distributed.all_sum(x * pairs, stream=mx.cpu) / total, tree)

    def total(self, value: float) -> float:
        if self.size == 1:
            return value
        return mx.distributed.all_sum(mx.array(float(value)), stream=mx.cpu).item()

    def barrier(self) -> None:
        self.total(0.0)
