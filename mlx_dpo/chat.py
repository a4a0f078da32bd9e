"""The `chat` and `generate` commands: a terminal conversation, or one answer for scripts."""

from __future__ import annotations

import sys
from typing import Any, Iterable, Optional, TextIO

import mlx.nn as nn

from .config import GenerateConfig
from .errors import UserError
from .generate import stream_answer
from .model import load_tuned

HELP = "Commands: /reset clears the conversation, /system TEXT sets the system message, /quit leaves."


def _lines(inp: TextIO, out: TextIO) -> Iterable[str]:
    while True:
        if inp.isatty():
            out.write(">> ")
            out.flush()
        line = inp.readline()
        if not line:
            return
        yield line.rstrip("\n")


def reply(model: nn.Module, tokenizer: Any, messages: list[dict], gen: GenerateConfig, out: TextIO) -> str:
    """Stream the answer (both answers with --compare) to `out`; returns the tuned one."""
    variants = [("base", False), ("tuned", True)] if gen.compare else [(None, True)]
    text = ""
    for label, tuned in variants:
        if label:
            out.write(f"[{label}] ")
        parts = []
        for piece in stream_answer(model, tokenizer, messages, gen, tuned):
            parts.append(piece)
            out.write(piece)
            out.flush()
        out.write("\n")
        text = "".join(parts)
    return text


def load_for_generation(gen: GenerateConfig) -> tuple[nn.Module, Any]:
    if gen.compare and not gen.adapter_path:
        raise UserError("--compare needs --adapter-path (it answers with base and tuned)")
    loaded = load_tuned(gen.model, gen.adapter_path)
    return loaded.model, loaded.tokenizer


def chat(gen: GenerateConfig, inp: Optional[TextIO] = None, out: Optional[TextIO] = None) -> None:
    inp, out = inp or sys.stdin, out or sys.stdout
    model, tokenizer = load_for_generation(gen)
    system: Optional[str] = gen.system

    def fresh() -> list[dict]:
        return [{"role": "system", "content": system}] if system else []

    messages = fresh()
    out.write(HELP + "\n")
    for line in _lines(inp, out):
        text = line.strip()
        if not text:
            continue
        if text == "/quit":
            break
        if text == "/reset":
            messages = fresh()
            out.write("(conversation cleared)\n")
            continue
        if text.startswith("/system"):
            system = text[len("/system"):].strip() or None
            messages = fresh()
            out.write(f"(system message {'set' if system else 'removed'}; conversation cleared)\n")
            continue
        if text.startswith("/"):
            out.write(f"unknown command {text.split()[0]}. {HELP}\n")
            continue
        messages.append({"role": "user", "content": text})
        messages.append({"role": "assistant", "content": reply(model, tokenizer, messages, gen, out)})


def generate_once(gen: GenerateConfig, out: Optional[TextIO] = None) -> None:
    out = out or sys.stdout
    if not gen.prompt:
        raise UserError("generate needs --prompt TEXT")
    model, tokenizer = load_for_generation(gen)
    messages = ([{"role": "system", "content": gen.system}] if gen.system else []) + [
        {"role": "user", "content": gen.prompt}]
    reply(model, tokenizer, messages, gen, out)
