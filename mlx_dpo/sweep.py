"""`sweep`: one adapter per value of any flag given as a list, then a table of their validation metrics.

`--beta 0.01,0.1,0.5 --learning-rate 1e-5,5e-5` trains the 6 combinations,
each in its own sub-folder of --adapter-path. A member whose run finished
is not trained again, so an interrupted sweep picks up where it stopped.
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Optional, TextIO

from . import config as C
from .data import load_splits
from .errors import UserError
from .export import last_eval
from .run import METRICS_FILE, train

LOWER_IS_BETTER = ("loss", "kl/chosen", "kl/rejected")
SCALARS = (int, float, str)


def axes_of(flags: dict) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Split flags into swept ones (comma lists of scalar fields) and fixed ones."""
    types = C.field_types(C.TrainConfig)
    axes, fixed = {}, {}
    for name, value in flags.items():
        if isinstance(value, str) and "," in value and C._base_type(types[name]) in SCALARS:
            axes[name] = [v.strip() for v in value.split(",") if v.strip()]
        elif value is not None:
            fixed[name] = value
    return axes, fixed


def member_name(assignment: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in assignment.items())


def finished(folder: Path) -> bool:
    path = folder / METRICS_FILE
    return path.is_file() and any('"event": "done"' in line for line in path.read_text().splitlines())


def run_sweep(flags: dict, yaml_path: Optional[str], metric: str, out: Optional[TextIO] = None) -> list[dict]:
    out = out or sys.stderr
    axes, fixed = axes_of(flags)
    if not axes:
        raise UserError("nothing to sweep: give at least one flag a comma-separated list, e.g. --beta 0.05,0.1,0.5")
    root = Path(fixed.pop("adapter_path", None) or C.TrainConfig.adapter_path)
    members = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
    configs = [C.build(C.TrainConfig, {**fixed, **m, "adapter_path": str(root / member_name(m))}, yaml_path)
               for m in members]  # every member validated before the first one trains
    first = configs[0]
    splits = load_splits(first.data, first.split, first.valid_split, first.test_split, first.columns,
                         first.val_fraction, first.seed)
    if "valid" not in splits:
        raise UserError("a sweep compares members on a validation split: add valid.jsonl or --val-fraction",
                        file=first.data)
    rows = []
    for assignment, cfg in zip(members, configs):
        folder = Path(cfg.adapter_path)
        if finished(folder):
            out.write(f"{member_name(assignment)}: done already, skipped\n")
        else:
            shutil.rmtree(folder, ignore_errors=True)  # a member cut short starts over
            out.write(f"{member_name(assignment)}: training\n")
            train(cfg)
        rows.append({"member": member_name(assignment), "adapter_path": str(folder), **assignment,
                     "metrics": last_eval(folder) or {}})
    lower = metric in LOWER_IS_BETTER
    scored = [r for r in rows if metric in r["metrics"]]
    if scored:
        best = (min if lower else max)(scored, key=lambda r: r["metrics"][metric])
        best["best"] = True
    (root / "sweep.json").write_text(json.dumps({"metric": metric, "members": rows}, indent=2) + "\n")
    return rows


COLUMNS = (("accuracy", "rewards/accuracies"), ("margin", "rewards/margins"), ("loss", "loss"),
           ("kl/chosen", "kl/chosen"))


def print_table(rows: list[dict], metric: str, out: TextIO) -> None:
    width = max(len(r["member"]) for r in rows) + 2
    out.write(f"{'member':<{width}}" + "".join(f"{h:>12}" for h, _ in COLUMNS) + "\n")
    for r in rows:
        cells = "".join(f"{r['metrics'][k]:>12.4f}" if k in r["metrics"] else f"{'-':>12}" for _, k in COLUMNS)
        out.write(f"{r['member']:<{width}}{cells}{'  <- best ' + metric if r.get('best') else ''}\n")
