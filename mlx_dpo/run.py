"""One training run from a TrainConfig: data, model, LoRA, pre-flight, trainer, files.

`train(TrainConfig(...))` is the Python API; `python -m mlx_dpo train`
calls the same function. Every user mistake surfaces as a UserError before
anything is written to the adapter folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .checkpoint import (STATE_FILE, adapter_weights, atomic_write_text, checkpoint_name, clear_run, find_checkpoint, holds_run,
                         write_adapter_config)
from .config import TrainConfig, to_dict, validate
from .data import Split, load_splits
from .distributed import World
from .errors import UserError
from .memory import GB, available_bytes, describe, estimate_peak_bytes, fitting_settings
from .model import (attach_lora, load_adapter_weights, load_model, lora_parameters, read_adapter_config,
                    resolve_model_path)
from .reporting import JsonLines, MetricsFile, ProgressBar, fanout
from .signals import graceful_stop
from .tokenize import TokenizedPair, tokenize_pairs
from .trainer import Trainer, TrainerState

METRICS_FILE = "metrics.jsonl"
Emit = Callable[[dict], None]


def pad_id_of(tokenizer: Any) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    return pad if pad is not None else tokenizer.eos_token_id


def tokenize_splits(splits: dict[str, Split], cfg: TrainConfig, tokenizer: Any,
                    emit: Emit) -> dict[str, list[TokenizedPair]]:
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


def data_hash(pairs: list[TokenizedPair]) -> str:
    data = hashlib.sha256()
    for p in pairs:
        for ids in (p.prompt_ids, p.chosen_ids, p.rejected_ids):
            data.update(np.asarray(ids, dtype=np.int64).tobytes() + b"|")
    return data.hexdigest()


def fingerprint(cfg: TrainConfig, train_pairs: list[TokenizedPair]) -> dict:
    """What a resumed run must share with the saved one: model, tokenized data, settings."""
    model_cfg = (resolve_model_path(cfg.model) / "config.json").read_bytes()
    settings = {k: v for k, v in to_dict(cfg).items() if k not in TrainConfig.RESUMABLE_CHANGES}
    return {"model": hashlib.sha256(model_cfg).hexdigest(), "data": data_hash(train_pairs), "settings": settings}


def reference_keys(cfg: TrainConfig, model_hash: str, splits: dict[str, list[TokenizedPair]]) -> dict[str, str]:
    """What reference log-probs depend on: the model as loaded, the starting adapter, the tokens."""
    start = "none"
    if cfg.init_adapter:
        start = hashlib.sha256((Path(cfg.init_adapter) / "adapters.safetensors").read_bytes()).hexdigest()
    base = f"{model_hash}|{cfg.quantize}|{cfg.q_group_size}|{start}"
    return {name: hashlib.sha256(f"{base}|{data_hash(pairs)}".encode()).hexdigest()
            for name, pairs in splits.items() if name in ("train", "valid")}


def check_resumable(saved: dict, now: dict, folder: Path) -> None:
    if saved.get("model") != now["model"]:
        raise UserError("cannot resume: this is not the model the run was trained on", file=str(folder))
    if saved.get("data") != now["data"]:
        raise UserError("cannot resume: the training data differs from the run's", file=str(folder))
    for key, value in now["settings"].items():
        old = saved.get("settings", {}).get(key)
        if old != value:
            raise UserError(f"cannot resume: --{key.replace('_', '-')} was {old!r}, now {value!r}", file=str(folder))


def preflight(model: Any, cfg: TrainConfig, pairs: list[TokenizedPair], emit: Emit) -> float:
    """Estimated peak GB; refuses (unless --force) when it exceeds what the machine can give."""
    seq_len = -(-max(p.length for p in pairs) // 8) * 8
    batch = min(cfg.batch_size, len(pairs))
    estimate = estimate_peak_bytes(model, batch, seq_len, cfg.grad_checkpoint, cfg.grad_accumulation_steps)
    limit = cfg.memory_limit_gb * GB if cfg.memory_limit_gb else available_bytes()
    if limit is not None and estimate > limit:
        fits = fitting_settings(model, cfg, seq_len, limit)
        hint = (f"settings that fit: {describe(fits)} (about {fits['estimate_gb']:.2f} GB)" if fits
                else "no batch size, checkpointing or length fits: use a smaller or more quantized model")
        text = f"estimated peak memory {estimate / GB:.2f} GB exceeds the {limit / GB:.2f} GB available; {hint}"
        if not cfg.force:
            raise UserError(f"{text}; --force to train anyway")
        emit({"event": "message", "level": "warning", "text": text})
    return estimate / GB


def keep_metrics_until(path: Path, step: int) -> None:
    """On resume the log must read as one run: drop events after the checkpoint and any torn last line."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("step", 0) <= step and event.get("event") != "done":
            kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def default_consumers(cfg: TrainConfig) -> list:
    if cfg.progress == "json":
        return [JsonLines()]
    if cfg.progress == "bar":
        return [ProgressBar(cfg.steps_per_report)]
    return []


