"""Typed messages: workers and threads report only through these, never by touching widgets."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from textual.message import Message


class DataChosen(Message):
    """The user picked a data source (file, folder or hub id) in the Data tab."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source


class DataChecked(Message):
    def __init__(self, source: str, splits: dict, results: Optional[list[dict]], note: str = "") -> None:
        super().__init__()
        self.source, self.splits, self.results, self.note = source, splits, results, note


class DataFailed(Message):
    def __init__(self, source: str, error: str) -> None:
        super().__init__()
        self.source, self.error = source, error


class ConfigChanged(Message):
    """The Model & config tab holds a valid config (or `None` and the reason it is not valid)."""

    def __init__(self, config: Any, error: str = "") -> None:
        super().__init__()
        self.config, self.error = config, error


class TrainEvent(Message):
    """One `--progress json` event of the training subprocess."""

    def __init__(self, event: dict) -> None:
        super().__init__()
        self.event = event


class TrainLog(Message):
    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line


class TrainExited(Message):
    def __init__(self, returncode: int, stderr_tail: list[str], adapter_path: str) -> None:
        super().__init__()
        self.returncode, self.stderr_tail, self.adapter_path = returncode, stderr_tail, adapter_path


class ModelReady(Message):
    def __init__(self, model: str, adapter: Optional[str], error: str = "") -> None:
        super().__init__()
        self.model, self.adapter, self.error = model, adapter, error


class AnswerPiece(Message):
    """A streamed piece of an answer; `slot` names the place it goes (e.g. "base", "tuned", "a", "b")."""

    def __init__(self, request: int, slot: str, text: str) -> None:
        super().__init__()
        self.request, self.slot, self.text = request, slot, text


class AnswerDone(Message):
    def __init__(self, request: int, slot: str, text: str, error: str = "") -> None:
        super().__init__()
        self.request, self.slot, self.text, self.error = request, slot, text, error


class CommandFinished(Message):
    """A helper command of the Runs tab (eval, fuse) ended."""

    def __init__(self, title: str, returncode: int, output: str, folder: Path) -> None:
        super().__init__()
        self.title, self.returncode, self.output, self.folder = title, returncode, output, folder


class RunRequested(Message):
    """Open a past run in the Train tab and resume it."""

    def __init__(self, folder: Path, config: dict) -> None:
        super().__init__()
        self.folder, self.config = folder, config
