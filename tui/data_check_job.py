"""The Data tab's background check: the same checks as `data check`, without loading model weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

from mlx_dpo.config import TrainConfig
from mlx_dpo.data import Split
from mlx_dpo.data_check import check_data, load_for_check


def local_tokenizer(model: str) -> tuple[Optional[Any], str]:
    """The model's tokenizer if it is on this machine (a folder or the hub cache), else why not."""
    from mlx_lm.utils import load_tokenizer

    if not model:
        return None, "pick a model in the Model tab to see token lengths and truncation"
    path = Path(model).expanduser()
    if not path.is_dir():
        if model.count("/") != 1:
            return None, f"model folder not found: {model}"
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(model, local_files_only=True))
        except Exception:  # any miss: the model is simply not downloaded yet
            return None, "token lengths appear once the model is downloaded (starting a run downloads it)"
    try:
        return load_tokenizer(path), ""
    except Exception as e:
        return None, f"cannot load the tokenizer of {model}: {str(e).splitlines()[0] if str(e) else e}"


def check_source(source: str, config: Optional[TrainConfig]) -> tuple[dict[str, Split], Optional[list[dict]], str]:
    """(splits, per-split check results or None without a tokenizer, a note). Raises UserError."""
    cfg = dataclasses.replace(config or TrainConfig(), data=source)
    splits = load_for_check(cfg)
    tokenizer, note = local_tokenizer(cfg.model)
    if tokenizer is None:
        return splits, None, note
    return splits, check_data(splits, tokenizer, cfg), note

