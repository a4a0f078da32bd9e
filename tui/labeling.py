"""Human labeling: prompts in, preference rows out (the standard prompt/chosen/rejected format)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlx_dpo.data import DATA_SUFFIXES, read_rows
from mlx_dpo.errors import UserError


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per line of a .txt file, or the `prompt` of each row of a data file."""
    path = Path(path)
    if not path.is_file():
        raise UserError("prompt file not found", file=str(path))
    if path.suffix not in DATA_SUFFIXES:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    prompts = []
    for line, row in read_rows(path):
        if isinstance(row, UserError):
            raise row
        prompt = row.get("prompt") if isinstance(row, dict) else None
        if isinstance(prompt, list):  # conversational: the last user turn is what gets answered
            prompt = next((m.get("content") for m in reversed(prompt) if isinstance(m, dict)
                           and m.get("role") == "user"), None)
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError("no prompt text in this row", file=str(path), line=line, field="prompt")
        prompts.append(prompt)
    return prompts


def append_pair(path: str | Path, prompt: str, chosen: str, rejected: str) -> int:
    """Append one row and flush it to disk (labels are hand-made; none may be lost); returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    needs_newline = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    with open(path, "a", encoding="utf-8") as f:
        if needs_newline:
            f.write("\n")
        f.write(json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return count_rows(path)


def count_rows(path: str | Path) -> int:
    path = Path(path)
    if not path.is_file():
        return 0
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
