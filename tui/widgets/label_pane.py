"""The Label tab: two sampled answers per prompt, a key press picks the better, a preference row is written."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static

from mlx_dpo.config import GenerateConfig
from mlx_dpo.errors import UserError

from ..labeling import append_pair, count_rows, read_prompts
from ..messages import AnswerDone, AnswerPiece
from .chat_turn import AnswerBox
from .model_picker import ModelPicker

# Two draws that differ in seed and temperature, so the pair is worth a judgement.
SAMPLERS = {"a": 0.7, "b": 1.0}


class LabelPane(Vertical):
    # Not in the footer: the buttons name their keys.
    BINDINGS = [Binding("1", "pick('a')", "A better", show=False), Binding("2", "pick('b')", "B better", show=False),
                Binding("t", "tie", "Tie", show=False), Binding("s", "skip", "Skip", show=False),
                Binding("r", "regenerate", "Again", show=False)]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.prompts: list[str] = []
        self.index = 0
        self.draw = 0
        self.request = -1
        self.texts: dict[str, Optional[str]] = {}
        self.ties = 0
        self.skipped = 0

    def compose(self) -> ComposeResult:
        yield ModelPicker("label", id="label-picker")
        with Horizontal(id="label-sources"):
            yield Input(placeholder="prompts: a .txt (one per line) or a data file, Enter", id="label-prompts", compact=True)
            yield Input(placeholder="or type a prompt, Enter", id="label-typed", compact=True)
        with Horizontal(id="label-output"):
            yield Label("save to")
            yield Input("labels.jsonl", id="label-out", compact=True)
            yield Label("max tokens")
            yield Input("128", id="label-max-tokens", classes="small-input", compact=True)
            yield Static("", id="label-count")
        yield Static("No prompt yet.", id="label-prompt")
        with Horizontal(id="label-answers"):
            yield AnswerBox("a", f"A (temp {SAMPLERS['a']})", id="label-a")
            yield AnswerBox("b", f"B (temp {SAMPLERS['b']})", id="label-b")
        with Horizontal(id="label-buttons"):
            yield Button("A is better [1]", id="label-pick-a", variant="success", compact=True)
            yield Button("B is better [2]", id="label-pick-b", variant="success", compact=True)
            yield Button("Tie [t]", id="label-tie", compact=True)
            yield Button("Skip [s]", id="label-skip", compact=True)
            yield Button("Again [r]", id="label-again", compact=True)

    def on_mount(self) -> None:
        self.show_count()

    @property
    def out_path(self) -> Path:
        return Path(self.query_one("#label-out", Input).value.strip() or "labels.jsonl").expanduser()

    def show_count(self) -> None:
        extra = f" · {self.ties} tie(s) · {self.skipped} skipped" if self.ties or self.skipped else ""
        self.query_one("#label-count", Static).update(f"[b]{count_rows(self.out_path)}[/] pairs in file{extra}")

    @on(Input.Changed, "#label-out")
    def out_changed(self) -> None:
        self.show_count()

    @on(Input.Submitted, "#label-prompts")
    def load_prompts(self, event: Input.Submitted) -> None:
        try:
            self.prompts = read_prompts(event.value.strip())
        except UserError as e:
            self.notify(str(e), severity="error", timeout=8)
            return
        if not self.prompts:
            self.notify("no prompts in that file", severity="warning")
            return
        self.index = 0
        self.generate()

    @on(Input.Submitted, "#label-typed")
    def typed_prompt(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        event.input.value = ""
        self.prompts.insert(self.index, text)
        self.generate()

    @property
    def prompt(self) -> Optional[str]:
        return self.prompts[self.index] if self.index < len(self.prompts) else None

    def generate(self) -> None:
        picker = self.query_one(ModelPicker)
        prompt = self.prompt
        if prompt is None:
            self.query_one("#label-prompt", Static).update("[b]All prompts done.[/] Load more or type one.")
            return
        if not picker.model:
            self.notify("Type a model (and an adapter folder) above first.", severity="error")
            return
        try:
            max_tokens = max(1, int(self.query_one("#label-max-tokens", Input).value))
        except ValueError:
            self.notify("max tokens must be a whole number", severity="error")
            return
        self.query_one("#label-prompt", Static).update(
            f"[b]prompt {self.index + 1}/{len(self.prompts)}[/] {escape(prompt)}")
        self.texts = {"a": None, "b": None}
        for slot in SAMPLERS:
            box = self.query_one(f"#label-{slot}", AnswerBox)
            box.text = ""
            box.remove_class("-error")
            box.query_one("Markdown").update("_generating …_")
        self.draw += 1
        slots = [(slot, picker.adapter is not None,
                  GenerateConfig(temp=temp, max_tokens=max_tokens, seed=2 * self.draw + i))
                 for i, (slot, temp) in enumerate(SAMPLERS.items())]
        self.request = self.app.model_host.answer(picker.model, picker.adapter,
                                                  [{"role": "user", "content": prompt}], slots, self)

    async def on_answer_piece(self, message: AnswerPiece) -> None:
        if message.request == self.request:
            box = self.query_one(f"#label-{message.slot}", AnswerBox)
            if box.stream is None:
                await box.query_one("Markdown").update("")
            await box.add(message.text)

    async def on_answer_done(self, message: AnswerDone) -> None:
        if message.request != self.request:
            return
        await self.query_one(f"#label-{message.slot}", AnswerBox).finish(message.text, message.error)
        self.texts[message.slot] = None if message.error else message.text
        if not message.error:
            self.query_one(ModelPicker).mark_loaded()
        if all(slot in self.texts and self.texts[slot] is not None for slot in SAMPLERS):
            self.query_one("#label-pick-a", Button).focus()

    # --- judgements ---------------------------------------------------------------

    def ready(self) -> bool:
        if self.prompt is None or any(self.texts.get(s) is None for s in SAMPLERS):
            self.notify("Wait for both answers.", severity="warning")
            return False
        return True

    def action_pick(self, slot: str) -> None:
        if not self.ready():
            return
        chosen, rejected = self.texts[slot], self.texts["b" if slot == "a" else "a"]
        if not chosen.strip() or not rejected.strip():
            self.notify("An answer is empty: press r for new answers, or skip.", severity="warning")
            return
        if chosen.strip() == rejected.strip():
            self.notify("The answers are the same: that teaches nothing. Press r for new ones, or skip.",
                        severity="warning")
            return
        try:
            append_pair(self.out_path, self.prompt, chosen, rejected)
        except OSError as e:
            self.notify(f"cannot write {self.out_path}: {e.strerror}", severity="error")
            return
        self.advance()

    def action_tie(self) -> None:
        if self.ready():
            self.ties += 1  # DPO needs a preference: a tie is counted, not written
            self.advance()

    def action_skip(self) -> None:
        if self.prompt is not None:
            self.skipped += 1
            self.advance()

    def action_regenerate(self) -> None:
        if self.prompt is not None:
            self.generate()

    def advance(self) -> None:
        self.index += 1
        self.show_count()
        self.generate()

    @on(Button.Pressed, "#label-pick-a")
    def pressed_a(self) -> None:
        self.action_pick("a")

    @on(Button.Pressed, "#label-pick-b")
    def pressed_b(self) -> None:
        self.action_pick("b")

    @on(Button.Pressed, "#label-tie")
    def pressed_tie(self) -> None:
        self.action_tie()

    @on(Button.Pressed, "#label-skip")
    def pressed_skip(self) -> None:
        self.action_skip()

    @on(Button.Pressed, "#label-again")
    def pressed_again(self) -> None:
        self.action_regenerate()
