"""What the backward pass recomputes instead of keeping: memory traded for compute.

By default only the cheap parts are recomputed ("selective recomputation", Korthikanti et al.
2022): the SwiGLU product and the attention. The first is elementwise, yet MLX keeps four
intermediate-wide tensors of it per block (gate, its sigmoid, silu, product); the second keeps
the score matrices whenever MLX falls back to op-by-op attention, as it does on the CPU and
while tracing a gradient. Neither changes a number. Measured at the Qwen2.5-0.5B shape, 512
tokens: 72 MB per block kept for the backward, 44 MB with both recomputed, the step's time
within noise.

`--grad-checkpoint` recomputes whole blocks instead (mlx-lm's per-block `mx.checkpoint`):
block inputs only are kept, for one more forward of the body.

Both work by rebinding names the model's code looks up at call time, and both put them back on
exit: a block class or a model module is shared by every model of that architecture in the
process (a later run, a chat, a test).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models import activations, base


def _swiglu(gate: mx.array, x: mx.array) -> mx.array:
    return nn.silu(gate) * x


def _attention(queries: mx.array, keys: mx.array, values: mx.array, cache: Any, scale: float,
               mask: Any, sinks: Any = None) -> mx.array:
    if hasattr(cache, "bits") or sinks is not None or isinstance(mask, mx.array):
        # Quantized caches, sinks and array masks (sliding windows): mlx-lm's own path, kept as is.
        return base.scaled_dot_product_attention(queries, keys, values, cache, scale, mask, sinks)

    def attend(q: mx.array, k: mx.array, v: mx.array) -> mx.array:
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)

    return mx.checkpoint(attend)(queries, keys, values)


_RECOMPUTED = {"swiglu": (activations.swiglu, mx.checkpoint(_swiglu)),
               "scaled_dot_product_attention": (base.scaled_dot_product_attention, _attention)}


@contextlib.contextmanager
def selective_recompute(model: nn.Module) -> Iterator[list[str]]:
    """Recompute SwiGLU and attention in the backward; yields the names rebound (none for
    architectures that do not use mlx-lm's shared helpers)."""
    module = sys.modules[type(model).__module__]
    rebound = [name for name, (original, _) in _RECOMPUTED.items() if getattr(module, name, None) is original]
    for name in rebound:
        setattr(module, name, _RECOMPUTED[name][1])
    try:
        yield rebound
    finally:
        for name in rebound:
            setattr(module, name, _RECOMPUTED[name][0])


@contextlib.contextmanager
def grad_checkpointing(model: nn.Module) -> Iterator[None]:
    """mlx-lm's per-block `mx.checkpoint`, undone on exit (it patches the block's class)."""
    from mlx_lm.tuner.trainer import grad_checkpoint

    block = type(model.layers[0])
    own = block.__dict__.get("__call__")
    grad_checkpoint(model.layers[0])
    try:
        yield
    finally:
        if own is None:
            del block.__call__
        else:
            block.__call__ = own


def recomputing(model: nn.Module, grad_checkpoint: bool) -> contextlib.AbstractContextManager:
    """Whole blocks with `grad_checkpoint`, else the cheap parts."""
    return grad_checkpointing(model) if grad_checkpoint else selective_recompute(model)
