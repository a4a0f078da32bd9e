"""eval, chat/generate --compare, sweep, fuse and upload on the tiny model."""

from __future__ import annotations

import json

import mlx.core as mx
import pytest

from mlx_dpo import TrainConfig, train
from mlx_dpo.checkpoint import save_adapters, write_adapter_config
from mlx_dpo.cli import main
from mlx_dpo.config import GenerateConfig
from mlx_dpo.generate import answer
from mlx_dpo.model import attach_lora, load_model, load_tuned, lora_parameters

from conftest import run_module
from hub_standin import HubStandIn

PROBE = mx.array([[1, 40, 41, 42, 43, 44, 45, 46]])
PROMPTS = ["Tell me about the cat.", "How is the river today?", "Describe the piano in one line."]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model, pref_data):
    out = tmp_path_factory.mktemp("trained") / "adapters"
    train(TrainConfig(model=str(tiny_model), data=str(pref_data), adapter_path=str(out), learning_rate=2e-3,
                      batch_size=8, iters=24, steps_per_eval=12, progress="none"))
    return out


@pytest.fixture(scope="module")
def untrained(tmp_path_factory, tiny_model):
    """An adapter folder exactly as training starts: LoRA B = 0."""
    out = tmp_path_factory.mktemp("untrained")
    model, _, _ = load_model(str(tiny_model))
    params = lora_parameters(8, 20.0, 0.0)
    attach_lora(model, -1, params)
    write_adapter_config(out, {"model": str(tiny_model)}, -1, params)
    save_adapters(model, out)
    return out


def test_eval_tuned_beats_base(capsys, tiny_model, pref_data, trained):
    assert main(["eval", "--model", str(tiny_model), "--adapter-path", str(trained), "--json"]) == 0
    tuned = json.loads(capsys.readouterr().out)
    assert main(["eval", "--model", str(tiny_model), "--data", str(pref_data), "--json"]) == 0
    base = json.loads(capsys.readouterr().out)
    assert tuned["split"] == "test" and tuned["pairs"] == 16  # data came from the adapter's saved config
    assert "tuned" not in base
    assert tuned["tuned"]["preference_accuracy"] >= 0.9
    assert tuned["tuned"]["preference_accuracy"] > base["base"]["likelihood_accuracy"]
    assert tuned["base"] == pytest.approx(base["base"])  # adapters off is exactly the base model
    assert tuned["tuned"]["reward_margin"] > 0


