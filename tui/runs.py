"""Past runs found on disk: each adapter folder's settings, progress and last metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mlx_dpo.checkpoint import ADAPTER_CONFIG, STATE_FILE
from mlx_dpo.run import METRICS_FILE

SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__"}


@dataclass
class RunInfo:
    path: Path
    config: dict
    step: int = 0
    total_steps: Optional[int] = None
    finished: bool = False
    last_train: dict = field(default_factory=dict)
    last_eval: dict = field(default_factory=dict)

    @property
    def resumable(self) -> bool:
        return not self.finished and (self.path / STATE_FILE).is_file()

    @property
    def status(self) -> str:
        if self.finished:
            return "finished"
        return "stopped" if self.resumable else "no checkpoint"


def _events(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:  # a torn last line of a killed run
            continue
    return events


def read_run(folder: Path) -> Optional[RunInfo]:
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
    except (OSError, ValueError):
        return None
    info = RunInfo(folder, config)
    try:
        info.step = json.loads((folder / STATE_FILE).read_text())["step"]
    except (OSError, ValueError, KeyError):
        pass
    for event in _events(folder / METRICS_FILE):
        kind = event.get("event")
        if kind == "start":
            info.total_steps = event.get("total_steps")
        elif kind == "train":
            info.last_train = event
        elif kind == "eval":
            info.last_eval = event
        elif kind == "done":
            info.finished = True
            info.step = event.get("step", info.step)
    return info


def find_runs(root: Path, depth: int = 3) -> list[RunInfo]:
    """Adapter folders under `root` (itself included), newest first."""
    runs: list[RunInfo] = []

    def walk(folder: Path, level: int) -> None:
        if (folder / ADAPTER_CONFIG).is_file() and (run := read_run(folder)) is not None:
            runs.append(run)
        if level >= depth:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in SKIP_DIRS
                              and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            walk(child, level + 1)

    walk(root, 0)
    return sorted(runs, key=lambda r: (r.path / ADAPTER_CONFIG).stat().st_mtime, reverse=True)


def eval_split_for(data: str) -> tuple[str, str]:
    """The split `eval` should score for a run's data, and a note when it is not held out."""
    from mlx_dpo.data import split_files

    folder = Path(data).expanduser()
    if folder.is_dir():
        for split in ("test", "valid", "validation"):
            if split_files(folder, split):
                return ("valid" if split == "validation" else split), ""
    return "train", "no held-out split in this data: scored on the training pairs"
