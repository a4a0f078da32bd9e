"""Load the model with mlx-lm, quantize it, attach LoRA, switch adapters off.

The reference model of DPO is this same model with its adapters switched
off: `adapters_disabled` swaps every LoRA layer for the base layer it wraps
and swaps it back afterwards, so the reference forward runs the base
weights only (no LoRA matmuls at all) and no second model is ever built.
"""

from __future__ import annotations

import contextlib
import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_unflatten

from .errors import UserError
from .hub import fetch

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapters.safetensors"


def lora_classes() -> tuple[type, ...]:
    from mlx_lm.tuner.dora import DoRAEmbedding, DoRALinear
    from mlx_lm.tuner.lora import LoRAEmbedding, LoRALinear, LoRASwitchLinear

    return (LoRALinear, LoRASwitchLinear, LoRAEmbedding, DoRALinear, DoRAEmbedding)


def _base_of(layer: nn.Module) -> nn.Module:
    return layer["embedding"] if "embedding" in layer else layer["linear"]


def resolve_model_path(model: str) -> Path:
    """A local folder as is; anything else is a hub id fetched by mlx-lm."""
    if not model:
        raise UserError("no model given: pass --model FOLDER or a Hugging Face model id")
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError("a model must be a folder (config.json + *.safetensors)", file=model)
        if not (path / "config.json").is_file():
            raise UserError("not a model folder: config.json is missing", file=model)
        if not glob.glob(str(path / "model*.safetensors")):
            raise UserError("no weights: the folder has no model*.safetensors", file=model)
        return path
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise UserError("model folder not found", file=model)
    from mlx_lm.utils import _download

    return resolve_model_path(str(fetch("model", model, lambda: _download(model))))


def load_model(model: str, quantize: Optional[int] = None, q_group_size: int = 64) -> tuple[nn.Module, Any, dict]:
    """(model, tokenizer, config); weights only from safetensors, no remote code."""
    from mlx_lm.utils import load, quantize_model

    path = resolve_model_path(model)
    try:
        net, tokenizer, config = load(str(path), return_config=True, trust_remote_code=False)
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise UserError(f"mlx-lm cannot load this model: {str(e).splitlines()[0]}", file=model) from None
    if quantize:
        if config.get("quantization"):
            raise UserError(f"already quantized ({config['quantization'].get('bits')}-bit); drop --quantize",
                            file=model)
        net, config = quantize_model(net, config, q_group_size, quantize)
    net.freeze()
    return net, tokenizer, config


def lora_parameters(rank: int, scale: float, dropout: float, keys: Optional[list] = None) -> dict:
    params = {"rank": rank, "scale": scale, "dropout": dropout}
    if keys:
        params["keys"] = list(keys)
    return params


def attach_lora(model: nn.Module, num_layers: int, params: dict) -> None:
    """mlx-lm's LoRA layers on the top `num_layers` blocks (-1: all); only they train."""
    from mlx_lm.tuner.utils import linear_to_lora_layers

    n_blocks = len(model.layers)
    if num_layers > n_blocks:
        raise UserError(f"--num-layers {num_layers} but the model has only {n_blocks} blocks")
    model.freeze()
    linear_to_lora_layers(model, n_blocks if num_layers == -1 else num_layers, params)
    if not list(lora_layers(model)):
        keys = params.get("keys")
        raise UserError(f"--lora-keys {','.join(keys or [])} matches no layer of this model")


def lora_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    classes = lora_classes()
    return ((name, m) for name, m in model.named_modules() if isinstance(m, classes))


@contextlib.contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Inside, the model is its base: every LoRA layer is replaced by the layer it wraps.

    Restored exactly on exit, also when the body raises.
    """
    swapped = list(lora_layers(model))
    if swapped:
        model.update_modules(tree_unflatten([(name, _base_of(m)) for name, m in swapped]))
    try:
        yield model
    finally:
        if swapped:
            model.update_modules(tree_unflatten(swapped))


def read_adapter_config(adapter_path: str | Path) -> dict:
    path = Path(adapter_path)
    cfg_file = path / ADAPTER_CONFIG
    if not path.is_dir():
        raise UserError("adapter folder not found", file=str(path))
    if not cfg_file.is_file():
        raise UserError(f"not an adapter folder: {ADAPTER_CONFIG} is missing", file=str(path))
    try:
        cfg = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read adapter config: {e}", file=str(cfg_file)) from None
    if not isinstance(cfg, dict) or "lora_parameters" not in cfg or "num_layers" not in cfg:
        raise UserError("adapter config lacks 'lora_parameters' / 'num_layers'", file=str(cfg_file))
    if cfg.get("fine_tune_type", "lora") != "lora":
        raise UserError(f"only LoRA adapters are supported, this one is {cfg['fine_tune_type']!r}",
                        file=str(cfg_file))
    return cfg


def load_adapter_weights(model: nn.Module, adapter_path: str | Path,
                         weights_file: str = ADAPTER_WEIGHTS) -> None:
    """Load saved LoRA weights into a model that already has matching LoRA layers."""
    from mlx.utils import tree_flatten

    file = Path(adapter_path) / weights_file
    if not file.is_file():
        raise UserError(f"adapter weights missing: {weights_file}", file=str(adapter_path))
    weights = mx.load(str(file))
    params = dict(tree_flatten(model.trainable_parameters()))
    for name, w in weights.items():
        if name not in params:
            raise UserError(f"adapter tensor '{name}' has no place in this model (adapter for another model?)",
                            file=str(file))
        if w.shape != params[name].shape:
            raise UserError(f"adapter tensor '{name}' has shape {tuple(w.shape)}, the model wants "
                            f"{tuple(params[name].shape)} (adapter for another model?)", file=str(file))
    missing = set(params) - set(weights)
    if missing:
        raise UserError(f"adapter lacks {len(missing)} LoRA tensor(s), e.g. '{sorted(missing)[0]}'",
                        file=str(file))
    model.load_weights(list(weights.items()), strict=False)


def apply_adapter(model: nn.Module, adapter_path: str | Path) -> dict:
    """Attach LoRA shaped as a saved adapter describes and load its weights."""
    cfg = read_adapter_config(adapter_path)
    params = cfg["lora_parameters"]
    attach_lora(model, cfg["num_layers"], params)
    load_adapter_weights(model, adapter_path)
    return cfg


@dataclass
class Loaded:
    model: nn.Module
    tokenizer: Any
    config: dict  # the model's config.json, quantization included
    adapter_config: dict = field(default_factory=dict)
    reference_weights: Optional[dict] = None  # the starting adapter, when training began from one


def load_tuned(model: str, adapter_path: Optional[str]) -> Loaded:
    """Model (+ adapter) as it was trained.

    The adapter config says whether training quantized the model on load and
    whether it started from another adapter, which is then the reference.
    """
    if not adapter_path:
        return Loaded(*load_model(model))
    cfg = read_adapter_config(adapter_path)
    net, tokenizer, config = load_model(model, cfg.get("quantize"), cfg.get("q_group_size", 64))
    start = None
    if cfg.get("init_adapter"):
        start_cfg = read_adapter_config(cfg["init_adapter"])
        attach_lora(net, start_cfg["num_layers"], start_cfg["lora_parameters"])
        load_adapter_weights(net, cfg["init_adapter"])
        from mlx.utils import tree_flatten

        start = dict(tree_flatten(net.trainable_parameters()))
        load_adapter_weights(net, adapter_path)
    else:
        apply_adapter(net, adapter_path)
    net.eval()
    return Loaded(net, tokenizer, config, cfg, start)
