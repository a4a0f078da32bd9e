"""The terminal app, driven headless with Textual's Pilot against the tiny model and real subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

from mlx_dpo import config as C
from mlx_dpo.checkpoint import STATE_FILE, find_checkpoint
from tui.app import MlxDpoApp
from tui.exit_diagnosis import explain_exit
from tui.labeling import append_pair, count_rows, read_prompts
from tui.presets import EXAMPLE_FILES, PRESETS
from tui.runs import find_runs
from tui.widgets.config_pane import ConfigPane
from tui.widgets.data_pane import DataPane
from tui.widgets.length_chart import LengthChart
from tui.widgets.metric_plot import MetricPlot
from tui.widgets.pair_table import PairTable
from tui.widgets.runs_pane import RunsPane
from tui.widgets.train_pane import TrainPane

from conftest import run_module, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
SIZE = (120, 40)


def make_app(tmp_path: Path, root: Path | None = None, **settings) -> MlxDpoApp:
    return MlxDpoApp(C.TrainConfig(**settings), root=root or tmp_path, home=tmp_path / "home", available_bytes=None)


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await pilot.pause(0.05)


def static_text(app, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


def run(coro) -> None:
    asyncio.run(coro)


# --- Data ---------------------------------------------------------------------------------------

def test_picking_a_file_fills_the_preview_and_checks_it(tmp_path, tiny_model, pref_data):
    folder = tmp_path / "data"
    rows = [json.loads(line) for line in (pref_data / "train.jsonl").read_text().splitlines()][:12]
    write_jsonl(folder / "prefs.jsonl", rows)

    async def go():
        app = make_app(tmp_path, root=folder, model=str(tiny_model), max_length=24)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            app.screen.query_one("#data-tree").focus()
            await wait_for(pilot, lambda: app.screen.query_one("#data-tree").root.children, 10, "the tree")
            await pilot.press("down", "enter")  # the only file, right under the root
            table = app.screen.query_one(PairTable)
            await wait_for(pilot, lambda: table.row_count == 12, 30, "the preview")
            summary = static_text(app, "#data-summary")
            assert "train: 12" in summary and "tokens" in summary
            assert "truncat" in summary or "cut" in summary  # max_length 24 cuts these answers
            assert app.screen.query_one(LengthChart).display
            first = table.get_row_at(0)
            assert str(first[1]).startswith(rows[0]["prompt"][:10])
            # the choice flows into the config
            assert app.screen.query_one(ConfigPane).form_values()["data"].endswith("prefs.jsonl")

    run(go())


def test_a_bad_file_shows_its_error_with_the_line(tmp_path):
    folder = tmp_path / "data"
    write_jsonl(folder / "bad.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"},
                                       {"prompt": "a", "chosen": "b"}])
    (folder / "broken.json").write_text("{not json")

    async def go():
        app = make_app(tmp_path, root=folder)
        async with app.run_test(size=SIZE) as pilot:
            pane = app.screen.query_one(DataPane)
            pane.choose(str(folder / "bad.jsonl"))
            await wait_for(pilot, lambda: "error" in static_text(app, "#data-summary"), 30, "the row error")
            detail = static_text(app, "#data-detail")
            assert "bad.jsonl:2" in detail and "rejected" in detail
            pane.choose(str(folder / "broken.json"))
            await wait_for(pilot, lambda: "broken.json:1: malformed JSON" in static_text(app, "#data-detail"), 30,
                           "the JSON error")
            assert app.screen.query_one(PairTable).row_count == 0
            hub = app.screen.query_one("#data-hub")
            hub.focus()
            hub.value = str(folder / "missing.jsonl")
            await pilot.press("enter")
            await wait_for(pilot, lambda: "error:" in static_text(app, "#data-summary"), 30, "the missing file")
            assert "missing.jsonl" in static_text(app, "#data-summary")

    run(go())


# --- Model & config -----------------------------------------------------------------------------

def test_config_tab_validates_presets_estimates_and_saves_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def go():
        app = MlxDpoApp(C.TrainConfig(data="prefs.jsonl"), root=tmp_path, home=tmp_path / "home",
                        available_bytes=8e9)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f2")
            await pilot.click("#preset-8")
            await pilot.pause()
            pane = app.screen.query_one(ConfigPane)
            assert pane.form_values()["model"] == PRESETS["8 GB"]["model"]
            assert "Estimated peak memory: 0.6 GB" in static_text(app, "#cfg-memory")  # as in the example config
            assert "fits" in static_text(app, "#cfg-memory")
            command = static_text(app, "#cfg-command")
            assert command.startswith("python -m mlx_dpo train --model mlx-community/Qwen2.5-0.5B-Instruct-4bit")
            assert app.train_config is not None and app.train_config.batch_size == 1

            beta = app.screen.query_one("#cfg-beta")
            beta.value = "-1"
            await pilot.pause()
            assert app.train_config is None
            assert "beta must be > 0" in static_text(app, "#cfg-error")
            assert beta.has_class("-invalid-field")
            beta.value = "oops"
            await pilot.pause()
            assert "must be a number" in static_text(app, "#cfg-error")
            beta.value = "0.25"
            await pilot.pause()
            assert app.train_config is not None and app.train_config.beta == 0.25

            await pilot.click("#cfg-save")
            await pilot.pause()
            app.screen.query_one("#dialog-path").value = "saved.yaml"
            await pilot.press("enter")
            await pilot.pause()
            saved = C.build(C.TrainConfig, None, str(tmp_path / "saved.yaml"))
            assert saved == app.train_config
            # and the shown command rebuilds the same config
            from mlx_dpo.cli import build_parser, flags
            import shlex

            args = build_parser().parse_args(shlex.split(static_text(app, "#cfg-command"))[3:])
            assert C.build(C.TrainConfig, flags(args), None) == saved

            (tmp_path / "other.yaml").write_text("model: m\ndata: d.jsonl\nloss_type: ipo\nwarmup_steps: 7\n")
            await pilot.click("#cfg-load")
            await pilot.pause()
            app.screen.query_one("#dialog-path").value = "other.yaml"
            await pilot.press("enter")
            await pilot.pause()
            assert app.train_config.loss_type == "ipo" and app.train_config.warmup_steps == 7  # off-form key kept

    run(go())


def test_presets_are_the_example_configs():
    for name, preset in PRESETS.items():
        example = yaml.safe_load((ROOT / "examples" / "configs" / EXAMPLE_FILES[name]).read_text())
        assert {k: example[k] for k in preset} == preset


# --- Train --------------------------------------------------------------------------------------

def train_settings(tmp_path: Path, tiny_model: Path, pref_data: Path, **extra) -> dict:
    return dict(model=str(tiny_model), data=str(pref_data), adapter_path=str(tmp_path / "run"), batch_size=2,
                learning_rate=1e-3, steps_per_eval=2, val_batches=2, **extra)


def test_training_plots_live_and_writes_the_adapter(tmp_path, tiny_model, pref_data):
    async def go():
        app = make_app(tmp_path, **train_settings(tmp_path, tiny_model, pref_data, iters=4))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f3")
            await pilot.click("#train-start")
            pane = app.screen.query_one(TrainPane)
            loss = app.screen.query_one("#plot-loss", MetricPlot)
            runs = app.screen.query_one(RunsPane)
            # The exit reaches the pane first and the screen (which refreshes Runs) after it.
            await wait_for(pilot, lambda: not pane.running and pane.process is None and loss.points("train")
                           and runs.runs, 180, "the run to end")
            assert "Training finished" in static_text(app, "#train-status")
            assert loss.points("train") == 4 and loss.points("valid") == 2
            assert app.screen.query_one("#plot-acc", MetricPlot).points("train") == 4
            assert "ETA" in static_text(app, "#train-stats") and "tok/s" in static_text(app, "#train-stats")
            assert (tmp_path / "run" / "adapters.safetensors").is_file()
            # the finished run shows up in the Runs tab, and the Chat tab is pointed at it
            assert [r.status for r in runs.runs] == ["finished"]
            assert app.screen.query_one("#chat-adapter").value == str(tmp_path / "run")

            await pilot.press("f6")
            await pilot.click("#runs-eval")
            log = app.screen.query_one("#runs-log")
            await wait_for(pilot, lambda: any("tuned" in str(line.text) for line in log.lines), 120, "eval")

    run(go())


def test_stop_leaves_a_resumable_checkpoint_and_resume_continues(tmp_path, tiny_model, pref_data):
    async def go():
        app = make_app(tmp_path, **train_settings(tmp_path, tiny_model, pref_data, iters=100000, save_every=100000))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f3")
            await pilot.click("#train-start")
            pane = app.screen.query_one(TrainPane)
            loss = app.screen.query_one("#plot-loss", MetricPlot)
            await wait_for(pilot, lambda: loss.points("train") >= 2, 120, "two steps")
            await pilot.click("#train-stop")
            await wait_for(pilot, lambda: pane.process is None, 60, "the stop")
            assert "Stopped" in static_text(app, "#train-status")
            folder = tmp_path / "run"
            stopped_at = find_checkpoint(folder)["step"]
            assert stopped_at >= 2

            await pilot.click("#train-resume")
            await wait_for(pilot, lambda: pane.running, 30, "the resume")
            # the earlier points are replayed, then new steps continue after the checkpoint
            await wait_for(pilot, lambda: loss.series["train"][0] and loss.series["train"][0][-1] > stopped_at + 1,
                           120, "a step after the checkpoint")
            assert loss.series["train"][0][:stopped_at] == list(range(1, stopped_at + 1))
            await pilot.click("#train-stop")
            await wait_for(pilot, lambda: pane.process is None, 60, "the second stop")
            assert json.loads((folder / STATE_FILE).read_text())["step"] > stopped_at

    run(go())


def test_a_killed_run_keeps_the_ui_up_and_says_what_to_try(tmp_path, tiny_model, pref_data):
    async def go():
        app = make_app(tmp_path, **train_settings(tmp_path, tiny_model, pref_data, iters=100000))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f3")
            await pilot.click("#train-start")
            pane = app.screen.query_one(TrainPane)
            await wait_for(pilot, lambda: app.screen.query_one("#plot-loss", MetricPlot).points("train"), 120, "a step")
            os.kill(pane.process.proc.pid, signal.SIGKILL)  # what the kernel's OOM killer does
            await wait_for(pilot, lambda: pane.process is None, 30, "the exit")
            status = static_text(app, "#train-status")
            assert "killed" in status and "--batch-size" in status and "--grad-checkpoint" in status
            assert not app.screen.query_one("#train-start").disabled

    run(go())


def test_exit_diagnosis():
    assert explain_exit(0, [])[0] == "ok"
    assert explain_exit(130, [])[0] == "stopped"
    assert explain_exit(143, [])[0] == "stopped"
    assert explain_exit(-9, [])[0] == "oom"
    severity, text = explain_exit(1, ["RuntimeError: [METAL] Command buffer execution failed: Insufficient Memory"])
    assert severity == "oom" and "--max-length" in text
    assert explain_exit(2, ["error: data.jsonl:3: field 'chosen': missing"]) == ("error", "data.jsonl:3: field 'chosen': missing")


# --- Chat ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory, tiny_model, pref_data) -> Path:
    from mlx_dpo import train

    out = tmp_path_factory.mktemp("adapter") / "run"
    train(C.TrainConfig(model=str(tiny_model), data=str(pref_data), adapter_path=str(out), iters=3, batch_size=2,
                        learning_rate=5e-3, progress="none"))
    return out


def test_chat_streams_base_and_tuned_side_by_side(tmp_path, tiny_model, tiny_adapter):
    from mlx_dpo.config import GenerateConfig
    from mlx_dpo.generate import answer
    from mlx_dpo.model import load_tuned

    async def go():
        app = make_app(tmp_path, model=str(tiny_model))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f4")
            app.screen.query_one("#chat-adapter").value = str(tiny_adapter)
            app.screen.query_one("#chat-max-tokens").value = "24"
            app.screen.query_one("#chat-mode").value = "both"
            box = app.screen.query_one("#chat-input")
            box.focus()
            box.value = "Tell me about the cat."
            await pilot.press("enter")
            await wait_for(pilot, lambda: len(app.screen.query("ChatPane AnswerBox")) == 2, 10, "two answer boxes")
            boxes = {b.slot: b for b in app.screen.query("ChatPane AnswerBox")}
            chat = app.screen.query_one("ChatPane")
            await wait_for(pilot, lambda: not chat.pending, 60, "both answers")
            return {slot: (b.text, b.pieces) for slot, b in boxes.items()}

    result = asyncio.run(go())
    loaded = load_tuned(str(tiny_model), str(tiny_adapter))
    messages = [{"role": "user", "content": "Tell me about the cat."}]
    gen = GenerateConfig(max_tokens=24)
    for slot, tuned in (("base", False), ("tuned", True)):
        text, pieces = result[slot]
        assert text == answer(loaded.model, loaded.tokenizer, messages, gen, tuned)
        assert pieces > 1  # streamed, not delivered at once
    assert result["base"][0] != result["tuned"][0]


# --- Label --------------------------------------------------------------------------------------

def test_labeling_two_pairs_writes_rows_that_data_check_accepts(tmp_path, tiny_model):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Tell me about the cat.\nWhat is the river like?\nA third one.\n")
    out = tmp_path / "labels.jsonl"

    async def go():
        app = make_app(tmp_path, model=str(tiny_model))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f5")
            pane = app.screen.query_one("LabelPane")
            app.screen.query_one("#label-out").value = str(out)
            app.screen.query_one("#label-max-tokens").value = "12"
            source = app.screen.query_one("#label-prompts")
            source.focus()
            source.value = str(prompts)
            await pilot.press("enter")
            for key, index in (("1", 0), ("2", 1)):
                await wait_for(pilot, lambda: all(pane.texts.get(s) for s in "ab") and pane.index == index, 60,
                               "two answers")
                texts = dict(pane.texts)
                await pilot.press(key)
                await pilot.pause()
                row = json.loads(out.read_text().splitlines()[-1])
                chosen = texts["a"] if key == "1" else texts["b"]
                assert row == {"prompt": ["Tell me about the cat.", "What is the river like?"][index],
                               "chosen": chosen, "rejected": texts["b" if key == "1" else "a"]}
            assert "2" in static_text(app, "#label-count")
            await wait_for(pilot, lambda: all(pane.texts.get(s) for s in "ab"), 60, "the third prompt's answers")
            await pilot.press("t")  # a tie is counted, not written
            await pilot.pause()
            assert count_rows(out) == 2 and pane.ties == 1

    run(go())
    check = run_module("data", "check", str(out), "--model", str(tiny_model))
    assert check.returncode == 0, check.stderr
    import re

    assert re.search(r"^train\s+2\s+0\s+0\s", check.stdout, re.M), check.stdout


def test_labeling_helpers(tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "one"},
                                              {"prompt": [{"role": "user", "content": "two"}]}])
    assert read_prompts(data) == ["one", "two"]
    target = tmp_path / "sub" / "labels.jsonl"
    target.parent.mkdir()
    target.write_text('{"prompt": "x", "chosen": "y", "rejected": "z"}')  # no newline at the end
    assert append_pair(target, "p", "c", "r") == 2
    assert json.loads(target.read_text().splitlines()[1]) == {"prompt": "p", "chosen": "c", "rejected": "r"}


def test_runs_are_found_with_their_status(tmp_path, tiny_adapter):
    import shutil

    shutil.copytree(tiny_adapter, tmp_path / "a" / "done")
    stopped = tmp_path / "b"
    shutil.copytree(tiny_adapter, stopped)
    lines = (stopped / "metrics.jsonl").read_text().splitlines()
    (stopped / "metrics.jsonl").write_text("\n".join(l for l in lines if '"done"' not in l) + '\n{"torn')
    runs = {r.path.name: r for r in find_runs(tmp_path)}
    assert runs["done"].status == "finished" and runs["done"].step == 3
    assert runs["b"].status == "stopped" and runs["b"].resumable


def test_runs_tab_resumes_a_stopped_run(tmp_path, tiny_adapter):
    import shutil

    folder = tmp_path / "stopped"
    shutil.copytree(tiny_adapter, folder)
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    (folder / "metrics.jsonl").write_text("\n".join(l for l in lines if '"done"' not in l) + "\n")

    async def go():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f6")
            await pilot.pause()
            runs = app.screen.query_one(RunsPane)
            assert [r.status for r in runs.runs] == ["stopped"]
            await pilot.click("#runs-resume")
            await pilot.pause()
            pane = app.screen.query_one(TrainPane)
            assert app.screen.query_one("TabbedContent").active == "train"
            # the run's own length (3 steps) comes back with it, so it completes where it stopped
            assert app.train_config.iters == 3 and app.train_config.model == runs.runs[0].config["model"]
            await wait_for(pilot, lambda: pane.process is None and not pane.running, 120, "the resumed run")
            assert "Training finished" in static_text(app, "#train-status")
            assert app.screen.query_one("#plot-loss", MetricPlot).points("train") == 3  # replayed from disk
            assert '"event": "done"' in (folder / "metrics.jsonl").read_text()
        assert (tmp_path / "home" / "recent_models.json").is_file()

    run(go())


def test_quitting_during_a_run_stops_it_with_a_checkpoint(tmp_path, tiny_model, pref_data):
    async def go():
        app = make_app(tmp_path, **train_settings(tmp_path, tiny_model, pref_data, iters=100000, save_every=100000))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f3")
            await pilot.click("#train-start")
            await wait_for(pilot, lambda: app.screen.query_one("#plot-loss", MetricPlot).points("train"), 120,
                           "a step")
            await pilot.press("ctrl+q")
            await pilot.pause()
            await pilot.click("#choice-stop")
            await wait_for(pilot, lambda: not app.is_running, 60, "the app to quit")
        assert find_checkpoint(tmp_path / "run")["step"] >= 1

    run(go())
