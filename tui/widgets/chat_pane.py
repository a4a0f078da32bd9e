"""The Chat tab: talk to the tuned model, the base model, or both side by side."""

from __future__ import annotations

from typing import Optional

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, Select, Static

from mlx_dpo.config import GenerateConfig

from ..messages import AnswerDone, AnswerPiece
from .chat_turn import ChatTurn
from .model_picker import ModelPicker

MODES = {"tuned": ["tuned"], "base": ["base"], "both": ["base", "tuned"]}
HELP = "Enter sends · /system TEXT sets the system message · /reset (ctrl+l) starts over · ctrl+o switches base/tuned/both"


class ChatPane(Vertical):
    BINDINGS = [Binding("ctrl+o", "cycle_mode", "Mode"), Binding("ctrl+l", "reset", "New chat", show=False)]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.messages: list[dict] = []
        self.system: Optional[str] = None
        self.request = -1
        self.turn: Optional[ChatTurn] = None
        self.pending: set[str] = set()

    def compose(self) -> ComposeResult:
        yield ModelPicker("chat", id="chat-picker")
        with Horizontal(id="chat-options"):
            yield Label("answer with")
            yield Select([("tuned", "tuned"), ("base", "base"), ("side by side", "both")], value="tuned",
                         allow_blank=False, id="chat-mode", compact=True)
            yield Label("temp")
            yield Input("0.0", id="chat-temp", classes="small-input", compact=True)
            yield Label("max tokens")
            yield Input("256", id="chat-max-tokens", classes="small-input", compact=True)
        yield VerticalScroll(Static(HELP, id="chat-help"), id="chat-log")
        yield Input(placeholder="Message (Enter to send)", id="chat-input", compact=True)

    @property
    def mode(self) -> str:
        return self.query_one("#chat-mode", Select).value

    def action_cycle_mode(self) -> None:
        order = list(MODES)
        select = self.query_one("#chat-mode", Select)
        select.value = order[(order.index(self.mode) + 1) % len(order)]

    async def action_reset(self) -> None:
        self.messages = []
        self.model_host_cancel()
        await self.query_one("#chat-log").remove_children()
        await self.query_one("#chat-log").mount(Static(HELP, id="chat-help"))

    def model_host_cancel(self) -> None:
        self.app.model_host.cancel.set()
        self.pending.clear()

    def sampling(self) -> Optional[GenerateConfig]:
        try:
            temp = float(self.query_one("#chat-temp", Input).value)
            max_tokens = int(self.query_one("#chat-max-tokens", Input).value)
        except ValueError:
            self.notify("temp must be a number and max tokens a whole number", severity="error")
            return None
        if temp < 0 or max_tokens < 1:
            self.notify("temp must be >= 0 and max tokens >= 1", severity="error")
            return None
        return GenerateConfig(temp=temp, max_tokens=max_tokens)

    @on(Input.Submitted, "#chat-input")
    async def send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        event.input.value = ""
        if text == "/reset":
            await self.action_reset()
            return
        if text.startswith("/system"):
            self.system = text.removeprefix("/system").strip() or None
            self.messages = []
            self.notify(f"System message {'set' if self.system else 'cleared'}; the conversation starts over.")
            return
        picker = self.query_one(ModelPicker)
        if not picker.model:
            self.notify("Type a model (and an adapter folder) above first.", severity="error")
            return
        gen = self.sampling()
        if gen is None:
            return
        slots = MODES[self.mode]
        if "tuned" in slots and not picker.adapter:
            slots = ["base"]
            self.notify("No adapter folder: answering with the base model.", severity="warning")
        history = ([{"role": "system", "content": self.system}] if self.system else []) + self.messages
        history = history + [{"role": "user", "content": text}]
        self.messages.append({"role": "user", "content": text})
        log = self.query_one("#chat-log", VerticalScroll)
        for help_text in log.query("#chat-help"):
            await help_text.remove()
        self.turn = ChatTurn(text, slots)
        await log.mount(self.turn)
        log.scroll_end(animate=False)
        self.pending = set(slots)
        self.request = self.app.model_host.answer(
            picker.model, picker.adapter, history, [(s, s == "tuned", gen) for s in slots], self)

    async def on_answer_piece(self, message: AnswerPiece) -> None:
        if message.request != self.request or self.turn is None:
            return
        await self.turn.box(message.slot).add(message.text)
        self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)

    async def on_answer_done(self, message: AnswerDone) -> None:
        if message.request != self.request or self.turn is None:
            return
        await self.turn.box(message.slot).finish(message.text, message.error)
        self.pending.discard(message.slot)
        if not message.error:
            self.query_one(ModelPicker).mark_loaded()
        # the conversation continues from the tuned answer when both are shown
        if not self.pending and not message.error:
            kept = self.turn.box("tuned" if "tuned" in self.turn.slots else self.turn.slots[0]).text
            self.messages.append({"role": "assistant", "content": kept})
