"""The `eval` command: score held-out pairs with the base and the tuned model, report both."""

from __future__ import annotations

import json
import sys

import numpy as np
from typing import Any, TextIO

from .config import EvalConfig
from .data import load_splits
from .errors import UserError
from .evaluate import evaluate_pairs
from .model import load_tuned
from .reference import ReferenceCache
from .run import pad_id_of
from .tokenize import tokenize_pairs

# What an adapter's saved run config supplies to eval unless a flag overrides it.
INHERITED = ("data", "split", "valid_split", "test_split", "columns", "chat_template", "max_length",
             "max_prompt_length", "truncation_mode", "loss_type", "beta", "label_smoothing", "dpop_lambda",
             "sft_weight")


def evaluate(cfg: EvalConfig, progress: bool = True) -> dict[str, Any]:
    splits = load_splits(cfg.data, cfg.split, cfg.valid_split, cfg.test_split, cfg.columns)
    if cfg.eval_split not in splits:
        others = ", ".join(sorted(splits))
        raise UserError(f"no '{cfg.eval_split}' split here (have: {others}); pick one with --eval-split", file=cfg.data)
    loaded = load_tuned(cfg.model, cfg.adapter_path)
    model, tokenizer, start = loaded.model, loaded.tokenizer, loaded.reference_weights
    pairs, _ = tokenize_pairs(splits[cfg.eval_split].pairs, tokenizer, cfg.max_length, cfg.max_prompt_length,
                              cfg.truncation_mode, cfg.chat_template)
    if not pairs:
        raise UserError(f"the '{cfg.eval_split}' split has no usable pairs", file=cfg.data)
    bar = None
    if progress:
        from tqdm import tqdm

        n_batches = -(-len(pairs) // cfg.batch_size)
        total = n_batches if cfg.max_batches == -1 else min(cfg.max_batches, n_batches)
        bar = tqdm(total=total, desc="scoring", unit="batch", file=sys.stderr, leave=False)
    ref = ReferenceCache(model, start) if cfg.adapter_path else None
    tuned = evaluate_pairs(model, pairs, ref, cfg, cfg.batch_size, pad_id_of(tokenizer), cfg.max_batches,
                           on_batch=bar.update if bar else None)
    if bar:
        bar.close()
    result: dict[str, Any] = {"split": cfg.eval_split, "pairs": len(pairs), "model": cfg.model,
                              "adapter_path": cfg.adapter_path, "loss_type": cfg.loss_type, "beta": cfg.beta}
    if ref is None:
        result["base"] = {"likelihood_accuracy": tuned["logps/accuracies"], "logps/chosen": tuned["logps/chosen"],
                          "logps/rejected": tuned["logps/rejected"]}
        return result
    seen = ~np.isnan(ref.chosen)
    base_acc = float((ref.chosen[seen] > ref.rejected[seen]).mean())
    result["base"] = {"likelihood_accuracy": base_acc, "logps/chosen": tuned["ref_logps/chosen"],
                      "logps/rejected": tuned["ref_logps/rejected"]}
    result["tuned"] = {
        "preference_accuracy": tuned["rewards/accuracies"],
        "likelihood_accuracy": tuned["logps/accuracies"],
        "reward_margin": tuned["rewards/margins"],
        "loss": tuned["loss"],
        "logps/chosen": tuned["logps/chosen"],
        "logps/rejected": tuned["logps/rejected"],
        "kl/chosen": tuned["kl/chosen"],
        "kl/rejected": tuned["kl/rejected"],
    }
    return result


ROWS = (
    ("preference accuracy", "preference_accuracy", "tuned model's implicit reward prefers chosen (win-rate over base)"),
    ("likelihood accuracy", "likelihood_accuracy", "chosen more likely than rejected outright"),
    ("reward margin", "reward_margin", "mean beta * (log-ratio chosen - log-ratio rejected)"),
    ("DPO loss", "loss", ""),
    ("log-prob chosen", "logps/chosen", "sum over answer tokens, mean over pairs"),
    ("log-prob rejected", "logps/rejected", ""),
    ("KL chosen", "kl/chosen", "per token, tuned against base"),
    ("KL rejected", "kl/rejected", ""),
)


def print_table(result: dict, out: TextIO) -> None:
    w = out.write
    w(f"{result['pairs']} pairs from the {result['split']} split; loss {result['loss_type']}, beta {result['beta']}\n")
    w(f"{'metric':<22}{'base':>10}{'tuned':>10}\n")
    for label, key, note in ROWS:
        base = result["base"].get(key)
        tuned = result.get("tuned", {}).get(key)
        if base is None and tuned is None:
            continue
        cells = "".join(f"{v:>10.3f}" if v is not None else f"{'-':>10}" for v in (base, tuned))
        w(f"{label:<22}{cells}  {note}\n")
    if "tuned" not in result:
        w("no --adapter-path: showing where the base model starts\n")


def report(cfg: EvalConfig, out: TextIO | None = None) -> dict:
    out = out or sys.stdout
    result = evaluate(cfg, progress=not cfg.json)
    if cfg.json:
        out.write(json.dumps(result, indent=2) + "\n")
    else:
        print_table(result, out)
    return result
