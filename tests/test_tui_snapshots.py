"""Snapshots of the main tabs (pytest-textual-snapshot). After a deliberate UI change, review and accept with
`python -m pytest tests/test_tui_snapshots.py --snapshot-update`.

Everything shown is fixed: paths are relative to the repo, the memory to compare with is given, the
Train tab is fed a fixed sequence of events, and cursors do not blink (a slow machine would otherwise
catch a focused input's cursor in its off half-second).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mlx_dpo import config as C
from tui.app import MlxDpoApp
from tui.messages import TrainEvent
from tui.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(120, 40), (80, 24)]


@pytest.fixture(autouse=True)
def in_repo(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MLX_DPO_HOME", str(tmp_path / "home"))


def app(**settings) -> MlxDpoApp:
    return MlxDpoApp(C.TrainConfig(**settings), root=Path("examples"), home=Path("/nonexistent"),
                     available_bytes=16e9)


async def settle(pilot, condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the app did not settle"
        await pilot.pause(0.05)
    await pilot.pause()


async def steady(pilot, *keys: str) -> None:
    """Press `keys`, then stop every cursor blinking."""
    await pilot.press(*keys)
    for widget in pilot.app.screen.query("Input, TextArea"):
        widget.cursor_blink = False
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_data_tab(snap_compare, size):
    async def pick(pilot):
        pane = pilot.app.screen.query_one("DataPane")
        pane.choose("examples/data/conversational.jsonl")
        await settle(pilot, lambda: pilot.app.screen.query_one("PairTable").row_count > 0)
        await steady(pilot)

    assert snap_compare(app(), terminal_size=size, run_before=pick)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_config_tab(snap_compare, size):
    settings = dict(PRESETS["16 GB"], data="examples/data/conversational.jsonl", adapter_path="runs/llama3b-dpo")
    assert snap_compare(app(**settings), terminal_size=size, run_before=lambda pilot: steady(pilot, "f2"))


def events() -> list[dict]:
    out = [{"event": "memory", "estimated_peak_gb": 0.61},
           {"event": "start", "total_steps": 12, "step": 0, "train_pairs": 48, "valid_pairs": 8,
            "trainable_parameters": 540672}]
    for step in range(1, 9):
        out.append({"event": "train", "step": step, "total_steps": 12, "epoch": 1, "loss": 0.693 - 0.06 * step,
                    "rewards/margins": 0.08 * step, "rewards/accuracies": min(1.0, 0.4 + 0.08 * step),
                    "learning_rate": 5e-6, "tokens_per_second": 812.0, "peak_memory_gb": 0.58,
                    "elapsed_s": 3.0 * step})
        if step % 4 == 0:
            out.append({"event": "eval", "step": step, "loss": 0.7 - 0.05 * step, "rewards/margins": 0.07 * step,
                        "rewards/accuracies": 0.5 + 0.05 * step, "best": True})
            out.append({"event": "save", "step": step, "path": f"runs/demo/{step:07d}_adapters.safetensors"})
    return out


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_train_tab_with_a_run_in_progress(snap_compare, size):
    async def feed(pilot):
        await pilot.press("f3")
        pane = pilot.app.screen.query_one("TrainPane")
        for event in events():
            pane.post_message(TrainEvent(event))
        await settle(pilot, lambda: pilot.app.screen.query_one("#plot-loss").points("train") == 8)
        await steady(pilot)

    assert snap_compare(app(), terminal_size=size, run_before=feed)


@pytest.mark.parametrize("tab", ["chat", "label", "runs"])
def test_other_tabs(snap_compare, tab):
    keys = {"chat": "f4", "label": "f5", "runs": "f6"}
    assert snap_compare(app(model="mlx-community/Qwen2.5-0.5B-Instruct-4bit"), terminal_size=(120, 40),
                        run_before=lambda pilot: steady(pilot, keys[tab]))
