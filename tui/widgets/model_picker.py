"""Model + adapter folder to generate with (Chat and Label tabs), loaded once on the MLX thread."""

from __future__ import annotations

from typing import Optional

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, Input, Static

from ..messages import ModelReady


class ModelPicker(Horizontal):
    class Loaded(Message):
        def __init__(self, picker: "ModelPicker") -> None:
            super().__init__()
            self.picker = picker

    def __init__(self, prefix: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.prefix = prefix
        self.ready: Optional[tuple[str, Optional[str]]] = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="model folder or hub id", id=f"{self.prefix}-model", classes="picker-model", compact=True)
        yield Input(placeholder="adapter folder (empty: base only)", id=f"{self.prefix}-adapter",
                    classes="picker-adapter", compact=True)
        yield Button("Load", id=f"{self.prefix}-load", classes="picker-load", compact=True)
        yield Static("loads on first use", id=f"{self.prefix}-state", classes="picker-state")

    @property
    def model(self) -> str:
        return self.query_one(f"#{self.prefix}-model", Input).value.strip()

    @property
    def adapter(self) -> Optional[str]:
        return self.query_one(f"#{self.prefix}-adapter", Input).value.strip() or None

    def suggest(self, model: Optional[str] = None, adapter: Optional[str] = None) -> None:
        """Fill in what the other tabs know, without overwriting what the user typed."""
        for value, wid in ((model, "model"), (adapter, "adapter")):
            box = self.query_one(f"#{self.prefix}-{wid}", Input)
            if value and (not box.value or wid == "adapter"):
                box.value = value

    @on(Button.Pressed)
    def load(self) -> None:
        if not self.model:
            self.set_state("[red]type a model[/]")
            return
        self.set_state("loading …")
        self.app.model_host.load(self.model, self.adapter, self)

    def on_model_ready(self, message: ModelReady) -> None:
        message.stop()
        if message.error:
            self.ready = None
            self.set_state(f"[b red]{escape(message.error)}[/]")
            return
        self.ready = (message.model, message.adapter)
        self.mark_loaded()
        self.post_message(self.Loaded(self))

    def mark_loaded(self) -> None:
        self.set_state("[green]base + adapter[/]" if self.adapter else "[green]base model[/]")

    def set_state(self, text: str) -> None:
        self.query_one(f"#{self.prefix}-state", Static).update(text)
