"""Memory pre-flight: estimate a run's peak before the first step, and what fits if it is too big.

The estimate counts the loaded weights exactly and models the rest: LoRA
parameters with their gradients and AdamW moments, the activations the
backward pass keeps (all blocks less what recompute.py recomputes, or
block inputs only with --grad-checkpoint), and the chunked log-prob head.
It does not count the prompt sharing (prefix.py) saves, so it errs high. Each run logs
the estimate beside the measured peak, so its accuracy stays visible.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .logps import CHUNK_ELEMENTS

GB = 1e9
SLACK = 1.2


@dataclass
class Shape:
    """What the estimate needs to know about a model."""
    weights_bytes: float
    lora_params: int
    hidden: int
    layers: int
    intermediate: int
    heads: int
    vocab: int
    act_bytes: int  # 2 for float16/bfloat16 activations, 4 for float32


def peak_bytes(shape: Shape, batch_size: int, seq_len: int, grad_checkpoint: bool,
               grad_accumulation_steps: int = 1) -> float:
    """Peak bytes of a DPO step on `batch_size` pairs (2x sequences) of `seq_len` tokens."""
    # parameter + gradient + two AdamW moments (+ the accumulation buffer), all float32
    lora_bytes = shape.lora_params * 4 * (4 + (1 if grad_accumulation_steps > 1 else 0))
    act, hidden = shape.act_bytes, shape.hidden
    tokens = 2 * batch_size * seq_len
    # Saved for backward per token and block: matmul inputs, norms, residuals (~12 hidden-wide
    # tensors), the MLP's gate/up/act (~4 intermediate-wide) and the attention weights. By default
    # SwiGLU and attention are recomputed (recompute.py), leaving ~8 hidden-wide and 3
    # intermediate-wide (measured 44 MB per block at 512 tokens of Qwen2.5-0.5B, against 72).
    # With --grad-checkpoint every block keeps its input and one block at a time keeps everything.
    whole_block = tokens * (act * (12 * hidden + 4 * shape.intermediate) + 4 * shape.heads * seq_len)
    if grad_checkpoint:
        acts = shape.layers * tokens * act * hidden + whole_block
    else:
        acts = shape.layers * tokens * act * (8 * hidden + 3 * shape.intermediate)
    # The fused head (logps.py) holds one chunk of float32 logits at a time (logits, softmax,
    # gradient, a copy) plus the scored hidden states and their gradient.
    head = 4 * 4 * CHUNK_ELEMENTS + 2 * tokens * hidden * 4
    # Allocator slack and temporaries the model above leaves out: measured 0.89x without it.
    return shape.weights_bytes + lora_bytes + SLACK * (acts + head)


def shape_of_model(model: nn.Module) -> Shape:
    args = getattr(model, "args", None) or getattr(model, "config", None)
    return Shape(
        weights_bytes=sum(v.nbytes for _, v in tree_flatten(model.parameters())),
        lora_params=sum(v.size for _, v in tree_flatten(model.trainable_parameters())),
        hidden=args.hidden_size, layers=args.num_hidden_layers,
        intermediate=getattr(args, "intermediate_size", 4 * args.hidden_size),
        heads=args.num_attention_heads, vocab=args.vocab_size,
        act_bytes=2 if _compute_dtype(model) in (mx.float16, mx.bfloat16) else 4)


def shape_of_config(config: dict, bits: Optional[int], lora_rank: int, lora_layers: int = -1,
                    group_size: int = 64) -> Shape:
    """From config.json alone (nothing loaded): for planning and for the TUI's estimate."""
    h, n, inter = config["hidden_size"], config["num_hidden_layers"], config.get("intermediate_size", 4 * config["hidden_size"])
    heads, kv, vocab = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"]), config["vocab_size"]
    head_dim = config.get("head_dim") or h // heads
    projections = [(h, heads * head_dim), (h, kv * head_dim), (h, kv * head_dim), (heads * head_dim, h),
                   (h, inter), (h, inter), (inter, h)]
    block = sum(i * o for i, o in projections)
    embed = vocab * h * (1 if config.get("tie_word_embeddings", False) else 2)
    params = n * block + embed
    per_weight = bits / 8 + 2 * 2 / group_size if bits else 2  # packed bits + fp16 scale and bias per group
    trained = n if lora_layers == -1 else min(lora_layers, n)
    return Shape(weights_bytes=params * per_weight, lora_params=trained * sum(lora_rank * (i + o) for i, o in projections),
                 hidden=h, layers=n, intermediate=inter, heads=heads, vocab=vocab, act_bytes=2)


def estimate_peak_bytes(model: nn.Module, batch_size: int, seq_len: int, grad_checkpoint: bool,
                        grad_accumulation_steps: int = 1) -> float:
    return peak_bytes(shape_of_model(model), batch_size, seq_len, grad_checkpoint, grad_accumulation_steps)


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



def estimate_for_settings(model_config: dict, cfg: Any) -> float:
    """Peak bytes of a run with these settings on a model known only by its config.json (nothing loaded)."""
    quantization = model_config.get("quantization") or {}
    bits = cfg.quantize or quantization.get("bits")
    group = cfg.q_group_size if cfg.quantize else quantization.get("group_size", 64)
    shape = shape_of_config(model_config, bits, cfg.lora_rank, cfg.num_layers, group)
    return peak_bytes(shape, cfg.batch_size, cfg.max_length, cfg.grad_checkpoint, cfg.grad_accumulation_steps)
