"""`data check`: what a dataset will look like to the trainer, before training."""

from __future__ import annotations

from typing import Any, TextIO

import numpy as np

from .config import DataConfig
from .data import Split, load_splits
from .tokenize import TokenizedPair, render, truncate, TokenizeReport


def length_stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "mean": 0.0, "p95": 0.0, "max": 0}
    a = np.asarray(values)
    return {"min": int(a.min()), "mean": float(a.mean()), "p95": float(np.percentile(a, 95)), "max": int(a.max())}


def check_split(split: Split, tokenizer: Any, cfg: DataConfig) -> dict:
    report = TokenizeReport()
    raw: list[TokenizedPair] = []
    kept: list[TokenizedPair] = []
    for pair in split.pairs:
        tp = render(pair, tokenizer, cfg.chat_template, report)
        raw.append(tp)
        cut = truncate(tp, cfg.max_length, cfg.max_prompt_length, cfg.truncation_mode, report)
        if cut is None:
            report.dropped_empty_completion += 1
            report.dropped_where.append(pair.where)
        else:
            kept.append(cut)
    report.kept = len(kept)
    return {
        "name": split.name,
        "files": split.files,
        "pairs": len(split.pairs),
        "identical_skipped": split.identical_skipped,
        "errors": split.errors,
        "pair_lengths": [t.length for t in raw],  # before truncation: what --max-length will cut
        "lengths": {k: length_stats([len(getattr(t, f"{k}_ids")) for t in raw]) for k in ("prompt", "chosen", "rejected")},
        "report": report,
        "first": (split.pairs[0], kept[0]) if split.pairs and kept else None,
    }


def load_for_check(cfg: DataConfig) -> dict[str, Split]:
    """All splits with every row error collected rather than raised."""
    return load_splits(cfg.data, cfg.split, cfg.valid_split, cfg.test_split, cfg.columns,
                       cfg.val_fraction, collect_errors=True)


def check_data(splits: dict[str, Split], tokenizer: Any, cfg: DataConfig) -> list[dict]:
    return [check_split(s, tokenizer, cfg) for s in splits.values()]


def print_report(results: list[dict], tokenizer: Any, cfg: DataConfig, out: TextIO) -> int:
    """Human-readable report; returns the number of errors found."""
    w = out.write
    w(f"{'split':<8}{'pairs':>7}{'identical':>11}{'errors':>8}  files\n")
    for r in results:
        w(f"{r['name']:<8}{r['pairs']:>7}{r['identical_skipped']:>11}{len(r['errors']):>8}  {', '.join(r['files'])}\n")
    for r in results:
        w(f"\ntoken lengths ({r['name']}):{'min':>8}{'mean':>8}{'p95':>8}{'max':>8}\n")
        for k, s in r["lengths"].items():
            w(f"  {k:<22}{s['min']:>8}{s['mean']:>8.1f}{s['p95']:>8.1f}{s['max']:>8}\n")
        for text in r["report"].messages(cfg.max_length):
            w(f"  {text}\n")
        if not r["report"].messages(cfg.max_length):
            w(f"  nothing truncated at --max-length {cfg.max_length} / --max-prompt-length {cfg.max_prompt_length}\n")
    first = next((r["first"] for r in results if r["first"]), None)
    if first:
        pair, tp = first
        w(f"\nfirst example ({pair.where}); the prompt is masked out of the loss:\n")
        for label, ids in (("prompt: masked", tp.prompt_ids), ("chosen: scored", tp.chosen_ids),
                           ("rejected: scored", tp.rejected_ids)):
            w(f"--- {label}, {len(ids)} tokens ---\n{tokenizer.decode(list(ids))}\n")
    errors = [e for r in results for e in r["errors"]]
    if errors:
        w(f"\n{len(errors)} error(s):\n")
        for e in errors:
            w(f"  {e}\n")
    return len(errors)
