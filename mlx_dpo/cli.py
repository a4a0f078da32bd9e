"""`python -m mlx_dpo <command>`: subcommands over the config dataclasses.

User mistakes end as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Optional

from .errors import UserError
from .trainer import TrainingInterrupted


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage dump is noise for a one-line mistake
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


NOT_CONFIG = ("func", "config", "command", "data_command", "path", "metric", "out", "quick", "root")


def flags(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k not in NOT_CONFIG}


def cmd_train(args: argparse.Namespace) -> int:
    from . import config
    from .run import train

    cfg = config.build(config.TrainConfig, flags(args), args.config)
    train(cfg)
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from . import config
    from .data_check import check_data, load_for_check, print_report
    from .model import load_model

    values = flags(args)
    if args.path:
        values["data"] = args.path
    cfg = config.build(config.TrainConfig, values, args.config)
    if not cfg.model:
        raise UserError("data check needs --model (its tokenizer and chat template shape the data)")
    splits = load_for_check(cfg)  # data mistakes first: they need no model
    _, tokenizer, _ = load_model(cfg.model)
    results = check_data(splits, tokenizer, cfg)
    return 2 if print_report(results, tokenizer, cfg, sys.stdout) else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from . import config
    from .eval_report import INHERITED, report
    from .model import read_adapter_config

    base = {}
    if args.adapter_path:
        saved = read_adapter_config(args.adapter_path)
        base = {k: saved[k] for k in INHERITED if saved.get(k) is not None}
    report(config.build(config.EvalConfig, flags(args), args.config, base=base))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from . import config
    from .chat import chat

    chat(config.build(config.GenerateConfig, flags(args), args.config))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from . import config
    from .chat import generate_once

    generate_once(config.build(config.GenerateConfig, flags(args), args.config))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import print_table, run_sweep

    rows = run_sweep(flags(args), args.config, args.metric)
    print_table(rows, args.metric, sys.stdout)
    return 0


def cmd_fuse(args: argparse.Namespace) -> int:
    from . import config
    from .export import fuse

    out = fuse(config.build(config.FuseConfig, flags(args), args.config))
    print(f"fused model written to {out}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, quick=args.quick)
    return 0


def tui_app(args: argparse.Namespace):
    """The terminal app for these arguments (the tests drive it headless)."""
    from pathlib import Path

    from . import config

    cfg = config.build(config.TrainConfig, flags(args), args.config)
    from tui.app import MlxDpoApp

    return MlxDpoApp(cfg, root=Path(args.root).expanduser())


def cmd_tui(args: argparse.Namespace) -> int:
    root = args.root
    if not os.path.isdir(root):
        raise UserError("folder not found", file=root, field="--root")
    tui_app(args).run()
    return 0


def _command(sub: argparse._SubParsersAction, name: str, help: str, func: Callable, cls: Optional[type]) -> Parser:
    from . import config

    p = sub.add_parser(name, help=help, description=help)
    p.add_argument("-c", "--config", default=None, help="YAML file with any of the options below (snake_case keys).")
    if cls is not None:
        config.add_arguments(p, cls)
    p.set_defaults(func=func)
    return p


def build_parser() -> Parser:
    from . import config

    parser = Parser(prog="mlx_dpo", description="Direct Preference Optimization with LoRA on MLX.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    _command(sub, "train", "Train LoRA adapters with DPO.", cmd_train, config.TrainConfig)
    data = sub.add_parser("data", help="Inspect preference data.")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    check = _command(data_sub, "check", "Validate a dataset and show how it will be tokenized.", cmd_data_check,
                     config.TrainConfig)
    check.add_argument("path", nargs="?", default=None, help="Data file, folder or hub dataset id.")
    _command(sub, "eval", "Held-out preference accuracy, margins, loss and KL of base and tuned.", cmd_eval,
             config.EvalConfig)
    _command(sub, "chat", "Chat in the terminal; --compare answers with base and tuned.", cmd_chat,
             config.GenerateConfig)
    _command(sub, "generate", "Answer one --prompt (with --compare: base and tuned).", cmd_generate,
             config.GenerateConfig)
    sweep = _command(sub, "sweep", "Train one adapter per value of flags given as lists; compare them.",
                     cmd_sweep, config.TrainConfig)
    sweep.add_argument("--metric", default="rewards/accuracies",
                       choices=["rewards/accuracies", "rewards/margins", "loss", "kl/chosen"],
                       help="Validation metric that picks the best member.")
    _command(sub, "fuse", "Merge adapters into the base model; optionally upload or export GGUF.", cmd_fuse,
             config.FuseConfig)
    demo = _command(sub, "demo", "Watch DPO work in a few minutes, offline: a small model learns a preference.",
                    cmd_demo, None)
    demo.add_argument("--out", default="demo_run", help="Folder for the demo's model, data and adapters.")
    demo.add_argument("--quick", action="store_true", help="A smaller, faster run (for tests).")
    tui = _command(sub, "tui", "The terminal app: pick data, configure, train with live plots, chat, label.",
                   cmd_tui, config.TrainConfig)
    tui.add_argument("--root", default=".", help="Folder the file tree and the Runs tab start from.")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:
        print(f"{e}. To continue, run the same command with --resume.", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130
