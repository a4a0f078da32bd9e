"""The fused log-prob head and the reference cache compute exactly what the plain ways do."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_dpo import TrainConfig, train
from mlx_dpo.batching import iterate_batches
from mlx_dpo.data import load_splits
from mlx_dpo.logps import LogpScorer, chunked_logp, full_logits_logps, token_logps
from mlx_dpo.model import attach_lora, load_model, lora_layers, lora_parameters
from mlx_dpo.reference import ReferenceCache, reference_mode
from mlx_dpo.run import pad_id_of
from mlx_dpo.tokenize import tokenize_pairs


@pytest.mark.parametrize("quantized", [False, True])
def test_chunked_head_value_and_gradient_equal_the_naive_head(quantized):
    mx.random.seed(1)
    head = nn.Linear(64, 300, bias=False)
    if quantized:
        head = nn.QuantizedLinear.from_linear(head, group_size=32, bits=4)
    hidden = mx.random.normal((37, 64))
    targets = mx.random.randint(0, 300, (37,))
    weights = mx.random.normal((37,))

    def naive(h):
        return (token_logps(head(h), targets) * weights).sum()

    def fused(h):
        return (chunked_logp(head, h, targets, chunk=5) * weights).sum()  # 8 chunks, the last one short

    v0, g0 = mx.value_and_grad(naive)(hidden)
    v1, g1 = mx.value_and_grad(fused)(hidden)
    assert v1.item() == pytest.approx(v0.item(), rel=1e-6)
    assert mx.allclose(g1, g0, atol=1e-6, rtol=1e-5).item()


@pytest.fixture()
def lora_model_and_batch(tiny_model, pref_data):
    model, tok, _ = load_model(str(tiny_model))
    mx.random.seed(0)
    attach_lora(model, -1, lora_parameters(8, 20.0, 0.0))
    for _, layer in lora_layers(model):
        layer.lora_b = mx.random.normal(layer.lora_b.shape) * 0.05
    pairs, _ = tokenize_pairs(load_splits(str(pref_data))["train"].pairs, tok)
    batch = next(iterate_batches(pairs, 4, pad_id_of(tok), seed=0))
    return model, batch, pairs, tok


def test_scorer_uses_the_fused_head_and_matches_full_logits(lora_model_and_batch):
    model, batch, _, _ = lora_model_and_batch
    scorer = LogpScorer(model)
    assert scorer.fused

    def loss(fn):
        def f(m):
            sums, counts = fn(m)
            return (sums * mx.arange(1, sums.shape[0] + 1)).sum(), counts
        return nn.value_and_grad(model, f)

    (v0, c0), g0 = loss(lambda m: full_logits_logps(m, batch.tokens, batch.mask))(model)
    (v1, c1), g1 = loss(lambda m: scorer(m, batch))(model)
    assert v1.item() == pytest.approx(v0.item(), rel=1e-5)
    assert mx.array_equal(c0, c1).item()
    flat0, flat1 = dict(tree_flatten(g0)), dict(tree_flatten(g1))
    assert flat0.keys() == flat1.keys() and flat0
    for k in flat0:
        # The fused head sums in another order: float32 rounding, relative to the gradient's scale.
        scale = mx.abs(flat0[k]).max().item()
        assert mx.abs(flat1[k] - flat0[k]).max().item() <= 1e-5 * scale, k


def test_reference_cache_equals_a_fresh_reference_forward(lora_model_and_batch, tmp_path):
    model, batch, pairs, tok = lora_model_and_batch
    cache = ReferenceCache(model, size=len(pairs), path=tmp_path / "ref.safetensors", key="k1")
    rc, rr = cache(batch)
    with reference_mode(model):
        sums, _ = full_logits_logps(model, batch.tokens, batch.mask)
    half = len(batch.indices)
    assert mx.allclose(rc, sums[:half], atol=1e-4).item() and mx.allclose(rr, sums[half:], atol=1e-4).item()
    assert cache.filled == len(batch.indices)
    cache.save()
    again = ReferenceCache(model, size=len(pairs), path=tmp_path / "ref.safetensors", key="k1")
    assert again.filled == len(batch.indices) and again.known(batch.indices)
    assert mx.array_equal(again(batch)[0], rc).item()
    other = ReferenceCache(model, size=len(pairs), path=tmp_path / "ref.safetensors", key="another model")
    assert other.filled == 0


def test_precompute_ref_scores_everything_before_the_first_step(tiny_model, pref_data, tmp_path):
    events = []
    train(TrainConfig(model=str(tiny_model), data=str(pref_data), adapter_path=str(tmp_path / "run"), iters=2,
                      batch_size=8, progress="none", precompute_ref=True), on_event=events.append)
    kinds = [e["event"] for e in events]
    assert kinds.index("reference") < kinds.index("train")
    refs = [e for e in events if e["event"] == "reference"]
    assert {e["split"] for e in refs} == {"train", "valid"} and refs[-1]["batch"] == refs[-1]["batches"]
    saved = mx.load(str(tmp_path / "run" / "ref_logps_train.safetensors"))
    assert saved["chosen"].size == 64 and not np.isnan(np.array(saved["chosen"])).any()


def test_resume_reuses_the_saved_reference(tiny_model, pref_data, tmp_path):
    out = tmp_path / "run"
    cfg = dict(model=str(tiny_model), data=str(pref_data), adapter_path=str(out), batch_size=8, progress="none",
               learning_rate=1e-3)
    train(TrainConfig(iters=8, **cfg))  # a full epoch: every train example has its reference value
    stamp = (out / "ref_logps_train.safetensors").stat().st_mtime_ns
    events = []
    train(TrainConfig(iters=10, resume=True, **cfg), on_event=events.append)
    assert (out / "ref_logps_train.safetensors").stat().st_mtime_ns == stamp  # nothing new to score


def test_a_trainable_head_still_gets_its_gradient(lora_model_and_batch):
    """The fused head passes gradients to hidden states only, so a trainable head takes the plain way."""
    model, batch, _, _ = lora_model_and_batch
    model.unfreeze()
    scorer = LogpScorer(model)

    def grads(fn):
        return dict(tree_flatten(nn.value_and_grad(model, lambda m: fn(m)[0].sum())(model)[1]))

    g0 = grads(lambda m: full_logits_logps(m, batch.tokens, batch.mask))
    g1 = grads(lambda m: scorer(m, batch))
    assert mx.abs(g0["lm_head.weight"]).max().item() > 0
    assert mx.allclose(g1["lm_head.weight"], g0["lm_head.weight"], atol=1e-6).item()


def test_grad_checkpoint_gives_the_same_gradients_and_is_undone(lora_model_and_batch):
    from mlx_dpo.evaluate import batch_loss
    from mlx_dpo.recompute import grad_checkpointing

    model, batch, _, _ = lora_model_and_batch
    block = type(model.layers[0])
    plain_call = block.__call__
    scorer, cfg = LogpScorer(model, share_prompt=False), TrainConfig()
    rc, rr = mx.zeros((batch.pairs,)), mx.zeros((batch.pairs,))
    loss_and_grad = nn.value_and_grad(model, batch_loss)
    (v0, _), g0 = loss_and_grad(model, batch, scorer, rc, rr, cfg)
    with grad_checkpointing(model):
        assert block.__call__ is not plain_call
        (v1, _), g1 = loss_and_grad(model, batch, scorer, rc, rr, cfg)
    assert block.__call__ is plain_call  # other models of this architecture are left alone
    assert v1.item() == pytest.approx(v0.item(), rel=1e-6)
    flat0, flat1 = dict(tree_flatten(g0)), dict(tree_flatten(g1))
    for k in flat0:
        assert mx.allclose(flat1[k], flat0[k], atol=1e-6, rtol=1e-5).item(), k


def test_scorer_stays_fused_for_trained_adapters_with_dropout(tiny_model):
    """A resumed run has non-zero adapters and LoRA dropout on: the probe must not see dropout noise."""
    model, _, _ = load_model(str(tiny_model))
    attach_lora(model, -1, lora_parameters(8, 20.0, 0.5))
    for _, layer in lora_layers(model):
        layer.lora_b = mx.random.normal(layer.lora_b.shape) * 0.05
    model.train()
    assert LogpScorer(model).fused and model.training


def long_prompt_batch(vocab: int):
    """Two pairs whose prompts (24 and 31 tokens) are long enough to be shared."""
    from mlx_dpo.batching import collate
    from mlx_dpo.tokenize import TokenizedPair

    rng = np.random.default_rng(3)

    def ids(n):
        return tuple(int(i) for i in rng.integers(3, vocab, n))

    pairs = [TokenizedPair(ids(24), ids(9), ids(14)), TokenizedPair(ids(31), ids(12), ids(5))]
    return collate(pairs, [0, 1], pad_id=0)


def test_shared_prompt_gives_the_values_and_gradients_of_two_full_forwards(lora_model_and_batch):
    from mlx_dpo.prefix import MIN_PREFIX

    model, _, _, _ = lora_model_and_batch
    batch = long_prompt_batch(model.args.vocab_size)
    assert batch.prefix == 23 >= MIN_PREFIX  # the shorter prompt, less the position that scores its answer
    shared, whole = LogpScorer(model), LogpScorer(model, share_prompt=False)
    assert shared.share_prompt and not whole.share_prompt

    def value_and_grads(scorer):
        def f(m):
            sums, _ = scorer(m, batch)
            return (sums * mx.array([1.0, -2.0, 3.0, 0.5])).sum()
        v, g = nn.value_and_grad(model, f)(model)
        return v.item(), dict(tree_flatten(g))

    v0, g0 = value_and_grads(whole)
    v1, g1 = value_and_grads(shared)
    assert v1 == pytest.approx(v0, rel=1e-5)
    for k in g0:
        scale = mx.abs(g0[k]).max().item()
        assert scale > 0 and mx.abs(g1[k] - g0[k]).max().item() <= 1e-4 * scale, k
    # The reference and evaluation path (no gradient) shares too.
    assert mx.allclose(shared(model, batch, grad=False)[0], whole(model, batch, grad=False)[0], rtol=1e-5).item()


def test_grad_checkpointing_runs_turn_prompt_sharing_off(lora_model_and_batch, tmp_path):
    """`mx.checkpoint` around a block cannot carry the prompt's KV cache."""
    from mlx_dpo.trainer import Trainer

    model, _, _, _ = lora_model_and_batch
    batch = long_prompt_batch(model.args.vocab_size)
    trainer = Trainer(model, TrainConfig(grad_checkpoint=True, batch_size=2), 0, tmp_path, lambda e: None)
    assert not trainer.scorer.share_prompt
    assert Trainer(model, TrainConfig(batch_size=2), 0, tmp_path, lambda e: None).scorer.share_prompt
    assert Trainer(model, TrainConfig(share_prompt=False), 0, tmp_path, lambda e: None).scorer.share_prompt is False
    trainer.use_reference(2, 0)
    from mlx_dpo.recompute import recomputing
    with recomputing(model, True):
        metrics, _ = trainer.step_batch(batch)
    assert np.isfinite(metrics["loss"].item())


