"""Consumers of trainer events: metrics.jsonl, JSON lines on stdout, a progress bar."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Iterable, Optional, TextIO

Emit = Callable[[dict], None]

SHOWN = ("loss", "rewards/accuracies", "rewards/margins")


def fanout(consumers: Iterable[Optional[Emit]]) -> Emit:
    live = [c for c in consumers if c is not None]

    def emit(event: dict) -> None:
        for c in live:
            c(event)

    return emit


class MetricsFile:
    """Appends every event to metrics.jsonl in the adapter folder, flushed per line."""

    def __init__(self, path: Path):
        self.path = path
        self.file: Optional[TextIO] = None

    def __call__(self, event: dict) -> None:
        if self.file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "a")
        self.file.write(json.dumps(event) + "\n")
        self.file.flush()
        if event.get("event") == "done":
            self.close()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class JsonLines:
    """`--progress json`: one JSON object per line, for the TUI and scripts."""

    def __init__(self, stream: Optional[TextIO] = None):
        self.stream = stream or sys.stdout

    def __call__(self, event: dict) -> None:
        self.stream.write(json.dumps(event) + "\n")
        self.stream.flush()


def _fmt(event: dict, keys: Iterable[str]) -> str:
    return "  ".join(f"{k.split('/')[-1]} {event[k]:.4f}" for k in keys if k in event)


class ProgressBar:
    """A tqdm bar with ETA on stderr; log lines every `every` steps and at each eval."""

    def __init__(self, every: int = 10, stream: Optional[TextIO] = None):
        self.every, self.stream = every, stream or sys.stderr
        self.bar = None
        self.ref_bar = None

    def __call__(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "reference":
            from tqdm import tqdm

            if self.ref_bar is None:
                self.ref_bar = tqdm(total=event["batches"], file=self.stream, unit="batch",
                                    desc=f"reference log-probs ({event['split']})", leave=False)
            self.ref_bar.update(1)
            if event["batch"] == event["batches"]:
                self.ref_bar.close()
                self.ref_bar = None
        elif kind == "start":
            from tqdm import tqdm

            self.bar = tqdm(total=event["total_steps"], file=self.stream, unit="step", dynamic_ncols=True)
        elif kind == "train" and self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({"loss": f"{event['loss']:.3f}", "acc": f"{event['rewards/accuracies']:.2f}",
                                  "tok/s": f"{event['tokens_per_second']:.0f}"}, refresh=False)
            if event["step"] % self.every == 0:
                self.write(f"step {event['step']}: {_fmt(event, SHOWN)}  lr {event['learning_rate']:.2e}  "
                           f"peak {event['peak_memory_gb']:.2f} GB")
        elif kind == "eval":
            self.write(f"step {event['step']} validation: {_fmt(event, SHOWN)}" + ("  (best)" if event.get("best") else ""))
        elif kind == "message":
            self.write(f"{event.get('level', 'info')}: {event['text']}")
        elif kind == "done":
            if self.bar is not None:
                self.bar.close()
            self.write(f"adapters saved to {event['adapter_path']}")

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream)
