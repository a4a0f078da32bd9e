"""Streaming answers with mlx-lm's generation, tuned or base by toggling the adapters.

Base and tuned are the same model object: the base answer is generated
inside `adapters_disabled`, so comparing costs no reload and no memory.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import mlx.core as mx
import mlx.nn as nn

from .config import GenerateConfig
from .model import adapters_disabled


def prompt_ids(tokenizer: Any, messages: list[dict]) -> list[int]:
    """The conversation so far, ready for the assistant's next turn."""
    if getattr(tokenizer, "chat_template", None):
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
    text = "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages) + "\nAssistant: "
    return list(tokenizer.encode(text))


def stream_answer(model: nn.Module, tokenizer: Any, messages: list[dict], gen: GenerateConfig,
                  tuned: bool = True) -> Iterator[str]:
    """Text pieces of one answer as they are generated; seeded so base and tuned draw alike."""
    from mlx_lm.generate import stream_generate
    from mlx_lm.sample_utils import make_sampler

    ids = prompt_ids(tokenizer, messages)
    mx.random.seed(gen.seed)
    sampler = make_sampler(temp=gen.temp, top_p=gen.top_p)
    with contextlib.nullcontext() if tuned else adapters_disabled(model):
        for response in stream_generate(model, tokenizer, ids, max_tokens=gen.max_tokens, sampler=sampler):
            yield response.text


def answer(model: nn.Module, tokenizer: Any, messages: list[dict], gen: GenerateConfig, tuned: bool = True) -> str:
    return "".join(stream_answer(model, tokenizer, messages, gen, tuned))
