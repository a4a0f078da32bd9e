"""Per-sequence log-probabilities of the completion tokens, one forward per batch.

Logits at position t score token t+1; prompt and padding positions are not
scored. Chosen and rejected rows come stacked in one batch, so one forward
scores both.

The fused head never materializes batch x length x vocabulary logits: it
takes the final hidden states of the scored positions only and computes
log p(target) = logit(target) - logsumexp(logits) a chunk of positions at a
time; under training it also prepares each chunk's gradient while the
chunk's logits exist, so the backward never recomputes them. Chunks are
chained with `mx.depends`: MLX evaluates lazily, and unchained chunks could
all be alive at once. Models whose forward is not "body, then a linear head"
fall back to full logits.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .prefix import MIN_PREFIX, shared_prefix_hidden, shares_prompt

# Elements of one chunk's float32 logits: about 16 MB, whatever the vocabulary.
CHUNK_ELEMENTS = 4_000_000


def token_logps(logits: mx.array, targets: mx.array) -> mx.array:
    """log p(target) at every position, in float32 whatever the model's dtype."""
    logits = logits.astype(mx.float32)
    picked = mx.take_along_axis(logits, targets[..., None], axis=-1).squeeze(-1)
    return picked - mx.logsumexp(logits, axis=-1)


def chunked_logp(head: Callable[[mx.array], mx.array], hidden: mx.array, targets: mx.array,
                 chunk: int, grad: bool = True) -> mx.array:
    """log p(targets) for (N, H) hidden states through `head`, `chunk` rows at a time.

    With `grad`, each chunk's gradient with respect to its hidden states is computed in the
    forward, while that chunk's logits are at hand, for a unit cotangent; the backward only
    scales it. That costs one product with the head's weight per chunk instead of two (a
    backward that recomputed the logits), and the saved gradient is N x H, not N x vocabulary.
    Gradients reach the hidden states only: the head's own weights must be frozen.
    """

    def logits_of(x: mx.array) -> mx.array:
        return head(x).astype(mx.float32)

    if not grad:
        outs, prev = [], None
        for s in range(0, hidden.shape[0], chunk):
            hc = hidden[s:s + chunk] if prev is None else mx.depends(hidden[s:s + chunk], prev)
            prev = token_logps(logits_of(hc), targets[s:s + chunk])
            outs.append(prev)
        return mx.concatenate(outs)

    @mx.custom_function
    def fused(h: mx.array, t: mx.array) -> tuple[mx.array, mx.array]:
        outs, units, prev = [], [], None
        for s in range(0, h.shape[0], chunk):
            # Both results of a chunk gate the next one, so its logits are freed before the next's exist.
            hc = h[s:s + chunk] if prev is None else mx.depends([h[s:s + chunk]], prev)[0]
            tc = t[s:s + chunk, None]
            logits = logits_of(hc)
            lse = mx.logsumexp(logits, axis=-1, keepdims=True)
            # d log p(t) / d logits = onehot(t) - softmax(logits)
            dlogits = -mx.exp(logits - lse)
            dlogits = mx.put_along_axis(dlogits, tc, mx.take_along_axis(dlogits, tc, -1) + 1, axis=-1)
            _, (unit,) = mx.vjp(logits_of, [hc], [dlogits])
            prev = [(mx.take_along_axis(logits, tc, -1) - lse).squeeze(-1), unit]
            outs.append(prev[0])
            units.append(unit)
        return mx.concatenate(outs), mx.concatenate(units)

    @fused.vjp
    def fused_vjp(primals, cotangents, outputs):
        h, t = primals
        return (outputs[1] * cotangents[0][:, None]).astype(h.dtype), mx.zeros_like(t)

    return fused(hidden, targets)[0]


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

    def __init__(self, model: nn.Module, share_prompt: bool = True):
        self.parts = split_model(model)
        if self.parts is not None and not self._agrees(model):
            self.parts = None
        self.share_prompt = share_prompt and self.parts is not None and shares_prompt(model, self.parts[0])

    @property
    def fused(self) -> bool:
        return self.parts is not None

    def _agrees(self, model: nn.Module) -> bool:
        probe = mx.array([[1, 2, 3, 4, 5, 6, 7, 8]]) % model.args.vocab_size
        body, head = self.parts
        was_training = model.training
        model.eval()  # with LoRA dropout on, two forwards differ: a resumed run fell back to full logits
        try:
            return bool(mx.allclose(head(body(probe)), model(probe), atol=1e-3, rtol=1e-3).item())
        finally:
            model.train(was_training)

    def __call__(self, model: nn.Module, batch: Any, grad: bool = True) -> tuple[mx.array, mx.array]:
        """(sum of completion-token log-probs, completion token count) per row of a stacked batch.

        `grad=False` where no gradient will be taken (reference, evaluation): the head then skips
        preparing one.
        """
        if self.parts is None or (grad and not head_frozen(model)):
            return full_logits_logps(model, batch.tokens, batch.mask)
        body, head = self.parts
        k = batch.prefix if self.share_prompt and batch.prefix >= MIN_PREFIX else 0
        if k:
            hidden = shared_prefix_hidden(model, body, batch.tokens[:, :-1], k)
            index = batch.score_index - k * (batch.score_rows + 1)  # (row, col) of the rows without their prefix
        else:
            hidden, index = body(batch.tokens[:, :-1]), batch.score_index
        scored = mx.take(hidden.reshape(-1, hidden.shape[-1]), index, axis=0)
        vocab = model.args.vocab_size
        lp = chunked_logp(head, scored, batch.score_targets, max(8, CHUNK_ELEMENTS // vocab), grad)
        sums = mx.zeros((batch.tokens.shape[0],), dtype=mx.float32).at[batch.score_rows].add(lp)
        return sums, batch.counts


def head_frozen(model: nn.Module) -> bool:
    """Whether the output head trains: the fused head passes no gradient to its own weights."""
    inner = model["model"]
    head = model["lm_head"] if "lm_head" in model else inner.embed_tokens
    return not tree_flatten(head.trainable_parameters())


def full_logits_logps(model: nn.Module, tokens: mx.array, mask: mx.array) -> tuple[mx.array, mx.array]:
    """The plain way: full logits everywhere, then mask."""
    inputs, targets, scored = tokens[:, :-1], tokens[:, 1:], mask[:, 1:]
    lp = token_logps(model(inputs), targets)
    return (lp * scored).sum(axis=-1), scored.sum(axis=-1)


def split_pairs(values: mx.array) -> tuple[mx.array, mx.array]:
    """Stacked (2B,) values -> (chosen (B,), rejected (B,))."""
    half = values.shape[0] // 2
    return values[:half], values[half:]
