"""One exchange in the Chat tab: the user's message and one or two streamed Markdown answers."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Markdown, Static
from textual.widgets._markdown import MarkdownStream

TITLES = {"base": "base (adapters off)", "tuned": "tuned", "a": "answer A", "b": "answer B"}


class AnswerBox(Vertical):
    """A titled Markdown answer that grows as pieces arrive."""

    def __init__(self, slot: str, title: str = "", **kwargs) -> None:
        super().__init__(classes="answer", **kwargs)
        self.slot = slot
        self.border_title = title or TITLES.get(slot, slot)
        self.text = ""
        self.pieces = 0
        self.stream: MarkdownStream | None = None

    def compose(self) -> ComposeResult:
        yield Markdown("", classes="answer-text")

    async def add(self, piece: str) -> None:
        if self.stream is None:
            self.stream = Markdown.get_stream(self.query_one(Markdown))
        self.text += piece
        self.pieces += 1
        await self.stream.write(piece)

    async def finish(self, text: str, error: str = "") -> None:
        if self.stream is not None:
            await self.stream.stop()
            self.stream = None
        self.text = text
        body = text or "_(empty answer)_"
        if error:
            body = (text + "\n\n" if text else "") + f"**error:** {error}"
            self.add_class("-error")
        await self.query_one(Markdown).update(body)


class ChatTurn(Vertical):
    def __init__(self, user: str, slots: list[str]) -> None:
        super().__init__(classes="turn")
        self.user, self.slots = user, slots

    def compose(self) -> ComposeResult:
        yield Static(f"[b]you[/] {escape(self.user)}", classes="user")
        with Horizontal(classes="answers"):
            for slot in self.slots:
                yield AnswerBox(slot)

    def box(self, slot: str) -> AnswerBox:
        return next(b for b in self.query(AnswerBox) if b.slot == slot)