def train(cfg: TrainConfig, on_event: Optional[Emit] = None) -> dict:
    """Train LoRA adapters with DPO; returns the final event (step, metrics, adapter path)."""
    validate(cfg)
    world = World()
    out = Path(cfg.adapter_path)
    resuming = bool(cfg.resume or cfg.resume_from)
    if holds_run(out) and not (resuming or cfg.overwrite):
        raise UserError("already holds a run: pass --resume to continue it or --overwrite to start over",
                        file=str(out))
    if resuming and not holds_run(out):
        raise UserError("nothing to resume: no run here", file=str(out))
    if cfg.resume and not cfg.resume_from and not (out / STATE_FILE).exists():
        if (out / "adapters.safetensors").exists():
            raise UserError("this run has no resumable checkpoint (trained elsewhere?); use --overwrite or "
                            "--init-adapter", file=str(out))
        resuming = False  # stopped before its first checkpoint: nothing to lose, start over
        cfg = dataclasses.replace(cfg, resume=False, overwrite=True)
    consumers = (default_consumers(cfg) + [on_event]) if world.is_main else []  # rank 0 reports
    emit = fanout(consumers)
    # Data first: its mistakes are the commonest and need no model loaded to be found.
    raw = load_splits(cfg.data, cfg.split, cfg.valid_split, cfg.test_split, cfg.columns, cfg.val_fraction, cfg.seed)
    model, tokenizer, _ = load_model(cfg.model, cfg.quantize, cfg.q_group_size)
    splits = tokenize_splits(raw, cfg, tokenizer, emit)
    print_ = fingerprint(cfg, splits["train"])
    state = None
    if resuming:
        saved = find_checkpoint(out, cfg.resume_from)
        check_resumable(saved.get("fingerprint", {}), print_, out)
        state = TrainerState.from_json(saved)

    import mlx.core as mx

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
    if state is not None:
        load_adapter_weights(model, out, checkpoint_name(state.step))
    estimate = preflight(model, cfg, splits["train"], emit)

    world.barrier()  # every rank has checked the folder before rank 0 writes to it
    if world.is_main:
        if cfg.overwrite:
            clear_run(out)
        out.mkdir(parents=True, exist_ok=True)
        write_adapter_config(out, to_dict(cfg), num_layers, params)
        if state is not None:
            keep_metrics_until(out / METRICS_FILE, state.step)
    world.barrier()
    if state is not None:
        emit({"event": "message", "level": "info", "text": f"resuming at step {state.step}"})
    else:
        state = TrainerState()
    state.fingerprint = print_
    if world.is_main:
        emit = fanout(consumers + [MetricsFile(out / METRICS_FILE)])
    emit({"event": "memory", "estimated_peak_gb": estimate})
    with graceful_stop(lambda text: emit({"event": "message", "level": "warning", "text": text})) as stop:
        trainer = Trainer(model, cfg, pad_id_of(tokenizer), out, emit, start_weights, stop, state)
        trainer.use_reference(len(splits["train"]), len(splits.get("valid", [])),
                              reference_keys(cfg, print_["model"], splits))
        return trainer.train(splits["train"], splits.get("valid", []))
