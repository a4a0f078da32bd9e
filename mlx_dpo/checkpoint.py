"""Adapter files in mlx-lm's layout and resumable checkpoints, written atomically.

`adapters.safetensors` + `adapter_config.json` is what `mlx_lm.load(...,
adapter_path=...)` reads; numbered checkpoints sit beside them. Every file
goes to a temporary name first and is renamed into place, so a crash
leaves the previous version intact.

A resumable checkpoint at step k is `k_adapters.safetensors`,
`k_optimizer.safetensors` and `k_state.json`; `trainer_state.json` is
written last and names the newest complete one, so it is the commit point:
a crash before it leaves the previous checkpoint in charge.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .errors import UserError
from .model import ADAPTER_CONFIG, ADAPTER_WEIGHTS

BEST_WEIGHTS = "best_adapters.safetensors"
STATE_FILE = "trainer_state.json"
KEEP_OPTIMIZER_STATES = 3  # older ones are pruned: optimizer moments are 2x the adapter size


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


def optimizer_name(step: int) -> str:
    return f"{step:07d}_optimizer.safetensors"


def state_name(step: int) -> str:
    return f"{step:07d}_state.json"


def save_checkpoint(model: nn.Module, optimizer_state: dict, state: dict, folder: Path) -> Path:
    """Adapters, optimizer and trainer state at `state['step']`; then the pointer that commits them."""
    step = state["step"]
    save_adapters(model, folder, step=step)
    save_weights(dict(tree_flatten(optimizer_state)), folder / optimizer_name(step))
    atomic_write_text(folder / state_name(step), json.dumps(state, indent=2) + "\n")
    atomic_write_text(folder / STATE_FILE, json.dumps(state, indent=2) + "\n")
    for old in sorted(folder.glob("*_optimizer.safetensors"))[:-KEEP_OPTIMIZER_STATES]:
        old.unlink(missing_ok=True)
    return folder / checkpoint_name(step)


def find_checkpoint(folder: Path, resume_from: Optional[str] = None) -> dict:
    """The trainer state to resume from: the newest, or the one of a numbered adapters file / step."""
    if resume_from is None:
        pointer = folder / STATE_FILE
        if not pointer.is_file():
            raise UserError("nothing to resume: no trainer_state.json here", file=str(folder))
        state = json.loads(pointer.read_text())
    else:
        name = Path(resume_from).name
        digits = name.split("_", 1)[0]
        if not digits.isdigit():
            raise UserError("--resume-from takes a step number or a NNNNNNN_adapters.safetensors file",
                            file=resume_from)
        path = folder / state_name(int(digits))
        if not path.is_file():
            raise UserError(f"no checkpoint state for step {int(digits)}", file=str(folder))
        state = json.loads(path.read_text())
    for name in (checkpoint_name(state["step"]), optimizer_name(state["step"])):
        if not (folder / name).is_file():
            raise UserError(f"checkpoint of step {state['step']} is incomplete: {name} is missing "
                            f"(optimizer states older than the last {KEEP_OPTIMIZER_STATES} are pruned)",
                            file=str(folder))
    return state


RUN_FILES = ("adapters.safetensors", BEST_WEIGHTS, ADAPTER_CONFIG, STATE_FILE, "metrics.jsonl")


def holds_run(folder: Path) -> bool:
    return any((folder / n).exists() for n in (ADAPTER_CONFIG, STATE_FILE))


def clear_run(folder: Path) -> None:
    """Remove a previous run's files (only ours: the folder may hold the user's other files)."""
    for pattern in (*RUN_FILES, "*_adapters.safetensors", "*_optimizer.safetensors", "*_state.json",
                    "ref_logps_*.safetensors", ".tmp-*"):
        for path in folder.glob(pattern):
            path.unlink(missing_ok=True)
