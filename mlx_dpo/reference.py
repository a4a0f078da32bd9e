"""Reference log-probs: the policy's own forward with its adapters off, no gradient.

When the run starts from an existing adapter (SFT then DPO), the reference
is base + that starting adapter: its LoRA weights are swapped in for the
reference forward instead of switching the layers off. Either way there is
one model in memory; the starting adapter weights are a few MB.

Values are cached per example: the reference never changes during a run,
so each example is scored once.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .batching import Batch
from .logps import sequence_logps, split_pairs
from .model import adapters_disabled


@contextlib.contextmanager
def reference_mode(model: nn.Module, start_weights: Optional[dict] = None) -> Iterator[nn.Module]:
    """The model as the frozen reference; training mode and adapters restored on exit."""
    was_training = model.training
    model.eval()  # LoRA dropout off
    try:
        if start_weights is None:
            with adapters_disabled(model):
                yield model
        else:
            current = tree_flatten(model.trainable_parameters())
            model.load_weights(list(start_weights.items()), strict=False)
            try:
                yield model
            finally:
                model.load_weights(current, strict=False)
    finally:
        model.train(was_training)


def reference_logps(model: nn.Module, batch: Batch, start_weights: Optional[dict] = None) -> mx.array:
    """(2B,) reference log-prob sums for a stacked batch."""
    with reference_mode(model, start_weights):
        sums, _ = sequence_logps(model, batch.tokens, batch.mask)
        sums = mx.stop_gradient(sums)
        mx.eval(sums)
    return sums


class ReferenceCache:
    """Reference log-probs of one split, computed on first use per example."""

    def __init__(self, model: nn.Module, start_weights: Optional[dict] = None):
        self.model = model
        self.start_weights = start_weights
        self.chosen: dict[int, float] = {}
        self.rejected: dict[int, float] = {}

    def __call__(self, batch: Batch) -> tuple[mx.array, mx.array]:
        if any(i not in self.chosen for i in batch.indices):
            c, r = split_pairs(reference_logps(self.model, batch, self.start_weights))
            for i, vc, vr in zip(batch.indices, c.tolist(), r.tolist()):
                self.chosen[i], self.rejected[i] = vc, vr
        return (mx.array([self.chosen[i] for i in batch.indices], dtype=mx.float32),
                mx.array([self.rejected[i] for i in batch.indices], dtype=mx.float32))
