"""Data-parallel DPO: two ranks under mlx.launch (ring backend, localhost) match one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_dpo import TrainConfig, train
from mlx_dpo.checkpoint import find_checkpoint

LAUNCH = Path(sys.executable).parent / "mlx.launch"
SETTINGS = dict(learning_rate=2e-3, batch_size=6, iters=6, seed=3, steps_per_eval=3)  # 64 pairs: the last batch has 4


def launch(ranks: int, model, data, out, *extra) -> list[dict]:
    argv = [str(LAUNCH), "-n", str(ranks), "--backend", "ring", sys.executable, "-m", "mlx_dpo", "train",
            "--model", str(model), "--data", str(data), "--adapter-path", str(out), "--progress", "json",
            *[f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items() if k != "iters"], *extra]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def curve(events, kind="train", key="loss"):
    return {e["step"]: e[key] for e in events if e["event"] == kind}



def test_two_ranks_match_one_and_resume(tiny_model, pref_data, tmp_path):
    one = []
    train(TrainConfig(model=str(tiny_model), data=str(pref_data), adapter_path=str(tmp_path / "one"),
                      progress="none", **SETTINGS), on_event=one.append)
    first = launch(2, tiny_model, pref_data, tmp_path / "two", "--iters", "6", "--save-every", "3")
    # Resume from the step-3 checkpoint: steps 4-6 again, on the same schedule.
    resumed = launch(2, tiny_model, pref_data, tmp_path / "two", "--iters", "6", "--resume-from", "3")
    assert [e["step"] for e in first if e["event"] == "train"] == list(range(1, 7))  # rank 0 alone reports
    assert [e["step"] for e in resumed if e["event"] == "train"] == [4, 5, 6]
    for step, loss in curve(one).items():
        assert curve(first)[step] == pytest.approx(loss, abs=1e-4), step
        if step > 3:
            assert curve(resumed)[step] == pytest.approx(loss, abs=1e-4), step
    for step, acc in curve(one, "eval", "rewards/accuracies").items():
        assert curve(first, "eval", "rewards/accuracies")[step] == pytest.approx(acc, abs=1e-6)
    out = tmp_path / "two"
    assert find_checkpoint(out)["step"] == 6
    assert sorted(p.name for p in out.glob("ref_logps_train*")) == ["ref_logps_train.rank0.safetensors",
                                                                   "ref_logps_train.rank1.safetensors"]
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged if e["event"] == "train"] == list(range(1, 7))
