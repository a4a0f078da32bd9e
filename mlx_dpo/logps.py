"""Per-sequence log-probabilities of the completion tokens, one forward per batch.

Logits at position t score token t+1; prompt and padding positions are not
scored. Chosen and rejected rows come stacked in one batch, so one forward
scores both.

The fused head never materializes batch x length x vocabulary logits: it
takes the final hidden states of the scored positions only and computes
log p(target) = logit(target) - logsumexp(logits) a chunk of positions at a
time, with its own gradient that recomputes each chunk's logits. Chunks are
chained with `mx.depends`: MLX evaluates lazily, and unchained chunks could
all be alive at once. Models whose forward is not "body, then a linear head"
fall back to full logits.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import mlx.core as mx
import mlx.nn as nn

# Elements of one chunk's float32 logits: about 16 MB, whatever the vocabulary.
CHUNK_ELEMENTS = 4_000_000


def token_logps(logits: mx.array, targets: mx.array) -> mx.array:
    """log p(target) at every position, in float32 whatever the model's dtype."""
    logits = logits.astype(mx.float32)
    picked = mx.take_along_axis(logits, targets[..., None], axis=-1).squeeze(-1)
    return picked - mx.logsumexp(logits, axis=-1)


def chunked_logp(head: Callable[[mx.array], mx.array], hidden: mx.array, targets: mx.array,
                 chunk: int) -> mx.array:
    """log p(targets) for (N, H) hidden states through `head`, `chunk` rows at a time."""

    def logits_of(x: mx.array) -> mx.array:
        return head(x).astype(mx.float32)

    @mx.custom_function
    def fused(h: mx.array, t: mx.array) -> mx.array:
        outs, prev = [], None
        for s in range(0, h.shape[0], chunk):
            hc = h[s:s + chunk] if prev is None else mx.depends(h[s:s + chunk], prev)
            prev = token_logps(logits_of(hc), t[s:s + chunk])
            outs.append(prev)
        return mx.concatenate(outs)

    @fused.vjp
    def fused_vjp(primals, cotangent, _output):
        h, t = primals
        grads, prev = [], None
        for s in range(0, h.shape[0], chunk):
            hc = h[s:s + chunk] if prev is None else mx.depends(h[s:s + chunk], prev)
            tc, gc = t[s:s + chunk], cotangent[s:s + chunk]
            # d log p(t) / d logits = onehot(t) - softmax(logits)
            dlogits = -mx.softmax(logits_of(hc), axis=-1) * gc[:, None]
            dlogits = mx.put_along_axis(dlogits, tc[:, None], mx.take_along_axis(dlogits, tc[:, None], -1)
                                        + gc[:, None], axis=-1)
            _, (dh,) = mx.vjp(logits_of, [hc], [dlogits])
            prev = dh
            grads.append(dh)
        return mx.concatenate(grads).astype(h.dtype), mx.zeros_like(t)

    return fused(hidden, targets)


def split_model(model: nn.Module) -> Optional[tuple[Callable, Callable]]:
    """(body, head) for models that compute `head(body(x))`: llama, qwen2, mistral and kin."""
    inner = model.get("model") if isinstance(model, dict) else None
    args = getattr(model, "args", None)
    if inner is None or args is None or not hasattr(inner, "embed_tokens"):
        return None
    if "lm_head" in model:
        return inner, model["lm_head"]
    if getattr(args, "tie_word_embeddings", False):
        return inner, inner.embed_tokens.as_linear
    return None


class LogpScorer:
    """Picks the fused head when it reproduces the model's own logits, else full logits."""

    def __init__(self, model: nn.Module):
        self.parts = split_model(model)
        if self.parts is not None and not self._agrees(model):
            self.parts = None

    @property
    def fused(self) -> bool:
        return self.parts is not None

    def _agrees(self, model: nn.Module) -> bool:
        probe = mx.array([[1, 2, 3, 4, 5, 6, 7, 8]]) % model.args.vocab_size
        body, head = self.parts
        return bool(mx.allclose(head(body(probe)), model(probe), atol=1e-3, rtol=1e-3).item())

    def __call__(self, model: nn.Module, batch: Any) -> tuple[mx.array, mx.array]:
        """(sum of completion-token log-probs, completion token count) per row of a stacked batch."""
        if self.parts is None:
            return full_logits_logps(model, batch.tokens, batch.mask)
        body, head = self.parts
        hidden = body(batch.tokens[:, :-1])
        scored = mx.take(hidden.reshape(-1, hidden.shape[-1]), batch.score_index, axis=0)
        vocab = model.args.vocab_size
        lp = chunked_logp(head, scored, batch.score_targets, max(8, CHUNK_ELEMENTS // vocab))
        sums = mx.zeros((batch.tokens.shape[0],), dtype=mx.float32).at[batch.score_rows].add(lp)
        return sums, batch.counts


def full_logits_logps(model: nn.Module, tokens: mx.array, mask: mx.array) -> tuple[mx.array, mx.array]:
    """The plain way: full logits everywhere, then mask."""
    inputs, targets, scored = tokens[:, :-1], tokens[:, 1:], mask[:, 1:]
    lp = token_logps(model(inputs), targets)
    return (lp * scored).sum(axis=-1), scored.sum(axis=-1)


def split_pairs(values: mx.array) -> tuple[mx.array, mx.array]:
    """Stacked (2B,) values -> (chosen (B,), rejected (B,))."""
    half = values.shape[0] // 2
    return values[:half], values[half:]
