"""The DPO training loop: optimizer, schedule, accumulation, validation, checkpoints.

It emits events (plain dicts with stable keys) and never prints; the CLI's
progress bar, metrics.jsonl and the TUI all read the same events.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map

from .checkpoint import save_adapters
from .config import TrainConfig
from .errors import UserError
from .evaluate import batch_loss, evaluate_pairs
from .reference import ReferenceCache
from .tokenize import TokenizedPair

Emit = Callable[[dict], None]


class TrainingDiverged(UserError):
    """The loss or gradient stopped being a finite number; the update was not applied."""


def total_steps(n_pairs: int, cfg: TrainConfig) -> int:
    if cfg.iters:
        return cfg.iters
    batches = math.ceil(n_pairs / cfg.batch_size)
    return max(1, math.ceil(batches / cfg.grad_accumulation_steps)) * cfg.epochs


def lr_schedule(cfg: TrainConfig, steps: int) -> Callable[[mx.array], mx.array] | float:
    decay_steps = max(1, steps - cfg.warmup_steps)
    if cfg.lr_schedule == "cosine":
        decay = optim.cosine_decay(cfg.learning_rate, decay_steps, end=0.0)
    elif cfg.lr_schedule == "linear":
        decay = optim.linear_schedule(cfg.learning_rate, 0.0, decay_steps)
    else:
        decay = lambda _: mx.array(cfg.learning_rate, dtype=mx.float32)  # noqa: E731
    if cfg.warmup_steps <= 0:
        return decay
    warmup = optim.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps)
    return optim.join_schedules([warmup, decay], [cfg.warmup_steps])


def global_norm(grads: dict) -> mx.array:
    return mx.sqrt(sum((g.astype(mx.float32) ** 2).sum() for _, g in tree_flatten(grads)))


def enable_grad_checkpoint(model: nn.Module) -> None:
    from mlx_lm.tuner.trainer import grad_checkpoint

    grad_checkpoint(model.layers[0])


class Trainer:
    def __init__(self, model: nn.Module, cfg: TrainConfig, pad_id: int, out: Path, emit: Emit,
                 start_weights: Optional[dict] = None):
        self.model, self.cfg, self.pad_id, self.out, self.emit = model, cfg, pad_id, out, emit
        self.start_weights = start_weights
        needs_ref = cfg.loss_type != "sft"
        self.ref_train = ReferenceCache(model, start_weights) if needs_ref else None
        self.ref_valid = ReferenceCache(model, start_weights) if needs_ref else None
        self.bco_sum, self.bco_count = 0.0, 0
        self.best_val_loss = math.inf
        self.loss_and_grad = nn.value_and_grad(model, batch_loss)

    def validate(self, step: int, valid: Sequence[TokenizedPair]) -> dict:
        cfg = self.cfg
        metrics = evaluate_pairs(self.model, valid, self.ref_valid, cfg, cfg.batch_size, self.pad_id,
                                 cfg.val_batches)
        event = {"event": "eval", "step": step, **metrics}
        if metrics and metrics["loss"] < self.best_val_loss:
            self.best_val_loss = metrics["loss"]
            save_adapters(self.model, self.out, best=True)
            event["best"] = True
        self.emit(event)
        return metrics

    def train(self, train: Sequence[TokenizedPair], valid: Sequence[TokenizedPair]) -> dict:
        from .batching import iterate_batches

        cfg, model = self.cfg, self.model
        steps = total_steps(len(train), cfg)
        optimizer = optim.AdamW(learning_rate=lr_schedule(cfg, steps), weight_decay=cfg.weight_decay)
        if cfg.grad_checkpoint:
            enable_grad_checkpoint(model)
        model.train()
        self.emit({"event": "start", "total_steps": steps, "train_pairs": len(train), "valid_pairs": len(valid),
                   "trainable_parameters": sum(v.size for _, v in tree_flatten(model.trainable_parameters()))})
        step, epoch, micro = 0, 0, 0
        grads_acc, metrics_acc, tokens, started = None, None, 0, time.perf_counter()
        tic = time.perf_counter()
        last: dict = {}
        while step < steps:
            for batch in iterate_batches(train, cfg.batch_size, self.pad_id, cfg.seed, epoch):
                rc, rr = self.ref_train(batch) if self.ref_train else (None, None)
                delta = self.bco_sum / self.bco_count if self.bco_count else 0.0
                (loss, metrics), grads = self.loss_and_grad(model, batch.tokens, batch.mask, rc, rr, cfg, delta)
                grads_acc = grads if grads_acc is None else tree_map(mx.add, grads_acc, grads)
                metrics_acc = metrics if metrics_acc is None else tree_map(mx.add, metrics_acc, metrics)
                tokens += batch.n_tokens
                micro += 1
                if micro % cfg.grad_accumulation_steps:
                    mx.eval(grads_acc, metrics_acc)
                    continue
                k = cfg.grad_accumulation_steps
                grads = tree_map(lambda g: g / k, grads_acc) if k > 1 else grads_acc
                metrics = {name: v / k for name, v in metrics_acc.items()}
                norm = global_norm(grads)
                if cfg.grad_clip is not None:
                    grads, _ = optim.clip_grad_norm(grads, cfg.grad_clip)
                mx.eval(grads, metrics, norm)
                step += 1
                if not (math.isfinite(metrics["loss"].item()) and math.isfinite(norm.item())):
                    raise TrainingDiverged(
                        f"loss or gradient is not a finite number at step {step}; the update was not applied "
                        f"and the last saved adapters are kept. Try a lower --learning-rate or --beta.",
                        file=str(self.out))
                optimizer.update(model, grads)
                mx.eval(model.trainable_parameters(), optimizer.state)
                grads_acc, metrics_acc = None, None
                elapsed = time.perf_counter() - tic
                last = {name: v.item() for name, v in metrics.items()}
                if cfg.loss_type == "bco_pair":
                    self.bco_sum += (last["rewards/chosen"] + last["rewards/rejected"]) / 2
                    self.bco_count += 1
                self.emit({"event": "train", "step": step, "total_steps": steps, "epoch": epoch + 1, **last,
                           "learning_rate": float(optimizer.learning_rate.item()), "grad_norm": norm.item(),
                           "tokens_per_second": tokens / max(elapsed, 1e-9),
                           "peak_memory_gb": mx.get_peak_memory() / 1e9,
                           "elapsed_s": time.perf_counter() - started})
                if valid and (step % cfg.steps_per_eval == 0 or step == steps):
                    self.validate(step, valid)
                if step % cfg.save_every == 0 and step != steps:
                    paths = save_adapters(model, self.out, step=step)
                    self.emit({"event": "save", "step": step, "path": str(paths[-1])})
                tokens, tic = 0, time.perf_counter()
                if step >= steps:
                    break
            epoch += 1
        paths = save_adapters(model, self.out, step=step)
        self.emit({"event": "save", "step": step, "path": str(paths[-1])})
        summary = {"event": "done", "step": step, "adapter_path": str(self.out), **last}
        if math.isfinite(self.best_val_loss):
            summary["best_val_loss"] = self.best_val_loss
        self.emit(summary)
        return summary
