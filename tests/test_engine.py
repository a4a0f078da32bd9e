"""The DPO engine on the tiny model: reference = adapters off, learning, saving, loading."""

from __future__ import annotations

import json
import math

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_dpo import TrainConfig, train
from mlx_dpo.cli import main
from mlx_dpo.data import load_splits
from mlx_dpo.evaluate import evaluate_pairs
from mlx_dpo.model import adapters_disabled, apply_adapter, attach_lora, load_model, lora_layers, lora_parameters
from mlx_dpo.reference import ReferenceCache
from mlx_dpo.run import pad_id_of
from mlx_dpo.tokenize import tokenize_pairs
from mlx_dpo.trainer import Trainer

from conftest import run_module

PROBE = mx.array([[1, 40, 41, 42, 43, 44, 45, 46]])


def fast_config(model, data, out, **kw) -> TrainConfig:
    base = dict(model=str(model), data=str(data), adapter_path=str(out), learning_rate=2e-3, batch_size=8,
                iters=24, steps_per_eval=12, progress="none", seed=0)
    return TrainConfig(**{**base, **kw})


def lora_model(model_dir, rank=8):
    model, tok, _ = load_model(str(model_dir))
    mx.random.seed(0)
    attach_lora(model, -1, lora_parameters(rank, 20.0, 0.0))
    return model, tok


def nudge_adapters(model):
    """Give every lora_b a non-zero value, as training would."""
    for _, layer in lora_layers(model):
        layer.lora_b = mx.random.normal(layer.lora_b.shape) * 0.05
    mx.eval(model.parameters())


def test_adapters_disabled_is_exactly_the_base_model(tiny_model):
    base, _, _ = load_model(str(tiny_model))
    base_logits = base(PROBE)
    model, _ = lora_model(tiny_model)
    nudge_adapters(model)
    tuned = model(PROBE)
    assert not mx.array_equal(tuned, base_logits)
    with adapters_disabled(model):
        assert mx.array_equal(model(PROBE), base_logits)
        assert not list(lora_layers(model))  # the LoRA branch is gone, not multiplied by zero
    assert mx.array_equal(model(PROBE), tuned)


def test_adapters_restored_when_the_body_raises(tiny_model):
    model, _ = lora_model(tiny_model)
    nudge_adapters(model)
    tuned = model(PROBE)
    n_layers = len(list(lora_layers(model)))
    with pytest.raises(RuntimeError):
        with adapters_disabled(model):
            raise RuntimeError("boom")
    assert len(list(lora_layers(model))) == n_layers
    assert mx.array_equal(model(PROBE), tuned)


def test_train_lifts_held_out_accuracy_and_touches_only_lora(tiny_model, pref_data, tmp_path):
    cfg = fast_config(tiny_model, pref_data, tmp_path / "run")
    model, tok = lora_model(tiny_model, cfg.lora_rank)
    splits = load_splits(cfg.data)
    data = {k: tokenize_pairs(v.pairs, tok)[0] for k, v in splits.items()}
    base_before = {k: np.array(v) for k, v in tree_flatten(model.parameters()) if "lora_" not in k}
    assert all("lora_" in k for k, _ in tree_flatten(model.trainable_parameters()))
    pad = pad_id_of(tok)

    def held_out():
        return evaluate_pairs(model, data["test"], ReferenceCache(model), cfg, 8, pad)

    before = held_out()
    events = []
    (tmp_path / "run").mkdir()
    Trainer(model, cfg, pad, tmp_path / "run", events.append).train(data["train"], data["valid"])
    after = held_out()

    assert before["rewards/accuracies"] <= 0.6
    assert after["rewards/accuracies"] >= 0.9
    assert after["rewards/margins"] > 0 and after["loss"] < math.log(2)
    trains = [e for e in events if e["event"] == "train"]
    assert trains[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # step 0: policy == reference
    assert len(trains) == cfg.iters
    for k, v in tree_flatten(model.parameters()):
        if "lora_" not in k:
            assert np.array_equal(np.array(v), base_before[k]), f"{k} changed"
    # And the reference is still the untouched base after all the updates.
    base, _, _ = load_model(str(tiny_model))
    with adapters_disabled(model):
        assert mx.array_equal(model(PROBE), base(PROBE))


def test_saved_adapters_load_in_mlx_lm_with_equal_logits(tiny_model, pref_data, tmp_path):
    from mlx_lm import load

    out = tmp_path / "run"
    events = []
    result = train(fast_config(tiny_model, pref_data, out, iters=6, save_every=3), on_event=events.append)
    files = sorted(p.name for p in out.iterdir())
    assert files == ["0000003_adapters.safetensors", "0000003_optimizer.safetensors", "0000003_state.json",
                     "0000006_adapters.safetensors", "0000006_optimizer.safetensors", "0000006_state.json",
                     "adapter_config.json", "adapters.safetensors", "best_adapters.safetensors", "metrics.jsonl",
                     "ref_logps_train.safetensors", "ref_logps_valid.safetensors", "trainer_state.json"]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["beta"] == 0.1 and config["lora_parameters"]["rank"] == 8 and config["fine_tune_type"] == "lora"
    ours, _, _ = load_model(str(tiny_model))
    apply_adapter(ours, out)
    theirs, _ = load(str(tiny_model), adapter_path=str(out))
    assert mx.array_equal(ours(PROBE), theirs(PROBE))
    base, _, _ = load_model(str(tiny_model))
    assert not mx.array_equal(ours(PROBE), base(PROBE))
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["event"] for e in logged] == [e["event"] for e in events]
    assert result["event"] == "done" and result["step"] == 6


