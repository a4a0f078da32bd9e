"""A file tree that shows only folders and data files."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from textual.widgets import DirectoryTree

from mlx_dpo.data import DATA_SUFFIXES


class DataTree(DirectoryTree):
    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".") and p.name not in ("__pycache__", "node_modules")
                and (p.is_dir() or p.suffix in DATA_SUFFIXES)]
