"""The Data tab: pick a file, folder or hub dataset; preview its pairs; check it in the background."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.binding import Binding
from textual.widgets import DirectoryTree, Input, Label, Static

from mlx_dpo.data import DATA_SUFFIXES
from mlx_dpo.errors import UserError

from ..data_check_job import check_source
from ..messages import DataChecked, DataChosen, DataFailed
from .data_tree import DataTree
from .length_chart import LengthChart
from .pair_table import PairTable, readable


def _has_splits(folder: Path) -> bool:
    return any((folder / f"train{s}").is_file() for s in DATA_SUFFIXES) or any(folder.glob("train*.parquet"))


class DataPane(Vertical):
    BINDINGS = [Binding("ctrl+r", "recheck", "Recheck")]
    def __init__(self, root: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.source = ""
        self.splits: dict = {}

    def compose(self) -> ComposeResult:
        with Horizontal(id="data-main"):
            with Vertical(id="data-side"):
                yield Label("Data file or folder")
                yield DataTree(self.root, id="data-tree")
                yield Input(placeholder="or a hub dataset id, Enter", id="data-hub", compact=True)
            with Vertical(id="data-body"):
                yield Static("Pick a .jsonl/.json/.parquet file or a folder with train/valid/test files.",
                             id="data-summary")
                yield PairTable(id="data-preview")
                with Horizontal(id="data-lower"):
                    yield LengthChart(id="data-lengths")
                    with VerticalScroll(id="data-detail-box"):
                        yield Static("", id="data-detail")

    @on(DirectoryTree.FileSelected)
    def file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.choose(str(event.path))

    @on(DirectoryTree.DirectorySelected)
    def folder_selected(self, event: DirectoryTree.DirectorySelected) -> None:
        event.stop()
        if _has_splits(event.path):  # a folder in mlx-lm's train/valid/test layout is a data source too
            self.choose(str(event.path))

    @on(Input.Submitted, "#data-hub")
    def hub_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.choose(event.value.strip())

    def action_recheck(self) -> None:
        self.recheck()

    def recheck(self) -> None:
        if self.source:
            self.choose(self.source)

    def choose(self, source: str) -> None:
        path = Path(source)
        if path.is_absolute():  # shorter to read, and the command line it ends up in stays portable
            try:
                source = str(path.relative_to(Path.cwd()))
            except ValueError:
                pass
        self.source = source
        self.query_one("#data-summary", Static).update(f"Checking {source} …")
        self.post_message(DataChosen(source))
        self.check(source, self.app.draft_config(data=source))

    @work(thread=True, exclusive=True, group="data-check")
    def check(self, source: str, config) -> None:
        """Reading and tokenizing can take seconds on big files: off the event loop, reporting by message."""
        try:
            splits, results, note = check_source(source, config)
        except UserError as e:
            self.post_message(DataFailed(source, str(e)))
            return
        except Exception as e:  # a malformed file must not take the UI down
            self.post_message(DataFailed(source, f"{e.__class__.__name__}: {e}"))
            return
        self.post_message(DataChecked(source, splits, results, note))

    def on_data_failed(self, message: DataFailed) -> None:
        if message.source != self.source:
            return
        self.splits = {}
        self.query_one(PairTable).clear()
        self.query_one(LengthChart).display = False
        self.query_one("#data-summary", Static).update(f"[b red]error:[/] {_escape(message.error)}")
        self.query_one("#data-detail", Static).update("")

    def on_data_checked(self, message: DataChecked) -> None:
        if message.source != self.source:
            return
        self.splits = message.splits
        counts = "  ".join(f"{name}: {len(s.pairs)}" for name, s in message.splits.items())
        errors = [e for s in message.splits.values() for e in s.errors]
        identical = sum(s.identical_skipped for s in message.splits.values())
        lines = [f"[b]{_escape(message.source)}[/]  pairs  {counts}"
                 + (f"  (identical skipped: {identical})" if identical else "")]
        config = self.app.draft_config()
        max_length = config.max_length if config else 1024
        if message.results:
            train = message.results[0]
            stats = train["lengths"]
            lines.append("tokens  " + "  ".join(f"{k} mean {v['mean']:.0f} max {v['max']}" for k, v in stats.items()))
            notes = train["report"].messages(max_length)
            lines.append("; ".join(notes) if notes else f"nothing truncated at max length {max_length}")
            self.query_one(LengthChart).show(train["pair_lengths"], max_length)
        self.query_one(LengthChart).display = bool(message.results)
        if message.note:
            lines.append(f"[dim]{_escape(message.note)}[/]")
        if errors:
            lines.append(f"[b red]{len(errors)} error(s)[/] (below)")
        self.query_one("#data-summary", Static).update("\n".join(lines))
        self.query_one(PairTable).show(message.splits["train"].pairs)
        self.query_one("#data-detail", Static).update(
            "\n".join(f"[red]{_escape(e)}[/]" for e in errors) if errors else "Select a row to read the whole pair.")

    @on(PairTable.RowHighlighted)
    def show_pair(self, event: PairTable.RowHighlighted) -> None:
        pairs = self.splits.get("train").pairs if self.splits.get("train") else []
        index = int(event.row_key.value) if event.row_key and event.row_key.value is not None else -1
        if not 0 <= index < len(pairs):
            return
        pair = pairs[index]
        errors = [e for s in self.splits.values() for e in s.errors]
        text = [f"[b]{_escape(pair.where)}[/]"]
        if pair.system:
            text.append(f"[b]system[/] {_escape(pair.system)}")
        text += [f"[b]prompt[/] {_escape(readable(pair.prompt))}", f"[b green]chosen[/] {_escape(readable(pair.chosen))}",
                 f"[b red]rejected[/] {_escape(readable(pair.rejected))}"]
        text += [f"[red]{_escape(e)}[/]" for e in errors]
        self.query_one("#data-detail", Static).update("\n".join(text))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(str(text))
