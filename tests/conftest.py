"""Shared fixtures: a tiny model built locally and a learnable preference set.

Nothing is downloaded: the tokenizer is trained on the synthetic task's own
text and the weights are random (Llama, hidden 64, 2 layers).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mlx_dpo.synthetic_data import corpus_lines, write_splits  # noqa: E402
from mlx_dpo.tiny_model import build_tiny_model  # noqa: E402

EXTRA_TEXT = [
    "Hello! How are you? I am fine, thank you. What is two plus two? It is four.",
    "Human: Assistant: User: System: Be brief. Be kind. Answer in French. Bonjour.",
    "The quick brown fox jumps over the lazy dog. A good answer. A bad answer.",
]


def corpus() -> list[str]:
    return (list(corpus_lines()) + EXTRA_TEXT) * 2


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", corpus())


@pytest.fixture(scope="session")
def tiny_model_plain(tmp_path_factory) -> Path:
    """Same kind of model, but its tokenizer has no chat template."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_plain") / "model", corpus(), chat_template=None)


@pytest.fixture(scope="session")
def tiny_model_q4(tmp_path_factory) -> Path:
    """A pre-quantized (4-bit) MLX checkpoint, as users download them."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_q4") / "model", corpus(), quantize_bits=4)


@pytest.fixture(scope="session")
def pref_data(tmp_path_factory) -> Path:
    return write_splits(tmp_path_factory.mktemp("prefs"), n_train=64, n_valid=16, n_test=16)


@pytest.fixture(scope="session")
def tokenizer(tiny_model):
    from mlx_lm.utils import load_tokenizer

    return load_tokenizer(tiny_model)


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def run_module(*args: str, env: dict | None = None, timeout: int = 300,
               input: str = "") -> subprocess.CompletedProcess:
    """`python -m mlx_dpo ...` in a fresh process, as a user runs it (stdin: `input`)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "mlx_dpo", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, input=input)
