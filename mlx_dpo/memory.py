"""Memory pre-flight: estimate a run's peak before the first step, and what fits if it is too big.

The estimate counts the loaded weights exactly and models the rest: LoRA
parameters with their gradients and AdamW moments, the activations the
backward pass keeps (all blocks, or block inputs only with
--grad-checkpoint), and the full-vocabulary log-prob head. Each run logs
the estimate beside the measured peak, so its accuracy stays visible.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

GB = 1e9


def _args(model: nn.Module) -> Any:
    return getattr(model, "args", None) or getattr(model, "config", None)


def estimate_peak_bytes(model: nn.Module, batch_size: int, seq_len: int, grad_checkpoint: bool,
                        grad_accumulation_steps: int = 1) -> float:
    """Peak bytes of a DPO step on `batch_size` pairs (2x sequences) of `seq_len` tokens."""
    weights = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
    lora = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    # parameter + gradient + two AdamW moments (+ the accumulation buffer), all float32
    lora_bytes = lora * 4 * (4 + (1 if grad_accumulation_steps > 1 else 0))
    args = _args(model)
    hidden = args.hidden_size
    layers = args.num_hidden_layers
    inter = getattr(args, "intermediate_size", 4 * hidden)
    heads = args.num_attention_heads
    vocab = args.vocab_size
    act = 2 if _compute_dtype(model) in (mx.float16, mx.bfloat16) else 4
    tokens = 2 * batch_size * seq_len
    # Saved for backward per token and block: matmul inputs, norms, residuals (~12 hidden-wide
    # tensors), the MLP's gate/up/act (~4 intermediate-wide) and the attention weights.
    per_block = tokens * (act * (12 * hidden + 4 * inter) + 4 * heads * seq_len)
    acts = (layers * tokens * act * hidden + per_block) if grad_checkpoint else layers * per_block
    # Full-vocabulary head: logits in the model dtype, their float32 copy, log-softmax and its gradient.
    head = tokens * vocab * (act + 3 * 4)
    return weights + lora_bytes + acts + head


def _compute_dtype(model: nn.Module) -> mx.Dtype:
    for name, v in tree_flatten(model.parameters()):
        if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            return v.dtype
    return mx.float32


def available_bytes() -> Optional[float]:
    """What this machine can give a run: Metal's recommended working set, else available RAM."""
    try:
        info = mx.device_info() if hasattr(mx, "device_info") else mx.metal.device_info()
        if mx.metal.is_available() and "max_recommended_working_set_size" in info:
            return float(info["max_recommended_working_set_size"])
    except (RuntimeError, AttributeError):
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def fitting_settings(model: nn.Module, cfg: Any, seq_len: int, limit: float) -> Optional[dict]:
    """The first, least intrusive change that fits: smaller batches (same effective batch through
    accumulation), then gradient checkpointing, then shorter sequences."""
    batch, accum, ckpt, length = cfg.batch_size, cfg.grad_accumulation_steps, cfg.grad_checkpoint, seq_len
    candidates = []
    while batch > 1:
        batch, accum = max(1, batch // 2), accum * 2
        candidates.append(dict(batch_size=batch, grad_accumulation_steps=accum, grad_checkpoint=ckpt, max_length=None))
    if not ckpt:
        ckpt = True
        candidates.append(dict(batch_size=batch, grad_accumulation_steps=accum, grad_checkpoint=True, max_length=None))
    while length > 64:
        length //= 2
        candidates.append(dict(batch_size=batch, grad_accumulation_steps=accum, grad_checkpoint=ckpt, max_length=length))
    for c in candidates:
        est = estimate_peak_bytes(model, c["batch_size"], c["max_length"] or seq_len, c["grad_checkpoint"],
                                  c["grad_accumulation_steps"])
        if est <= limit:
            return {**c, "estimate_gb": est / GB}
    return None


def describe(settings: dict) -> str:
    flags = [f"--batch-size {settings['batch_size']}", f"--grad-accumulation-steps {settings['grad_accumulation_steps']}"]
    if settings["grad_checkpoint"]:
        flags.append("--grad-checkpoint")
    if settings["max_length"]:
        flags.append(f"--max-length {settings['max_length']}")
    return " ".join(flags)

