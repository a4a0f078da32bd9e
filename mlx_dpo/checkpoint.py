"""Adapter files in mlx-lm's layout, written atomically.

`adapters.safetensors` + `adapter_config.json` is what `mlx_lm.load(...,
adapter_path=...)` reads; numbered checkpoints sit beside them. Every file
goes to a temporary name first and is renamed into place, so a crash
leaves the previous version intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .model import ADAPTER_CONFIG, ADAPTER_WEIGHTS

BEST_WEIGHTS = "best_adapters.safetensors"


def _replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text)
    _replace(tmp, path)


def adapter_weights(model: nn.Module) -> dict[str, mx.array]:
    return dict(tree_flatten(model.trainable_parameters()))


def save_weights(weights: dict[str, mx.array], path: Path) -> None:
    tmp = path.with_name(f".tmp-{path.name}")  # keeps the .safetensors suffix mlx expects
    mx.save_safetensors(str(tmp), weights)
    _replace(tmp, path)


def checkpoint_name(step: int) -> str:
    return f"{step:07d}_{ADAPTER_WEIGHTS}"


def save_adapters(model: nn.Module, folder: Path, step: int | None = None, best: bool = False) -> list[Path]:
    """adapters.safetensors (+ numbered checkpoint, + best copy); returns the files written."""
    weights = adapter_weights(model)
    names = [ADAPTER_WEIGHTS] + ([checkpoint_name(step)] if step is not None else []) + ([BEST_WEIGHTS] if best else [])
    paths = [folder / n for n in names]
    for p in paths:
        save_weights(weights, p)
    return paths


def write_adapter_config(folder: Path, run_config: dict[str, Any], num_layers: int, lora_parameters: dict) -> None:
    """Our resolved run config plus the keys mlx-lm's `load_adapters` reads."""
    cfg = dict(run_config)
    cfg.update(fine_tune_type="lora", num_layers=num_layers, lora_parameters=lora_parameters)
    atomic_write_text(folder / ADAPTER_CONFIG, json.dumps(cfg, indent=2, sort_keys=True) + "\n")
