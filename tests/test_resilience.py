"""Interruption, resume, bad numbers, existing output, memory pre-flight, fuzzed data."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_dpo import TrainConfig, train
from mlx_dpo.checkpoint import find_checkpoint
from mlx_dpo.cli import main

from conftest import write_jsonl

TOKEN = "hf_secret_never_print_me"


def train_argv(model, data, out, *extra):
    return ["train", "--model", str(model), "--data", str(data), "--adapter-path", str(out), "--learning-rate",
            "2e-3", "--batch-size", "4", "--lora-dropout", "0.1", *extra]


def spawn(argv):
    env = {**os.environ, "HF_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "mlx_dpo", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def losses_of(lines):
    return {e["step"]: e["loss"] for e in map(json.loads, lines) if e["event"] == "train"}


def reference_losses(model, data, out, iters):
    events = []
    train(TrainConfig(model=str(model), data=str(data), adapter_path=str(out), learning_rate=2e-3, batch_size=4,
                      lora_dropout=0.1, iters=iters, progress="none"), on_event=events.append)
    return {e["step"]: e["loss"] for e in events if e["event"] == "train"}


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_and_resume_repeats_the_uninterrupted_run(tiny_model, pref_data, tmp_path, signum, code):
    iters = 14
    expected = reference_losses(tiny_model, pref_data, tmp_path / "straight", iters)
    out = tmp_path / "run"
    argv = train_argv(tiny_model, pref_data, out, "--iters", str(iters), "--save-every", "100",
                      "--progress", "json")
    proc = spawn(argv)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if json.loads(line).get("step") == 4 and json.loads(line)["event"] == "train":
            proc.send_signal(signum)
    proc.wait(timeout=120)
    err = proc.stderr.read()
    assert proc.returncode == code, err
    stopped = find_checkpoint(out)["step"]
    assert 4 <= stopped < iters
    assert f"stopped at step {stopped}; checkpoint saved in {out}. To continue, run the same command with --resume." in err
    first = losses_of(lines)
    resumed = subprocess.run([sys.executable, "-m", "mlx_dpo", *argv, "--resume"], capture_output=True, text=True,
                             env={**os.environ, "HF_TOKEN": TOKEN})
    assert resumed.returncode == 0, resumed.stderr
    second = losses_of(resumed.stdout.splitlines())
    assert sorted(second) == list(range(stopped + 1, iters + 1))
    curve = {**first, **second}
    assert sorted(curve) == list(range(1, iters + 1))
    for step in curve:
        assert curve[step] == pytest.approx(expected[step], abs=1e-5), step
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged if e["event"] == "train"] == list(range(1, iters + 1))
    everything = err + resumed.stderr + resumed.stdout + "".join(lines)
    everything += "".join(p.read_text() for p in out.iterdir() if p.suffix in (".json", ".jsonl"))
    assert TOKEN not in everything  # the hub token is never printed or saved


def test_sigkill_at_random_moments_never_corrupts(tiny_model, pref_data, tmp_path):
    from mlx_lm import load

    out = tmp_path / "run"
    argv = train_argv(tiny_model, pref_data, out, "--iters", "300", "--save-every", "3", "--progress", "none")
    rng = random.Random(7)
    kills = 0
    for attempt in range(7):
        proc = spawn(argv + (["--resume"] if out.exists() else []))
        time.sleep(rng.uniform(1.0, 3.0))  # start-up takes about 1.5 s: some kills land before any checkpoint
        if proc.poll() is not None:
            break
        proc.kill()
        proc.wait()
        kills += 1
        if (out / "trainer_state.json").exists():
            state = find_checkpoint(out)  # names only files that exist, whole
            model, _ = load(str(tiny_model), adapter_path=str(out))
            assert all(np.isfinite(np.array(v)).all() for k, v in tree_flatten(model.parameters()) if "lora" in k)
            assert mx.load(str(out / f"{state['step']:07d}_optimizer.safetensors"))
    assert kills >= 3
    final = subprocess.run([sys.executable, "-m", "mlx_dpo", *argv, "--resume"], capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert find_checkpoint(out)["step"] == 300


def test_nan_stops_the_run_and_keeps_the_last_checkpoint(capsys, tiny_model, pref_data, tmp_path):
    out = tmp_path / "run"
    rc = main(train_argv(tiny_model, pref_data, out, "--iters", "20", "--learning-rate", "1e30", "--grad-clip",
                         "none", "--save-every", "1", "--progress", "none"))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    step = find_checkpoint(out)["step"]
    assert f"not a finite number at step {step + 1}; the update was not applied" in err
    assert f"the last checkpoint (step {step}) is kept" in err
    weights = mx.load(str(out / "adapters.safetensors"))
    assert all(np.isfinite(np.array(v)).all() for v in weights.values())


def test_existing_run_needs_resume_or_overwrite(capsys, tiny_model, pref_data, tmp_path):
    out = tmp_path / "run"
    argv = train_argv(tiny_model, pref_data, out, "--iters", "2", "--progress", "none")
    assert main(argv) == 0
    before = (out / "adapters.safetensors").read_bytes()
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (f"error: {out}: already holds a run: pass --resume to continue it "
                                               "or --overwrite to start over")
    assert (out / "adapters.safetensors").read_bytes() == before
    assert main(argv + ["--overwrite", "--iters", "3"]) == 0
    assert find_checkpoint(out)["step"] == 3 and not (out / "0000002_state.json").exists()


def test_resume_refuses_other_settings_or_data(capsys, tiny_model, pref_data, tmp_path):
    out = tmp_path / "run"
    assert main(train_argv(tiny_model, pref_data, out, "--iters", "2", "--progress", "none")) == 0
    assert main(train_argv(tiny_model, pref_data, out, "--iters", "4", "--beta", "0.3", "--resume")) == 2
    assert capsys.readouterr().err.strip() == f"error: {out}: cannot resume: --beta was 0.1, now 0.3"
    other = write_jsonl(tmp_path / "other.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"}] * 8)
    assert main(train_argv(tiny_model, other, out, "--iters", "4", "--resume")) == 2
    assert capsys.readouterr().err.strip() == f"error: {out}: cannot resume: the training data differs from the run's"
    # Extending the run is a change resume allows.
    assert main(train_argv(tiny_model, pref_data, out, "--iters", "4", "--resume", "--progress", "none")) == 0
    assert find_checkpoint(out)["step"] == 4


def test_resume_from_a_numbered_checkpoint(tiny_model, pref_data, tmp_path):
    out = tmp_path / "run"
    expected = reference_losses(tiny_model, pref_data, tmp_path / "straight", 6)
    assert main(train_argv(tiny_model, pref_data, out, "--iters", "6", "--save-every", "2", "--progress", "none")) == 0
    events = []
    cfg = TrainConfig(model=str(tiny_model), data=str(pref_data), adapter_path=str(out), learning_rate=2e-3,
                      batch_size=4, lora_dropout=0.1, iters=6, progress="none",
                      resume_from=str(out / "0000004_adapters.safetensors"))
    train(cfg, on_event=events.append)
    got = {e["step"]: e["loss"] for e in events if e["event"] == "train"}
    assert sorted(got) == [5, 6]
    assert got[5] == pytest.approx(expected[5], abs=1e-5) and got[6] == pytest.approx(expected[6], abs=1e-5)


def test_memory_preflight_refuses_suggests_and_can_be_forced(capsys, tiny_model, pref_data, tmp_path):
    from mlx_dpo.memory import GB, estimate_peak_bytes
    from mlx_dpo.model import attach_lora, load_model, lora_parameters

    model, _, _ = load_model(str(tiny_model))
    attach_lora(model, -1, lora_parameters(8, 20.0, 0.0))
    seq = 40  # the synthetic pairs' longest sequence, padded to 8
    full, half = (estimate_peak_bytes(model, b, seq, False, a) for b, a in ((8, 1), (4, 2)))
    limit = (full + half) / 2 / GB
    out = tmp_path / "run"
    argv = train_argv(tiny_model, pref_data, out, "--iters", "2", "--batch-size", "8", "--progress", "none",
                      "--memory-limit-gb", f"{limit:.9f}")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: estimated peak memory {full / GB:.2f} GB exceeds the {limit:.2f} GB available; "
                          "settings that fit: --batch-size 4 --grad-accumulation-steps 2")
    assert err.endswith("--force to train anyway") and not out.exists()
    events = []
    train(TrainConfig(model=str(tiny_model), data=str(pref_data), adapter_path=str(out), iters=2, batch_size=8,
                      progress="none", memory_limit_gb=limit, force=True), on_event=events.append)
    memory = next(e for e in events if e["event"] == "memory")
    peak = [e["peak_memory_gb"] for e in events if e["event"] == "train"][-1]
    assert memory["estimated_peak_gb"] == pytest.approx(full / GB) and peak > 0


def mutations(rng: random.Random, good: list[str]) -> list[tuple[str, bytes]]:
    base = "\n".join(good).encode()
    cases = []
    for i in range(6):
        line = good[rng.randrange(len(good))]
        cases.append((f"truncated-{i}", ("\n".join(good[:2]) + "\n" + line[: rng.randrange(1, len(line) - 1)]).encode()))
    for field in ("prompt", "chosen", "rejected"):
        for value in (7, 1.5, None, [], [1, 2], {"x": 1}, True, ""):
            row = json.loads(good[0])
            row[field] = value
            cases.append((f"type-{field}-{value!r}", (good[1] + "\n" + json.dumps(row)).encode()))
    for i in range(5):
        garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        pos = rng.randrange(len(base))
        cases.append((f"garbage-{i}", base[:pos] + garbage + b"\xff" + base[pos:]))
    cases.append(("huge-field", (good[0] + "\n" + json.dumps({"prompt": "p", "chosen": 10 ** 400,
                                                              "rejected": "r"})).encode()))
    cases.append(("huge-role", json.dumps({"prompt": [{"role": "x" * 5_000_000, "content": "a"}],
                                           "chosen": "b", "rejected": "c"}).encode()))
    cases.append(("deep-nesting", ("[" * 100_000 + "]" * 100_000).encode()))
    cases.append(("deep-object", ('{"prompt": ' * 50_000 + '"a"' + "}" * 50_000).encode()))
    cases.append(("nul-bytes", b"\x00" * 64))
    cases.append(("only-whitespace", b" \n\t\n"))
    cases.append(("top-level-string", b'"just a string"'))
    return cases


def test_fuzzed_data_files_fail_cleanly(capfd, tiny_model, pref_data, tmp_path):
    good = (pref_data / "train.jsonl").read_text().splitlines()[:8]
    for name, blob in mutations(random.Random(3), good):
        data = tmp_path / "fuzz.jsonl"
        data.write_bytes(blob)
        out = tmp_path / f"out-{len(name)}"
        rc = main(["train", "--model", str(tiny_model), "--data", str(data), "--adapter-path", str(out),
                   "--iters", "1", "--progress", "none"])
        err = capfd.readouterr().err.strip()
        assert rc == 2, name
        assert len(err.splitlines()) == 1 and err.startswith(f"error: {data}"), (name, err[:300])
        assert "Traceback" not in err and len(err) < 1000, name
        assert not out.exists(), name
