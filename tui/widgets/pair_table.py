"""Preview of preference pairs: one row per pair, conversations flattened to readable text."""

from __future__ import annotations

from rich.text import Text

from textual.widgets import DataTable

from mlx_dpo.data import PreferencePair

CELL = 34


def readable(value: str | list) -> str:
    """A message list as "role: text" turns; plain text as is."""
    if isinstance(value, str):
        return value
    if len(value) == 1 and isinstance(value[0], dict):  # a single answer turn: its role says nothing
        return str(value[0].get("content", ""))
    return " | ".join(f"{m.get('role', '?')}: {m.get('content', '')}" for m in value if isinstance(m, dict))


def one_line(text: str, width: int = CELL) -> Text:
    flat = " ".join(text.split())
    return Text(flat if len(flat) <= width else flat[: width - 1] + "…")


class PairTable(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.add_columns("#", "prompt", "chosen", "rejected", "where")

    def show(self, pairs: list[PreferencePair], limit: int = 500) -> None:
        self.clear()
        for i, pair in enumerate(pairs[:limit]):
            prompt = readable(pair.prompt)
            self.add_row(str(i + 1), one_line(prompt), one_line(readable(pair.chosen)),
                         one_line(readable(pair.rejected)), pair.where.rsplit("/", 1)[-1], key=str(i))