def test_selective_recompute_keeps_the_numbers_and_less_memory(tmp_path):
    """SwiGLU and attention recomputed in the backward: the same gradients, a lower peak, and
    the model's module as it was afterwards."""
    import sys

    from mlx_lm.utils import _get_classes

    from mlx_dpo.recompute import selective_recompute
    from mlx_dpo.tiny_model import model_config

    config = model_config(256, 64, 2, 1, intermediate_size=512)
    model_class, args_class = _get_classes(config)
    mx.random.seed(0)
    model = model_class(args_class.from_dict(config))
    model.freeze()
    attach_lora(model, -1, lora_parameters(8, 20.0, 0.0))
    tokens = mx.random.randint(0, 256, (4, 256))
    weights = mx.random.normal((4, 256, 64))
    module = sys.modules[type(model).__module__]
    plain = (module.swiglu, module.scaled_dot_product_attention)

    def run():
        mx.eval(model.parameters())
        mx.clear_cache()
        base = mx.get_active_memory()
        mx.reset_peak_memory()
        v, g = nn.value_and_grad(model, lambda m: (m.model(tokens) * weights).sum())(model)
        mx.eval(v, g)
        return v.item(), dict(tree_flatten(g)), mx.get_peak_memory() - base

    v0, g0, peak0 = run()
    with selective_recompute(model) as rebound:
        assert rebound == ["swiglu", "scaled_dot_product_attention"]
        v1, g1, peak1 = run()
    assert (module.swiglu, module.scaled_dot_product_attention) == plain
    assert v1 == pytest.approx(v0, rel=1e-6)
    for k in g0:
        assert mx.allclose(g1[k], g0[k], atol=1e-6, rtol=1e-5).item(), k
    assert peak1 < 0.9 * peak0, (peak1, peak0)  # measured 0.82x
