"""Reference log-probs: the policy's own forward with its adapters off, no gradient.

When the run starts from an existing adapter (SFT then DPO), the reference
is base + that starting adapter: its LoRA weights are swapped in for the
reference forward instead of switching the layers off. Either way there is
one model in memory; the starting adapter weights are a few MB.

The reference never changes during a run, so each example is scored once:
values are kept in memory and in the run folder, under a key made of the
model, the starting adapter and the tokenized data, and reused on later
epochs and on resume.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from .batching import Batch, iterate_batches
from .logps import LogpScorer, split_pairs
from .model import adapters_disabled
from .tokenize import TokenizedPair


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


class ReferenceCache:
    """Reference log-probs of one split's examples, computed on first use (or all at once)."""

    def __init__(self, model: nn.Module, start_weights: Optional[dict] = None, size: int = 0,
                 path: Optional[Path] = None, key: str = "", scorer: Optional[LogpScorer] = None):
        self.model, self.start_weights = model, start_weights
        self.scorer = scorer or LogpScorer(model)
        self.path, self.key = path, key
        self.chosen = np.full(size, np.nan, dtype=np.float32)
        self.rejected = np.full(size, np.nan, dtype=np.float32)
        self.dirty = False
        if path is not None and path.is_file():
            self._load()

    def _load(self) -> None:
        arrays, meta = mx.load(str(self.path), return_metadata=True)
        if meta.get("key") == self.key and arrays["chosen"].size == self.chosen.size:
            self.chosen, self.rejected = np.array(arrays["chosen"]), np.array(arrays["rejected"])

    def save(self) -> None:
        """Atomic, like every run file; a no-op when nothing new was computed."""
        if self.path is None or not self.dirty:
            return
        tmp = self.path.with_name(f".tmp-{self.path.name}")
        mx.save_safetensors(str(tmp), {"chosen": mx.array(self.chosen), "rejected": mx.array(self.rejected)},
                            metadata={"key": self.key})
        tmp.replace(self.path)
        self.dirty = False

    def _grow(self, n: int) -> None:
        if n > self.chosen.size:
            pad = np.full(n - self.chosen.size, np.nan, dtype=np.float32)
            self.chosen, self.rejected = np.concatenate([self.chosen, pad]), np.concatenate([self.rejected, pad])

    def known(self, indices: Sequence[int]) -> bool:
        return max(indices) < self.chosen.size and not np.isnan(self.chosen[list(indices)]).any()

    @property
    def filled(self) -> int:
        return int((~np.isnan(self.chosen)).sum())

    def compute(self, batch: Batch) -> None:
        with reference_mode(self.model, self.start_weights):
            sums, _ = self.scorer(self.model, batch, grad=False)
            sums = mx.stop_gradient(sums)
            mx.eval(sums)
        c, r = split_pairs(sums)
        self._grow(max(batch.indices) + 1)
        self.chosen[batch.indices] = np.array(c)
        self.rejected[batch.indices] = np.array(r)
        self.dirty = True

    def __call__(self, batch: Batch) -> tuple[mx.array, mx.array]:
        if not self.known(batch.indices):
            self.compute(batch)
        return mx.array(self.chosen[batch.indices]), mx.array(self.rejected[batch.indices])

    def precompute(self, pairs: Sequence[TokenizedPair], batch_size: int, pad_id: int,
                   on_batch: Optional[Callable[[int, int], None]] = None) -> None:
        """Score every example now, so the training loop runs only the policy."""
        batches = list(iterate_batches(pairs, batch_size, pad_id, shuffle=False))
        for i, batch in enumerate(batches, start=1):
            if not self.known(batch.indices):
                self.compute(batch)
            if on_batch is not None:
                on_batch(i, len(batches))
        self.save()
