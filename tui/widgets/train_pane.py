"""The Train tab: runs `python -m mlx_dpo train --progress json` and plots what it reports."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Button, ProgressBar, RichLog, Static

from mlx_dpo import config as C
from mlx_dpo.checkpoint import holds_run
from mlx_dpo.run import METRICS_FILE

from ..exit_diagnosis import explain_exit
from ..messages import TrainEvent, TrainExited, TrainLog
from ..subprocess_lines import LineProcess, mlx_dpo_command
from .metric_plot import MetricPlot

PLOTS = (("plot-loss", "loss", "loss"), ("plot-margin", "reward margin", "rewards/margins"),
         ("plot-acc", "reward accuracy", "rewards/accuracies"))


def _memory(gb: float) -> str:
    return f"{gb:.2f} GB" if gb >= 0.1 else f"{gb * 1000:.0f} MB"


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class TrainPane(Vertical):
    def __init__(self, cwd: Optional[Path] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cwd = cwd
        self.process: Optional[LineProcess] = None
        self.adapter_path = ""
        self.first_step = 0
        self.total_steps = 0
        self.stopping = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="train-bar"):
            yield Button("Start", id="train-start", variant="success", compact=True)
            yield Button("Stop", id="train-stop", variant="error", disabled=True, compact=True)
            yield Button("Resume", id="train-resume", variant="primary", compact=True)
            yield Static("Ready. Settings come from the Model & config tab.", id="train-status")
        with Horizontal(id="train-progress-row"):
            # Determinate when idle: an indeterminate bar animates, and keeps an idle app busy redrawing.
            yield ProgressBar(total=1, show_eta=False, id="train-progress")
            yield Static("", id="train-stats")
        with Grid(id="train-plots"):
            for wid, title, _ in PLOTS:
                yield MetricPlot(title, ("train", "valid"), id=wid)
        yield RichLog(id="train-log", markup=True, wrap=True, max_lines=2000)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    # --- starting and stopping ------------------------------------------------

    def start(self, resume: bool = False, overwrite: bool = False, cfg: Optional[C.TrainConfig] = None) -> None:
        cfg = cfg or getattr(self.app, "train_config", None)
        if self.running:
            self.notify("A run is already going.", severity="warning")
            return
        if cfg is None:
            self.set_status("[b red]The settings are not valid yet: see the Model & config tab.[/]")
            return
        folder = Path(self.cwd or ".") / cfg.adapter_path
        if not resume and not overwrite and holds_run(folder):
            from ..screens.choice_dialog import ChoiceDialog

            self.app.push_screen(
                ChoiceDialog(f"{cfg.adapter_path} already holds a run.",
                             [("resume", "Resume it"), ("overwrite", "Start over")]),
                lambda answer: answer and self.start(resume=answer == "resume", overwrite=answer == "overwrite",
                                                     cfg=cfg))
            return
        run_cfg = dataclasses.replace(cfg, progress="json", resume=resume, overwrite=overwrite and not resume)
        argv = mlx_dpo_command("train", *C.to_flags(run_cfg))
        self.adapter_path = cfg.adapter_path
        self.stopping = False
        for plot in self.query(MetricPlot):
            plot.reset()
        if resume:
            self.replay(folder / METRICS_FILE)
        log = self.query_one(RichLog)
        log.write(f"[dim]$ {escape(' '.join(argv[1:]))}[/]")
        self.set_status("Starting: loading data and model …")
        self.query_one("#train-progress", ProgressBar).update(total=None, progress=0)
        self.set_running(True)
        self.app.remember_model(cfg.model)  # offered again in the model field next time
        self.process = LineProcess(argv, cwd=str(self.cwd) if self.cwd else None)
        self.run_worker(self.watch_process(self.process, cfg.adapter_path), exclusive=True, group="train")

    async def watch_process(self, process: LineProcess, adapter_path: str) -> None:
        """Only reads and posts: every widget change happens in the message handlers."""

        def stdout(line: str) -> None:
            try:
                event = json.loads(line)
            except ValueError:
                self.post_message(TrainLog(line))
                return
            self.post_message(TrainEvent(event) if isinstance(event, dict) else TrainLog(line))

        def stderr(line: str) -> None:
            self.post_message(TrainLog(line))

        code = await process.run(stdout, stderr)
        self.post_message(TrainExited(code, list(process.stderr_tail), adapter_path))

    def stop(self) -> None:
        if self.running and not self.stopping:
            self.stopping = True
            self.process.stop()
            self.set_status("Stopping after this step; saving a checkpoint …")

    def replay(self, metrics: Path) -> None:
        """A resumed run's earlier points, so the curves read as one run."""
        if not metrics.is_file():
            return
        for line in metrics.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.plot(event)

    @on(Button.Pressed, "#train-start")
    def start_pressed(self) -> None:
        self.start()

    @on(Button.Pressed, "#train-resume")
    def resume_pressed(self) -> None:
        self.start(resume=True)

    @on(Button.Pressed, "#train-stop")
    def stop_pressed(self) -> None:
        self.stop()

    def set_running(self, running: bool) -> None:
        start, resume, stop = (self.query_one(f"#train-{name}", Button) for name in ("start", "resume", "stop"))
        focused = self.app.focused
        start.disabled = resume.disabled = running
        stop.disabled = not running
        # Hand focus over ourselves: if a disabled button's focus goes wherever Textual puts it,
        # it can land in another tab and switch the tabs.
        if running and focused in (start, resume):
            stop.focus()
        elif not running and focused is stop:
            start.focus()

    def set_status(self, text: str) -> None:
        self.query_one("#train-status", Static).update(text)

    # --- what the run reports -------------------------------------------------

    def plot(self, event: dict) -> None:
        kind = event.get("event")
        if kind not in ("train", "eval"):
            return
        series = "train" if kind == "train" else "valid"
        for wid, _, key in PLOTS:
            if key in event:
                self.query_one(f"#{wid}", MetricPlot).add(series, event["step"], event[key])

    def on_train_event(self, message: TrainEvent) -> None:
        event, log = message.event, self.query_one(RichLog)
        kind = event.get("event")
        self.plot(event)
        if kind == "memory":
            log.write(f"estimated peak memory {_memory(event['estimated_peak_gb'])}")
        elif kind == "reference":
            self.set_status(f"Reference log-probs ({event['split']}): batch {event['batch']}/{event['batches']}")
        elif kind == "start":
            self.total_steps, self.first_step = event["total_steps"], event["step"]
            self.query_one("#train-progress", ProgressBar).update(total=self.total_steps, progress=event["step"])
            self.set_status(f"Training: {event['train_pairs']} pairs, {event['trainable_parameters']:,} LoRA parameters")
        elif kind == "train":
            self.query_one("#train-progress", ProgressBar).update(progress=event["step"])
            done = event["step"] - self.first_step
            eta = event["elapsed_s"] / done * (event["total_steps"] - event["step"]) if done else 0
            self.query_one("#train-stats", Static).update(
                f"step {event['step']}/{event['total_steps']} · ETA {_clock(eta)} · "
                f"{event['tokens_per_second']:.0f} tok/s · peak {_memory(event['peak_memory_gb'])} · epoch {event['epoch']}")
            log.write(f"step {event['step']}: loss {event['loss']:.4f}  margin {event['rewards/margins']:.3f}  "
                      f"acc {event['rewards/accuracies']:.2f}")
        elif kind == "eval":
            best = "  [green](best)[/]" if event.get("best") else ""
            log.write(f"[b]step {event['step']} validation[/]: loss {event.get('loss', float('nan')):.4f}  "
                      f"acc {event.get('rewards/accuracies', float('nan')):.2f}{best}")
        elif kind == "save":
            log.write(f"[dim]checkpoint saved: {escape(event['path'])}[/]")
        elif kind == "message":
            color = {"warning": "yellow", "error": "red"}.get(event.get("level"), "white")
            log.write(f"[{color}]{escape(event['text'])}[/]")
        elif kind == "done":
            log.write(f"[b green]adapters saved to {escape(event['adapter_path'])}[/]")

    def on_train_log(self, message: TrainLog) -> None:
        self.query_one(RichLog).write(f"[dim]{escape(message.line)}[/]")

    def on_train_exited(self, message: TrainExited) -> None:
        self.process = None
        bar = self.query_one("#train-progress", ProgressBar)
        if bar.total is None:  # it died before its first step
            bar.update(total=1, progress=0)
        self.set_running(False)
        severity, text = explain_exit(message.returncode, message.stderr_tail)
        color = {"ok": "green", "stopped": "yellow"}.get(severity, "red")
        self.set_status(f"[b {color}]{escape(text)}[/]")
        self.query_one(RichLog).write(f"[{color}]{escape(text)}[/] [dim](exit code {message.returncode}"
                                      f")[/]")
        if severity == "ok":
            self.notify(f"Adapters in {message.adapter_path}. Open the Chat tab to try them.")
