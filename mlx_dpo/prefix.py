"""Shared prompt: the chosen and rejected rows of a pair begin with the same prompt tokens, so
the body runs them once and continues both answers from that prefix's KV cache.

The prefix is the first `batch.prefix` positions, which every row of the batch has as prompt
(the shortest prompt in the batch, less the one position whose output scores the first answer
token). Gradients flow through the cached keys and values into the prefix pass, so the result
equals two full forwards up to float rounding; `shares_prompt` checks that once per model.

It needs plain KV caches (attention over everything before) and no per-block `mx.checkpoint`,
which cannot carry a cache object; otherwise the body runs the full rows.
"""

from __future__ import annotations

from typing import Callable

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.cache import KVCache, make_prompt_cache

# Below this many shared positions the second, shorter forward costs more than it saves.
MIN_PREFIX = 16


def shares_prompt(model: nn.Module, body: Callable) -> bool:
    """Whether `body` continues from a shared prefix exactly as it runs whole rows: plain KV
    caches only (no sliding window, no recurrent state), checked on a probe."""
    try:
        if not all(type(c) is KVCache for c in make_prompt_cache(model)):
            return False
    except Exception:  # a model that cannot build its cache cannot share a prefix either
        return False
    vocab = model.args.vocab_size
    prompt, answers = mx.broadcast_to(mx.arange(20, 26), (2, 6)), mx.arange(3, 19).reshape(2, 8)
    probe = mx.concatenate([prompt, answers], axis=1) % vocab  # one pair: a 6-token prompt, two answers
    was_training = model.training
    model.eval()  # LoRA dropout would make two forwards differ
    try:
        whole = body(probe)[:, 5:]
        return bool(mx.allclose(shared_prefix_hidden(model, body, probe, 5), whole, atol=1e-3, rtol=1e-3).item())
    finally:
        model.train(was_training)


def shared_prefix_hidden(model: nn.Module, body: Callable, tokens: mx.array, prefix: int) -> mx.array:
    """Final hidden states of `tokens[:, prefix:]` for a stacked (chosen rows, rejected rows) batch
    whose first `prefix` tokens are equal between row i and row i + B."""
    pairs = tokens.shape[0] // 2
    caches = make_prompt_cache(model)
    body(tokens[:pairs, :prefix], cache=caches)
    for c in caches:
        keys, values = (a[..., :prefix, :] for a in (c.keys, c.values))
        c.keys, c.values = mx.concatenate([keys, keys]), mx.concatenate([values, values])
    return body(tokens[:, prefix:], cache=caches)
