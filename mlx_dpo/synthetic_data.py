"""A small preference task whose preference is visible in the tokens.

Chosen answers are warm and complete ("Sure! The cat is quiet, and I like
it a lot."), rejected ones are curt ("No. The cat is quiet."): the same
facts, a consistent difference in style. A model that learns the style
prefers chosen on prompts it has never seen, so held-out accuracy shows
whether DPO worked.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterator

SUBJECTS = [
    "cat", "dog", "river", "garden", "train", "city", "song", "winter", "coffee",
    "book", "mountain", "ocean", "forest", "bridge", "market", "storm", "lamp",
    "bicycle", "kitchen", "school", "island", "desert", "piano", "castle",
    "harbor", "meadow", "library", "planet", "village", "window",
]
ADJECTIVES = [
    "quiet", "bright", "old", "small", "busy", "calm", "warm", "cold", "green",
    "tall", "soft", "loud", "gentle", "strange", "lovely", "simple",
]
PROMPTS = [
    "Tell me about the {s}.",
    "What do you think of the {s}?",
    "Describe the {s} in one line.",
    "Say something about the {s}.",
    "How is the {s} today?",
]


def make_pair(rng: random.Random) -> dict:
    s = rng.choice(SUBJECTS)
    a = rng.choice(ADJECTIVES)
    return {
        "prompt": rng.choice(PROMPTS).format(s=s),
        "chosen": f"Sure! The {s} is {a}, and I like it a lot.",
        "rejected": f"No. The {s} is {a}.",
    }


def make_pairs(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [make_pair(rng) for _ in range(n)]


def corpus_lines() -> Iterator[str]:
    """Text to train a tokenizer on: every word the task can produce."""
    for s in SUBJECTS:
        for a in ADJECTIVES:
            yield f"Sure! The {s} is {a}, and I like it a lot. No. The {s} is {a}."
        for p in PROMPTS:
            yield p.format(s=s)
    yield "system user assistant You are a helpful assistant."


def write_splits(folder: str | Path, n_train: int = 64, n_valid: int = 16, n_test: int = 16,
                 seed: int = 0) -> Path:
    """mlx-lm's data layout: train.jsonl, valid.jsonl, test.jsonl."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Distinct seeds per split keep the held-out rows independent draws.
    for offset, (name, n) in enumerate((("train", n_train), ("valid", n_valid), ("test", n_test))):
        rows = make_pairs(n, seed=seed * 1000 + offset)
        with open(folder / f"{name}.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    return folder
