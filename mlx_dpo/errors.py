"""Errors a user can cause, rendered as one line that says where and what."""

from __future__ import annotations

from typing import Optional


def brief(value: object, limit: int = 60) -> str:
    """repr() for an error line: a user's 5 MB field must not become a 5 MB message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class UserError(Exception):
    """A mistake in the user's files, flags or data: the CLI prints one line, exits 2.

    `where` is the file (and line, and field) the mistake sits in, so the
    user can go straight to it: ``data.jsonl:12: field 'chosen': ...``.
    """

    def __init__(self, message: str, file: Optional[str] = None, line: Optional[int] = None,
                 field: Optional[str] = None):
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(f"{self.file}:{self.line}" if self.line is not None else str(self.file))
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        parts.append(self.message)
        return ": ".join(parts)
