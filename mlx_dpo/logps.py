"""Per-sequence log-probabilities of the completion tokens, one forward per batch.

Logits at position t score token t+1; prompt and padding positions are
masked out. Chosen and rejected rows come stacked in one batch, so one
forward scores both.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


def token_logps(logits: mx.array, targets: mx.array) -> mx.array:
    """log p(target) at every position, in float32 whatever the model's dtype."""
    logits = logits.astype(mx.float32)
    picked = mx.take_along_axis(logits, targets[..., None], axis=-1).squeeze(-1)
    return picked - mx.logsumexp(logits, axis=-1)


def sequence_logps(model: nn.Module, tokens: mx.array, mask: mx.array) -> tuple[mx.array, mx.array]:
    """(sum of completion-token log-probs, completion token count) per row."""
    inputs, targets, scored = tokens[:, :-1], tokens[:, 1:], mask[:, 1:]
    lp = token_logps(model(inputs), targets)
    return (lp * scored).sum(axis=-1), scored.sum(axis=-1)


def split_pairs(values: mx.array) -> tuple[mx.array, mx.array]:
    """Stacked (2B,) values -> (chosen (B,), rejected (B,))."""
    half = values.shape[0] // 2
    return values[:half], values[half:]
