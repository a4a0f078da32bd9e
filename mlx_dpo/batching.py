"""TokenizedPairs -> padded arrays: chosen and rejected stacked in one batch.

Rows 0..B-1 are the chosen sequences, rows B..2B-1 the rejected ones, so one
forward scores both, and row i and row i + B begin with the same prompt. Batches are grouped by length (little padding) and
their order shuffled by a seed, reproducibly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import mlx.core as mx
import numpy as np

from .tokenize import TokenizedPair

# How many batches' worth of rows are sorted together: large enough to make
# batches of similar lengths, small enough that every epoch still mixes.
GROUP_BATCHES = 16


@dataclass
class Batch:
    tokens: mx.array  # (2B, T) int32, right-padded
    mask: mx.array  # (2B, T) float32, 1 on completion tokens (the ones scored)
    indices: list[int]  # example indices of the B pairs, for the reference cache
    n_tokens: int  # real (unpadded) tokens in the batch, for throughput
    # The scored positions, flattened over (row, position) of tokens[:, :-1]; the fused
    # log-prob head reads only these.
    score_index: mx.array
    score_targets: mx.array
    score_rows: mx.array
    counts: mx.array  # (2B,) scored tokens per row
    # Leading positions that row i and row i + B share (prompt), less the one whose output
    # scores the first answer token: the body may run them once per pair (prefix.py).
    prefix: int = 0

    @property
    def pairs(self) -> int:
        return len(self.indices)


def batch_order(lengths: Sequence[int], batch_size: int, seed: int = 0, epoch: int = 0,
                shuffle: bool = True) -> list[list[int]]:
    """Example indices per batch: length-grouped; shuffled by (seed, epoch) when `shuffle`."""
    n = len(lengths)
    if not shuffle:
        order = sorted(range(n), key=lambda i: lengths[i])
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n).tolist()
    group = batch_size * GROUP_BATCHES
    batches = []
    for g in range(0, n, group):
        chunk = sorted(perm[g:g + group], key=lambda i: lengths[i], reverse=True)
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches)).tolist()]


def collate(pairs: Sequence[TokenizedPair], indices: list[int], pad_id: int,
            pad_to_multiple: int = 8) -> Batch:
    seqs = [p.prompt_ids + p.chosen_ids for p in pairs] + [p.prompt_ids + p.rejected_ids for p in pairs]
    prompt_lens = [len(p.prompt_ids) for p in pairs] * 2
    longest = max(len(s) for s in seqs)
    width = -(-longest // pad_to_multiple) * pad_to_multiple
    tokens = np.full((len(seqs), width), pad_id, dtype=np.int32)
    mask = np.zeros((len(seqs), width), dtype=np.float32)
    for row, (seq, plen) in enumerate(zip(seqs, prompt_lens)):
        tokens[row, :len(seq)] = seq
        mask[row, plen:len(seq)] = 1.0
    scored = mask[:, 1:]
    rows, cols = np.nonzero(scored)
    return Batch(mx.array(tokens), mx.array(mask), list(indices), sum(len(s) for s in seqs),
                 score_index=mx.array((rows * (width - 1) + cols).astype(np.int32)),
                 score_targets=mx.array(tokens[rows, cols + 1]),
                 score_rows=mx.array(rows.astype(np.int32)),
                 counts=mx.array(scored.sum(axis=1)), prefix=max(0, min(prompt_lens) - 1))


def iterate_batches(pairs: Sequence[TokenizedPair], batch_size: int, pad_id: int, seed: int = 0,
                    epoch: int = 0, shuffle: bool = True) -> Iterator[Batch]:
    order = batch_order([p.length for p in pairs], batch_size, seed, epoch, shuffle)
    for idx in order:
        yield collate([pairs[i] for i in idx], idx, pad_id)