def test_eval_table(capsys, tiny_model, trained):
    assert main(["eval", "--model", str(tiny_model), "--adapter-path", str(trained), "--eval-split", "valid"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("16 pairs from the valid split; loss sigmoid, beta 0.1")
    assert "preference accuracy" in out and "KL chosen" in out


def test_compare_identical_at_init_different_after_training(tiny_model, untrained, trained):
    gen = GenerateConfig(max_tokens=12)
    at_init = load_tuned(str(tiny_model), str(untrained))
    after = load_tuned(str(tiny_model), str(trained))
    msgs = [[{"role": "user", "content": p}] for p in PROMPTS]
    for m in msgs:
        assert answer(at_init.model, at_init.tokenizer, m, gen, tuned=False) == \
            answer(at_init.model, at_init.tokenizer, m, gen, tuned=True)
    assert any(answer(after.model, after.tokenizer, m, gen, tuned=False) !=
               answer(after.model, after.tokenizer, m, gen, tuned=True) for m in msgs)


def test_generate_compare_cli(capsys, tiny_model, trained):
    assert main(["generate", "--model", str(tiny_model), "--adapter-path", str(trained), "--prompt", PROMPTS[0],
                 "--compare", "--max-tokens", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[base] ") and lines[1].startswith("[tuned] ")


def test_chat_session_commands(tiny_model, trained):
    script = "Tell me about the cat.\n/system Be brief.\nHello!\n/reset\n/bogus\nHi\n/quit\nnever read\n"
    proc = run_module("chat", "--model", str(tiny_model), "--adapter-path", str(trained), "--max-tokens", "6",
                      "--compare", input=script)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.count("[base] ") == 3 and text.count("[tuned] ") == 3  # "never read" came after /quit
    assert "(system message set; conversation cleared)" in text and "(conversation cleared)" in text
    assert "unknown command /bogus" in text


def test_sweep_trains_each_member_once(capsys, tiny_model, pref_data, tmp_path):
    argv = ["sweep", "--model", str(tiny_model), "--data", str(pref_data), "--adapter-path", str(tmp_path),
            "--beta", "0.05,0.5", "--iters", "4", "--learning-rate", "2e-3", "--batch-size", "8",
            "--progress", "none"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beta=0.05", "beta=0.5", "sweep.json"]
    table = captured.out.splitlines()
    assert table[0].split()[:3] == ["member", "accuracy", "margin"]
    assert sum("<- best rewards/accuracies" in line for line in table) == 1
    assert captured.err.count(": training") == 2
    stamp = (tmp_path / "beta=0.05" / "adapters.safetensors").stat().st_mtime_ns
    assert main(argv) == 0
    assert capsys.readouterr().err.count("done already, skipped") == 2
    assert (tmp_path / "beta=0.05" / "adapters.safetensors").stat().st_mtime_ns == stamp


def test_sweep_mistakes(capsys, tiny_model, pref_data, tmp_path):
    base = ["sweep", "--model", str(tiny_model), "--data", str(pref_data), "--adapter-path", str(tmp_path)]
    with pytest.raises(SystemExit) as e:
        main(base + ["--bogus", "1,2"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == "error: mlx_dpo: unrecognized arguments: --bogus 1,2 (see --help)"
    assert main(base + ["--beta", "0.1"]) == 2
    assert capsys.readouterr().err.startswith("error: nothing to sweep")


def test_fuse_full_precision_matches_adapter_logits(tiny_model, trained, tmp_path):
    from mlx_lm import load

    out = tmp_path / "fused"
    assert main(["fuse", "--model", str(tiny_model), "--adapter-path", str(trained), "--save-path", str(out)]) == 0
    fused, _ = load(str(out))
    tuned = load_tuned(str(tiny_model), str(trained))
    assert mx.allclose(fused(PROBE), tuned.model(PROBE), atol=1e-4).item()
    card = (out / "README.md").read_text()
    assert f"base_model: {tiny_model}" in card and "| beta | 0.1 |" in card and "rewards/accuracies" in card


@pytest.mark.parametrize("bits", [4, 8])
def test_fuse_requantized_like_the_base(tiny_model, pref_data, tmp_path, bits):
    """Re-quantized like the base. A random tiny model's logits are nearly flat, so at 4 bits the
    requantization noise can flip a late greedy token; greedy answers are compared at 8 bits."""
    from mlx_lm import load

    adapters = tmp_path / "a"
    train(TrainConfig(model=str(tiny_model), data=str(pref_data), adapter_path=str(adapters), quantize=bits,
                      q_group_size=32, learning_rate=2e-3, batch_size=8, iters=16, progress="none"))
    out = tmp_path / "fused"
    assert main(["fuse", "--model", str(tiny_model), "--adapter-path", str(adapters), "--save-path", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"] == {"bits": bits, "group_size": 32, "mode": "affine"}
    fused, tok = load(str(out))
    tuned = load_tuned(str(tiny_model), str(adapters))
    if bits == 4:
        return
    gen = GenerateConfig(max_tokens=6)
    for p in PROMPTS:
        m = [{"role": "user", "content": p}]
        assert answer(fused, tok, m, gen) == answer(tuned.model, tuned.tokenizer, m, gen)


def test_fuse_dequantize_and_gguf(tiny_model_q4, tiny_model, trained, tmp_path):
    out = tmp_path / "deq"
    assert main(["fuse", "--model", str(tiny_model), "--adapter-path", str(trained), "--save-path", str(out),
                 "--export-gguf"]) == 0
    assert (out / "ggml-model-f16.gguf").stat().st_size > 0
    assert "quantization" not in json.loads((out / "config.json").read_text())


def test_fuse_upload_to_local_hub_standin(tiny_model, trained, tmp_path):
    token = "hf_standintoken123"
    with HubStandIn() as hub:
        proc = run_module("fuse", "--model", str(tiny_model), "--adapter-path", str(trained), "--save-path",
                          str(tmp_path / "fused"), "--upload-repo", "alice/tiny-dpo",
                          env={"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": token, "HF_HUB_DISABLE_TELEMETRY": "1"})
    assert proc.returncode == 0, proc.stderr
    assert hub.repos == ["alice/tiny-dpo"]
    assert {"config.json", "model.safetensors", "README.md", "tokenizer.json"} <= set(hub.files)
    assert hub.files["model.safetensors"] == (tmp_path / "fused" / "model.safetensors").read_bytes()
    assert f"Bearer {token}" in hub.auth  # the token came from the usual place (HF_TOKEN)...
    assert token not in proc.stdout + proc.stderr  # ...and is never printed
    assert all(token.encode() not in body for body in hub.files.values())


@pytest.mark.parametrize("case", ["missing", "other_model"])
def test_adapter_mistakes(capsys, tiny_model, trained, tmp_path, case):
    from mlx_dpo.synthetic_data import corpus_lines
    from mlx_dpo.tiny_model import build_tiny_model

    model = str(tiny_model)
    adapter = str(tmp_path / "nope")
    if case == "other_model":
        model = str(build_tiny_model(tmp_path / "other", list(corpus_lines()), hidden=32))
        adapter = str(trained)
    for cmd in (["eval", "--model", model, "--adapter-path", adapter],
                ["generate", "--model", model, "--adapter-path", adapter, "--prompt", "hi"],
                ["fuse", "--model", model, "--adapter-path", adapter, "--save-path", str(tmp_path / "f")]):
        assert main(cmd) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert err == (f"error: {adapter}: adapter folder not found" if case == "missing"
                       else err) and (case == "missing" or "(adapter for another model?)" in err)
    assert not (tmp_path / "f").exists()
