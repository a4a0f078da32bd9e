"""One training run from a TrainConfig: data, model, LoRA, trainer, files.

`train(TrainConfig(...))` is the Python API; `python -m mlx_dpo train`
calls the same function. Every user mistake surfaces as a UserError before
anything is written to the adapter folder.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Optional

import mlx.core as mx

from .checkpoint import adapter_weights, write_adapter_config
from .config import TrainConfig, to_dict, validate
from .data import Split, load_splits
from .errors import UserError
from .model import attach_lora, load_model, lora_parameters, read_adapter_config, load_adapter_weights
from .reporting import JsonLines, MetricsFile, ProgressBar, fanout
from .tokenize import TokenizedPair, tokenize_pairs
from .trainer import Trainer

METRICS_FILE = "metrics.jsonl"


def pad_id_of(tokenizer: Any) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    return pad if pad is not None else tokenizer.eos_token_id


def tokenize_splits(splits: dict[str, Split], cfg: TrainConfig, tokenizer: Any,
                    emit: Callable[[dict], None]) -> dict[str, list[TokenizedPair]]:
    out = {}
    for name, split in splits.items():
        if split.identical_skipped:
            emit({"event": "message", "level": "warning",
                  "text": f"{name}: skipped {split.identical_skipped} pair(s) whose chosen equals rejected"})
        pairs, report = tokenize_pairs(split.pairs, tokenizer, cfg.max_length, cfg.max_prompt_length,
                                       cfg.truncation_mode, cfg.chat_template)
        for text in report.messages(cfg.max_length):
            emit({"event": "message", "level": "warning", "text": f"{name}: {text}"})
        out[name] = pairs
    if not out["train"]:
        raise UserError("no training pairs left after truncation: raise --max-length", file=cfg.data)
    return out


def default_consumers(cfg: TrainConfig) -> list:
    if cfg.progress == "json":
        return [JsonLines(sys.stdout)]
    if cfg.progress == "bar":
        return [ProgressBar(cfg.steps_per_report)]
    return []


def train(cfg: TrainConfig, on_event: Optional[Callable[[dict], None]] = None) -> dict:
    """Train LoRA adapters with DPO; returns the final event (step, metrics, adapter path)."""
    validate(cfg)
    out = Path(cfg.adapter_path)
    consumers = default_consumers(cfg) + [on_event]
    emit = fanout(consumers)
    # Data first: its mistakes are the commonest and need no model loaded to be found.
    raw = load_splits(cfg.data, cfg.split, cfg.valid_split, cfg.test_split, cfg.columns, cfg.val_fraction, cfg.seed)
    model, tokenizer, _ = load_model(cfg.model, cfg.quantize, cfg.q_group_size)
    splits = tokenize_splits(raw, cfg, tokenizer, emit)

    mx.random.seed(cfg.seed)  # LoRA A matrices are drawn from this
    start_weights = None
    if cfg.init_adapter:
        start_cfg = read_adapter_config(cfg.init_adapter)
        num_layers, params = start_cfg["num_layers"], start_cfg["lora_parameters"]
        attach_lora(model, num_layers, params)
        load_adapter_weights(model, cfg.init_adapter)
        start_weights = adapter_weights(model)
        emit({"event": "message", "level": "info",
              "text": f"starting from adapter {cfg.init_adapter} (rank {params['rank']}); it is also the reference"})
    else:
        num_layers = cfg.num_layers
        params = lora_parameters(cfg.lora_rank, cfg.scale(), cfg.lora_dropout, cfg.lora_keys)
        attach_lora(model, num_layers, params)

    out.mkdir(parents=True, exist_ok=True)
    write_adapter_config(out, to_dict(cfg), num_layers, params)
    emit = fanout(consumers + [MetricsFile(out / METRICS_FILE)])
    trainer = Trainer(model, cfg, pad_id_of(tokenizer), out, emit, start_weights)
    return trainer.train(splits["train"], splits.get("valid", []))
