"""The DPO training loop: optimizer, schedule, accumulation, validation, checkpoints.

It emits events (plain dicts with stable keys) and never prints; the CLI's
progress bar, metrics.jsonl and the TUI all read the same events.

Everything that decides what happens next lives in `TrainerState` and the
optimizer state, both saved at every checkpoint, and the randomness of a
batch is seeded from (seed, batch number): a resumed run repeats the
uninterrupted one step for step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map, tree_unflatten

from .batching import batch_order, collate
from .checkpoint import STATE_FILE, checkpoint_name, optimizer_name, save_adapters, save_checkpoint
from .config import TrainConfig
from .distributed import World
from .errors import UserError
from .evaluate import batch_loss, evaluate_pairs
from .logps import LogpScorer
from .recompute import recomputing
from .reference import ReferenceCache
from .tokenize import TokenizedPair

Emit = Callable[[dict], None]


class TrainingDiverged(UserError):
    """The loss or gradient stopped being a finite number; the update was not applied."""


class TrainingInterrupted(Exception):
    """A stop was asked for (Ctrl-C, SIGTERM); a checkpoint was saved first."""

    def __init__(self, signum: int, step: int, folder: Path):
        self.signum, self.step, self.folder = signum, step, folder
        super().__init__(f"stopped at step {step}; checkpoint saved in {folder}")


@dataclass
class TrainerState:
    step: int = 0  # optimizer updates done
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already consumed
    batches_seen: int = 0  # over the whole run; seeds each batch's randomness
    best_val_loss: float = math.inf
    bco_sum: float = 0.0
    bco_count: int = 0
    fingerprint: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["best_val_loss"] = None if math.isinf(self.best_val_loss) else self.best_val_loss
        return d

    @classmethod
    def from_json(cls, d: dict) -> "TrainerState":
        d = dict(d)
        d["best_val_loss"] = math.inf if d.get("best_val_loss") is None else d["best_val_loss"]
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


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


def never_stop() -> Optional[int]:
    return None


class Trainer:
    def __init__(self, model: nn.Module, cfg: TrainConfig, pad_id: int, out: Path, emit: Emit,
                 start_weights: Optional[dict] = None, should_stop: Callable[[], Optional[int]] = never_stop,
                 state: Optional[TrainerState] = None):
        self.model, self.cfg, self.pad_id, self.out, self.emit = model, cfg, pad_id, out, emit
        self.start_weights, self.should_stop = start_weights, should_stop
        self.state = state or TrainerState()
        # Block checkpointing cannot carry the prompt's KV cache through `mx.checkpoint`.
        self.scorer = LogpScorer(model, share_prompt=cfg.share_prompt and not cfg.grad_checkpoint)
        self.ref_train: Optional[ReferenceCache] = None
        self.ref_valid: Optional[ReferenceCache] = None
        self.loss_and_grad = nn.value_and_grad(model, batch_loss)
        self.optimizer: Optional[optim.Optimizer] = None
        self.world = World()

    def use_reference(self, train_size: int, valid_size: int, keys: Optional[dict] = None) -> None:
        """Reference caches per split, kept in the run folder under `keys` (none for SFT)."""
        if self.cfg.loss_type == "sft":
            return
        keys = keys or {}
        for split, size in (("train", train_size), ("valid", valid_size)):
            # Each rank caches the examples it scores.
            suffix = f".rank{self.world.rank}" if self.world.size > 1 else ""
            path = self.out / f"ref_logps_{split}{suffix}.safetensors" if split in keys else None
            cache = ReferenceCache(self.model, self.start_weights, size, path, keys.get(split, ""), self.scorer)
            setattr(self, f"ref_{split}", cache)

    def validate(self, valid: Sequence[TokenizedPair]) -> dict:
        cfg, state = self.cfg, self.state
        metrics = evaluate_pairs(self.model, valid, self.ref_valid, cfg, cfg.batch_size, self.pad_id,
                                 cfg.val_batches)
        event = {"event": "eval", "step": state.step, **metrics}
        if metrics and metrics["loss"] < state.best_val_loss:
            state.best_val_loss = metrics["loss"]
            if self.world.is_main:
                save_adapters(self.model, self.out, best=True)
            event["best"] = True
        self.emit(event)
        return metrics

    def checkpoint(self) -> Path:
        for cache in (self.ref_train, self.ref_valid):
            if cache is not None:
                cache.save()
        path = self.out / checkpoint_name(self.state.step)
        if self.world.is_main:
            save_checkpoint(self.model, self.optimizer.state, self.state.to_json(), self.out)
        self.world.barrier()  # no rank runs ahead of a checkpoint it may need on resume
        self.emit({"event": "save", "step": self.state.step, "path": str(path)})
        return path

    def restore_optimizer(self) -> None:
        """Optimizer moments, step count and so the schedule position, from the checkpoint being resumed."""
        saved = mx.load(str(self.out / optimizer_name(self.state.step)))
        self.optimizer.init(self.model.trainable_parameters())
        self.optimizer.state = tree_unflatten(list(saved.items()))

    def step_batch(self, batch) -> tuple[dict, dict]:
        cfg, state = self.cfg, self.state
        mx.random.seed(cfg.seed * 1_000_003 + state.batches_seen)  # dropout masks, independent of history
        rc, rr = self.ref_train(batch) if self.ref_train else (None, None)
        delta = state.bco_sum / state.bco_count if state.bco_count else 0.0
        (_, metrics), grads = self.loss_and_grad(self.model, batch, self.scorer, rc, rr, cfg, delta)
        # Evaluated here, on their own: evaluated later together with the clipping and the update, MLX
        # schedules the graph so that far more of the forward is alive at once (measured: with
        # --grad-checkpoint 40 MB per block instead of 14 at 512 tokens of Qwen2.5-0.5B).
        mx.eval(grads, metrics)
        return metrics, grads

    def train(self, train: Sequence[TokenizedPair], valid: Sequence[TokenizedPair]) -> dict:
        cfg, model, state = self.cfg, self.model, self.state
        if self.ref_train is None and cfg.loss_type != "sft":
            self.use_reference(len(train), len(valid))
        if cfg.precompute_ref and self.ref_train is not None:
            for split, pairs, cache in (("train", train, self.ref_train), ("valid", valid, self.ref_valid)):
                if pairs:
                    cache.precompute(pairs, cfg.batch_size, self.pad_id, lambda i, n, s=split: self.emit(
                        {"event": "reference", "split": s, "batch": i, "batches": n}))
        steps = total_steps(len(train), cfg)
        self.optimizer = optim.AdamW(learning_rate=lr_schedule(cfg, steps), weight_decay=cfg.weight_decay)
        if state.step:
            self.restore_optimizer()
        model.train()
        self.emit({"event": "start", "total_steps": steps, "step": state.step, "train_pairs": len(train),
                   "valid_pairs": len(valid),
                   "trainable_parameters": sum(v.size for _, v in tree_flatten(model.trainable_parameters()))})
        with recomputing(model, cfg.grad_checkpoint):
            return self._loop(train, valid, steps)

    def _loop(self, train: Sequence[TokenizedPair], valid: Sequence[TokenizedPair], steps: int) -> dict:
        cfg, state = self.cfg, self.state
        lengths = [p.length for p in train]
        k = cfg.grad_accumulation_steps
        grads_acc, metrics_acc, micro, tokens = None, None, 0, 0
        started = tic = time.perf_counter()
        last: dict = {}
        saved_at = state.step
        while state.step < steps:
            order = batch_order(lengths, cfg.batch_size, cfg.seed, state.epoch)
            while state.batch_in_epoch < len(order) and state.step < steps:
                idx, owned = self.world.my_pairs(order[state.batch_in_epoch])
                batch = collate([train[i] for i in idx], idx, self.pad_id)
                metrics, grads = self.world.mean(self.step_batch(batch), owned)
                grads_acc = grads if grads_acc is None else tree_map(mx.add, grads_acc, grads)
                metrics_acc = metrics if metrics_acc is None else tree_map(mx.add, metrics_acc, metrics)
                tokens += batch.n_tokens if owned else 0
                micro += 1
                state.batch_in_epoch += 1
                state.batches_seen += 1
                if micro % k:
                    mx.eval(grads_acc, metrics_acc)
                    continue
                last = self.update(grads_acc, metrics_acc, k)
                grads_acc, metrics_acc = None, None
                elapsed = time.perf_counter() - tic
                self.emit({"event": "train", "step": state.step, "total_steps": steps, "epoch": state.epoch + 1,
                           **last, "learning_rate": float(self.optimizer.learning_rate.item()),
                           "tokens_per_second": self.world.total(tokens) / max(elapsed, 1e-9),
                           "peak_memory_gb": mx.get_peak_memory() / 1e9,
                           "elapsed_s": time.perf_counter() - started})
                if valid and (state.step % cfg.steps_per_eval == 0 or state.step == steps):
                    self.validate(valid)
                if state.step % cfg.save_every == 0 or state.step == steps:
                    self.checkpoint()
                    saved_at = state.step
                signum = self.should_stop()
                if self.world.total(signum or 0):  # every rank stops at the same step
                    signum = signum or 15
                    if saved_at != state.step:
                        self.checkpoint()
                    raise TrainingInterrupted(signum, state.step, self.out)
                tokens, tic = 0, time.perf_counter()
            if state.batch_in_epoch >= len(order):
                state.epoch += 1
                state.batch_in_epoch = 0
        summary = {"event": "done", "step": state.step, "adapter_path": str(self.out), **last}
        if math.isfinite(state.best_val_loss):
            summary["best_val_loss"] = state.best_val_loss
        self.emit(summary)
        return summary

    def update(self, grads: dict, metrics: dict, k: int) -> dict:
        """Average, clip, check and apply one optimizer update; returns the step's metrics."""
        cfg, state = self.cfg, self.state
        if k > 1:
            grads = tree_map(lambda g: g / k, grads)
            metrics = {name: v / k for name, v in metrics.items()}
        norm = global_norm(grads)
        if cfg.grad_clip is not None:
            grads, _ = optim.clip_grad_norm(grads, cfg.grad_clip)
        mx.eval(grads, metrics, norm)
        values = {name: v.item() for name, v in metrics.items()}
        values["grad_norm"] = norm.item()
        if not all(math.isfinite(values[n]) for n in ("loss", "grad_norm")):
            raise TrainingDiverged(
                f"loss or gradient is not a finite number at step {state.step + 1}; the update was not applied "
                f"and the last checkpoint (step {self._last_saved()}) is kept. Try a lower --learning-rate.",
                file=str(self.out))
        self.optimizer.update(self.model, grads)
        mx.eval(self.model.trainable_parameters(), self.optimizer.state)
        state.step += 1
        if cfg.loss_type == "bco_pair":
            state.bco_sum += (values["rewards/chosen"] + values["rewards/rejected"]) / 2
            state.bco_count += 1
        return values

    def _last_saved(self) -> int:
        pointer = self.out / STATE_FILE
        return json.loads(pointer.read_text())["step"] if pointer.is_file() else 0
