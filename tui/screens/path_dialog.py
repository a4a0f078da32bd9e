"""A modal that asks for a file path (save / load a config, prompts to label)."""

from __future__ import annotations

from typing import Optional

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label


class PathDialog(ModalScreen[Optional[str]]):
    CSS_PATH = "path_dialog.tcss"
    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", action: str = "OK") -> None:
        super().__init__()
        self.title_text, self.value, self.action_label = title, value, action

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="dialog-title")
            yield Input(self.value, id="dialog-path")
            with Horizontal(id="dialog-buttons"):
                yield Button(self.action_label, variant="primary", id="dialog-ok")
                yield Button("Cancel", id="dialog-cancel")

    @on(Input.Submitted)
    @on(Button.Pressed, "#dialog-ok")
    def ok(self) -> None:
        value = self.query_one(Input).value.strip()
        self.dismiss(value or None)

    @on(Button.Pressed, "#dialog-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
