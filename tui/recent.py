"""Recently used model ids and folders, kept between sessions."""

from __future__ import annotations

import json
import os
from pathlib import Path

KEEP = 10


def state_dir() -> Path:
    """MLX_DPO_HOME, else the XDG cache folder."""
    if os.environ.get("MLX_DPO_HOME"):
        return Path(os.environ["MLX_DPO_HOME"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlx-dpo"


def load_recent(folder: Path) -> list[str]:
    try:
        items = json.loads((folder / "recent_models.json").read_text())
    except (OSError, ValueError):
        return []
    return [m for m in items if isinstance(m, str)][:KEEP] if isinstance(items, list) else []


def remember(folder: Path, model: str) -> list[str]:
    from mlx_dpo.checkpoint import atomic_write_text

    items = [model] + [m for m in load_recent(folder) if m != model]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "recent_models.json", json.dumps(items[:KEEP]))
    except OSError:  # a read-only home must not stop training
        pass
    return items[:KEEP]
