"""The Runs tab: past runs on disk, with Resume, Evaluate, Fuse and Chat."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, DataTable, Input, RichLog, Static

from ..messages import CommandFinished, RunRequested
from ..runs import RunInfo, eval_split_for, find_runs
from ..subprocess_lines import LineProcess, mlx_dpo_command

SHOWN = ("model", "data", "loss_type", "beta", "learning_rate", "batch_size", "max_length", "lora_rank", "epochs",
         "iters", "init_adapter")


def _metric(event: dict, key: str, fmt: str = ".3f") -> str:
    return format(event[key], fmt) if key in event else "-"


class RunsPane(Vertical):
    class ChatRequested(Message):
        def __init__(self, model: str, adapter: str) -> None:
            super().__init__()
            self.model, self.adapter = model, adapter

    def __init__(self, root: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.runs: list[RunInfo] = []
        self.busy: Optional[LineProcess] = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="runs-bar"):
            yield Input(str(self.root), id="runs-root", compact=True)
            yield Button("Refresh", id="runs-refresh", compact=True)
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="runs-body"):
            with VerticalScroll(id="runs-detail-box"):
                yield Static("Select a run.", id="runs-detail")
            yield RichLog(id="runs-log", markup=True, wrap=True)
        with Horizontal(id="runs-buttons"):
            yield Button("Resume", id="runs-resume", variant="primary", compact=True)
            yield Button("Evaluate", id="runs-eval", compact=True)
            yield Button("Fuse", id="runs-fuse", compact=True)
            yield Button("Chat", id="runs-chat", compact=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("run", "model", "loss", "steps", "status", "val acc", "val margin")
        self.refresh_runs()

    def relative(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(path)

    @on(Button.Pressed, "#runs-refresh")
    @on(Input.Submitted, "#runs-root")
    def refresh_runs(self) -> None:
        self.root = Path(self.query_one("#runs-root", Input).value.strip() or ".").expanduser()
        self.runs = find_runs(self.root)
        table = self.query_one(DataTable)
        table.clear()
        for i, run in enumerate(self.runs):
            c, e = run.config, run.last_eval
            steps = f"{run.step}/{run.total_steps}" if run.total_steps else str(run.step)
            table.add_row(self.relative(run.path), Path(str(c.get("model", "?"))).name, c.get("loss_type", "?"), steps,
                          run.status, _metric(e, "rewards/accuracies", ".2f"), _metric(e, "rewards/margins"),
                          key=str(i))
        if not self.runs:
            self.query_one("#runs-detail", Static).update(
                f"No runs under {escape(str(self.root))} (folders with adapter_config.json).")

    @property
    def selected(self) -> Optional[RunInfo]:
        table = self.query_one(DataTable)
        if not self.runs or table.cursor_row is None or not 0 <= table.cursor_row < len(self.runs):
            return None
        return self.runs[table.cursor_row]

    @on(DataTable.RowHighlighted, "#runs-table")
    def show_run(self) -> None:
        run = self.selected
        if run is None:
            return
        lines = [f"[b]{escape(self.relative(run.path))}[/]  {run.status}, step {run.step}"]
        lines += [f"{k}: {escape(str(run.config[k]))}" for k in SHOWN if run.config.get(k) is not None]
        for title, event in (("last step", run.last_train), ("last validation", run.last_eval)):
            if event:
                lines.append(f"[b]{title}[/] (step {event.get('step')}): loss {_metric(event, 'loss')}  "
                             f"margin {_metric(event, 'rewards/margins')}  acc {_metric(event, 'rewards/accuracies', '.2f')}")
        self.query_one("#runs-detail", Static).update("\n".join(lines))

    def need_run(self) -> Optional[RunInfo]:
        run = self.selected
        if run is None:
            self.notify("Select a run first.", severity="warning")
        return run

    @on(Button.Pressed, "#runs-resume")
    def resume(self) -> None:
        run = self.need_run()
        if run is None:
            return
        if not run.resumable:
            self.notify("This run has no checkpoint to resume from" + (" (it finished)." if run.finished else "."),
                        severity="warning")
            return
        self.post_message(RunRequested(Path(self.relative(run.path)), run.config))

    @on(Button.Pressed, "#runs-chat")
    def chat(self) -> None:
        run = self.need_run()
        if run is not None:
            self.post_message(self.ChatRequested(str(run.config.get("model", "")), self.relative(run.path)))

    @on(Button.Pressed, "#runs-eval")
    def evaluate(self) -> None:
        run = self.need_run()
        if run is None:
            return
        c = run.config
        split, note = eval_split_for(str(c.get("data", "")))
        if note:
            self.query_one("#runs-log", RichLog).write(f"[yellow]{note}[/]")
        self.launch("Evaluate", mlx_dpo_command("eval", "--model", str(c.get("model", "")), "--adapter-path",
                                                str(run.path), "--eval-split", split, "--json"), run.path)

    @on(Button.Pressed, "#runs-fuse")
    def fuse(self) -> None:
        run = self.need_run()
        if run is None:
            return
        out = run.path / "fused_model"
        self.launch("Fuse", mlx_dpo_command("fuse", "--model", str(run.config.get("model", "")),
                                            "--adapter-path", str(run.path), "--save-path", str(out)), run.path)

    def launch(self, title: str, argv: list[str], folder: Path) -> None:
        if self.busy is not None and self.busy.running:
            self.notify("Wait for the running command to finish.", severity="warning")
            return
        self.query_one("#runs-log", RichLog).write(f"[b]{title}[/] [dim]{escape(' '.join(argv[1:]))}[/]")
        self.busy = LineProcess(argv)
        self.run_worker(self.watch(title, self.busy, folder), group="runs")

    async def watch(self, title: str, process: LineProcess, folder: Path) -> None:
        lines: list[str] = []
        code = await process.run(lines.append, lines.append)
        self.post_message(CommandFinished(title, code, "\n".join(lines), folder))

    def on_command_finished(self, message: CommandFinished) -> None:
        log = self.query_one("#runs-log", RichLog)
        if message.title == "Evaluate" and message.returncode == 0:
            try:
                result = json.loads(message.output[message.output.index("{"):])
                log.write(self.format_eval(result))
                return
            except ValueError:
                pass
        color = "green" if message.returncode == 0 else "red"
        tail = "\n".join(message.output.splitlines()[-6:])
        log.write(f"[{color}]{message.title} exited with code {message.returncode}[/]\n{escape(tail)}")

    @staticmethod
    def format_eval(result: dict) -> str:
        rows = []
        for name in ("base", "tuned"):
            m = result.get(name)
            if isinstance(m, dict):
                rows.append(f"{name:>6}: acc {_metric(m, 'rewards/accuracies', '.2f')}  "
                            f"margin {_metric(m, 'rewards/margins')}  loss {_metric(m, 'loss')}")
        return "[green]Evaluate[/]\n" + ("\n".join(rows) if rows else escape(json.dumps(result)[:400]))
