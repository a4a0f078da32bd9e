"""A modal question with a few answers (overwrite or resume a run, quit while training)."""

from __future__ import annotations

from typing import Optional

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ChoiceDialog(ModalScreen[Optional[str]]):
    CSS_PATH = "choice_dialog.tcss"
    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, question: str, choices: list[tuple[str, str]]) -> None:
        """`choices`: (answer id, button label); the first is the default."""
        super().__init__()
        self.question, self.choices = question, choices

    def compose(self) -> ComposeResult:
        with Vertical(id="choice"):
            yield Static(self.question, id="choice-question")
            with Horizontal(id="choice-buttons"):
                for i, (answer, label) in enumerate(self.choices):
                    yield Button(label, id=f"choice-{answer}", variant="primary" if i == 0 else "default")
                yield Button("Cancel", id="choice-cancel")

    def on_mount(self) -> None:
        self.query_one("#choice-buttons Button").focus()

    @on(Button.Pressed)
    def picked(self, event: Button.Pressed) -> None:
        answer = (event.button.id or "").removeprefix("choice-")
        self.dismiss(None if answer == "cancel" else answer)

    def action_cancel(self) -> None:
        self.dismiss(None)
