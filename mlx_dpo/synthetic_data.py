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
    yield "system user assistant You are a helpful assistant. lovely dull"


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


# --- the demo's task ----------------------------------------------------------
# The base model is taught the warm style for half of the subjects and the curt
# style for the other half, so on held-out prompts it prefers the warm answer
# about half the time; DPO has to make it warm everywhere.

def demo_answers(rng: random.Random, subject: str | None = None) -> tuple[str, str, str]:
    s = subject or rng.choice(SUBJECTS)
    return rng.choice(PROMPTS).format(s=s), f"Sure! The {s} is lovely.", f"No. The {s} is dull."


def base_prefers_warm(subject: str) -> bool:
    return SUBJECTS.index(subject) % 2 == 0


def write_demo_data(folder: str | Path, n_sft: int = 400, n_train: int = 96, n_valid: int = 24,
                    n_test: int = 48, seed: int = 0) -> tuple[Path, Path]:
    """`sft/` teaches each subject one style; `prefs/` prefers the warm one for all."""
    folder = Path(folder)
    rng = random.Random(seed)
    sft, prefs = folder / "sft", folder / "prefs"
    sft.mkdir(parents=True, exist_ok=True)
    prefs.mkdir(parents=True, exist_ok=True)

    def write(path: Path, rows: list[dict]) -> None:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    rows = []
    for _ in range(n_sft):
        prompt, warm, curt = demo_answers(rng)
        subject = prompt.split("the ")[-1].split()[0].strip(".?")
        chosen, rejected = (warm, curt) if base_prefers_warm(subject) else (curt, warm)
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    write(sft / "train.jsonl", rows)
    for name, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        write(prefs / f"{name}.jsonl", [dict(zip(("prompt", "chosen", "rejected"), demo_answers(rng)))
                                        for _ in range(n)])
    return sft, prefs
