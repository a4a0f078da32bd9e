"""Held-out preference metrics: accuracy, margins, loss, KL to the reference."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import mlx.core as mx
import mlx.nn as nn

from .batching import Batch, iterate_batches
from .config import LossConfig
from .logps import LogpScorer, split_pairs
from .losses import preference_loss
from .reference import ReferenceCache
from .tokenize import TokenizedPair


def batch_loss(model: nn.Module, batch: Batch, scorer: LogpScorer, ref_chosen: Optional[mx.array],
               ref_rejected: Optional[mx.array], cfg: LossConfig,
               bco_delta: float | mx.array = 0.0, grad: bool = True) -> tuple[mx.array, dict[str, mx.array]]:
    """Loss and metrics of one stacked batch; what the trainer differentiates (`grad=False`: evaluation only)."""
    sums, counts = scorer(model, batch, grad)
    pc, pr = split_pairs(sums)
    lc, lr = split_pairs(counts)
    return preference_loss(pc, pr, ref_chosen, ref_rejected, lc, lr, cfg, bco_delta)


def evaluate_pairs(model: nn.Module, pairs: Sequence[TokenizedPair], ref: Optional[ReferenceCache],
                   cfg: LossConfig, batch_size: int, pad_id: int, max_batches: int = -1,
                   on_batch: Optional[Callable[[], None]] = None) -> dict[str, float]:
    """Metrics averaged over pairs (each batch weighted by its number of pairs)."""
    was_training = model.training
    model.eval()
    scorer = ref.scorer if ref is not None else LogpScorer(model)
    totals: dict[str, float] = {}
    n = 0
    try:
        for i, batch in enumerate(iterate_batches(pairs, batch_size, pad_id, shuffle=False)):
            if max_batches != -1 and i >= max_batches:
                break
            rc, rr = ref(batch) if ref is not None else (None, None)
            _, metrics = batch_loss(model, batch, scorer, rc, rr, cfg, grad=False)
            mx.eval(metrics)
            for k, v in metrics.items():
                totals[k] = totals.get(k, 0.0) + v.item() * batch.pairs
            n += batch.pairs
            if on_batch is not None:
                on_batch()
    finally:
        model.train(was_training)
    return {k: v / n for k, v in totals.items()} if n else {}