def test_metrics_named_like_trl(tiny_model, pref_data, tmp_path):
    events = []
    train(fast_config(tiny_model, pref_data, tmp_path / "run", iters=2), on_event=events.append)
    step = next(e for e in events if e["event"] == "train")
    for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                "logps/chosen", "logps/rejected", "kl/chosen", "kl/rejected", "tokens_per_second",
                "peak_memory_gb", "learning_rate", "grad_norm", "step", "epoch"):
        assert key in step, key
    assert step["tokens_per_second"] > 0 and step["grad_norm"] > 0


def test_same_seed_same_run(tiny_model, pref_data, tmp_path):
    def losses(out):
        events = []
        train(fast_config(tiny_model, pref_data, out, iters=4, lora_dropout=0.1), on_event=events.append)
        return [e["loss"] for e in events if e["event"] == "train"]

    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_grad_accumulation_counts_optimizer_steps(tiny_model, pref_data, tmp_path):
    events = []
    train(fast_config(tiny_model, pref_data, tmp_path / "run", iters=None, epochs=1, batch_size=4,
                      grad_accumulation_steps=2, steps_per_eval=100), on_event=events.append)
    assert len([e for e in events if e["event"] == "train"]) == 64 // 4 // 2


def test_quantize_on_load_trains_qlora(tiny_model, pref_data, tmp_path):
    import mlx.nn as nn

    events = []
    train(fast_config(tiny_model, pref_data, tmp_path / "run", iters=2, quantize=4, q_group_size=32),
          on_event=events.append)
    assert events[-1]["event"] == "done" and math.isfinite(events[-1]["loss"])
    model, _, _ = load_model(str(tiny_model), quantize=4, q_group_size=32)
    apply_adapter(model, tmp_path / "run")
    wrapped = [layer.linear for _, layer in lora_layers(model)]
    assert wrapped and all(isinstance(m, nn.QuantizedLinear) for m in wrapped)


def test_prequantized_checkpoint_trains_as_is(tiny_model_q4, pref_data, tmp_path):
    events = []
    train(fast_config(tiny_model_q4, pref_data, tmp_path / "run", iters=2), on_event=events.append)
    trains = [e for e in events if e["event"] == "train"]
    assert trains[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert main(["train", "--model", str(tiny_model_q4), "--data", str(pref_data), "--quantize", "4",
                 "--adapter-path", str(tmp_path / "x")]) == 2


def test_sft_then_dpo_uses_the_start_adapter_as_reference(tiny_model, pref_data, tmp_path):
    sft = tmp_path / "sft"
    train(fast_config(tiny_model, pref_data, sft, iters=4, loss_type="sft", lora_rank=4))
    events = []
    train(fast_config(tiny_model, pref_data, tmp_path / "dpo", iters=2, init_adapter=str(sft)),
          on_event=events.append)
    first = next(e for e in events if e["event"] == "train")
    # The policy starts as base+SFT and so does the reference: DPO starts at ln 2, not at base's loss.
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert json.loads((tmp_path / "dpo" / "adapter_config.json").read_text())["lora_parameters"]["rank"] == 4


def test_progress_json_lines(tiny_model, pref_data, tmp_path):
    proc = run_module("train", "--model", str(tiny_model), "--data", str(pref_data), "--adapter-path",
                      str(tmp_path / "run"), "--iters", "2", "--learning-rate", "1e-3", "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == ["memory", "start", "train", "train", "eval", "save", "done"]


@pytest.mark.parametrize("case", ["missing", "no_weights", "file"])
def test_bad_model_paths(capsys, pref_data, tmp_path, case):
    target = tmp_path / "m"
    if case == "no_weights":
        target.mkdir()
        (target / "config.json").write_text("{}")
    elif case == "file":
        target.write_text("x")
    rc = main(["train", "--model", str(target), "--data", str(pref_data), "--adapter-path", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err == {
        "missing": f"error: {target}: model folder not found",
        "no_weights": f"error: {target}: no weights: the folder has no model*.safetensors",
        "file": f"error: {target}: a model must be a folder (config.json + *.safetensors)",
    }[case]
    assert not (tmp_path / "o").exists()


def test_adapter_for_another_model_is_refused(capsys, tiny_model, pref_data, tmp_path):
    from mlx_dpo.synthetic_data import corpus_lines
    from mlx_dpo.tiny_model import build_tiny_model

    other = build_tiny_model(tmp_path / "other", list(corpus_lines()), hidden=32)
    train(fast_config(other, pref_data, tmp_path / "a", iters=1))
    rc = main(["train", "--model", str(tiny_model), "--data", str(pref_data), "--init-adapter",
               str(tmp_path / "a"), "--adapter-path", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "(adapter for another model?)" in err and err.startswith(f"error: {tmp_path / 'a' / 'adapters.safetensors'}")
    assert not (tmp_path / "b").exists()
