"""Run configuration: dataclasses whose fields are the CLI flags and YAML keys.

Field `lora_rank` is flag `--lora-rank` and YAML key `lora_rank`; nothing
else maps between them. Precedence: flags > YAML > defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import UserError, brief

LOSS_TYPES = (
    "sigmoid", "robust", "hinge", "ipo", "dpop", "sppo_hard", "nca_pair", "bco_pair",
    "apo_zero", "apo_down", "sigmoid_norm", "sft",
)


def _opt(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class DataConfig:
    data: str = _opt("", "JSONL/JSON file, folder with train/valid/test files, or a Hugging Face dataset id.")
    split: str = _opt("train", "Split to train on (file stem in a folder or dataset repo).")
    valid_split: str = _opt("valid", "Split used for validation ('validation' is also tried).")
    test_split: str = _opt("test", "Held-out split for evaluation.")
    val_fraction: float = _opt(0.0, "Carve this share of the training rows out as validation when there is no valid split.")
    columns: Optional[dict] = _opt(None, "Rename dataset columns: 'prompt=question,chosen=good,rejected=bad'.")
    chat_template: bool = _opt(True, "Render rows with the tokenizer's chat template (--no-chat-template feeds raw text).")
    max_length: int = _opt(1024, "Longest prompt+completion in tokens; completions are cut at the end.")
    max_prompt_length: int = _opt(512, "Longest prompt in tokens.")
    truncation_mode: str = _opt("keep_end", "Which part of a long prompt to keep.", choices=("keep_end", "keep_start"))


@dataclass
class ModelConfig:
    model: str = _opt("", "Local model folder or Hugging Face model id (MLX format).")
    quantize: Optional[int] = _opt(None, "Quantize a full-precision model on load to 4 or 8 bits.", choices=(4, 8))
    q_group_size: int = _opt(64, "Group size for --quantize.")
    lora_rank: int = _opt(8, "LoRA rank.")
    lora_scale: float = _opt(20.0, "LoRA scale (mlx-lm's convention); see --lora-alpha.")
    lora_alpha: Optional[float] = _opt(None, "LoRA alpha as in PEFT; sets scale = alpha / rank.")
    lora_dropout: float = _opt(0.0, "Dropout on the LoRA branch input.")
    num_layers: int = _opt(-1, "Transformer blocks (from the top) that get LoRA; -1 for all.")
    lora_keys: Optional[list] = _opt(None, "Projections that get LoRA, e.g. 'self_attn.q_proj,self_attn.v_proj' (default: all linear layers).")
    init_adapter: Optional[str] = _opt(None, "Adapter folder to start from (e.g. an SFT adapter).", aliases=("--resume-adapter",))


@dataclass
class LossConfig:
    loss_type: str = _opt("sigmoid", "Preference loss.", choices=LOSS_TYPES)
    beta: float = _opt(0.1, "How far the policy may drift from the reference (smaller = further).")
    label_smoothing: float = _opt(0.0, "Assumed share of flipped labels (sigmoid/robust).")
    dpop_lambda: float = _opt(50.0, "DPO-Positive penalty weight.")
    sft_weight: float = _opt(0.0, "Add this times the chosen answers' NLL (RPO).")


@dataclass
class TrainConfig(DataConfig, ModelConfig, LossConfig):
    adapter_path: str = _opt("adapters", "Folder the adapters, checkpoints and metrics are written to.")
    seed: int = _opt(0, "Seed for shuffling, dropout and LoRA init.")
    batch_size: int = _opt(4, "Preference pairs per step (each pair is two sequences).")
    epochs: int = _opt(1, "Passes over the training data (ignored when --iters is given).")
    iters: Optional[int] = _opt(None, "Optimizer steps to train for.")
    learning_rate: float = _opt(1e-5, "Peak learning rate (AdamW).")
    lr_schedule: str = _opt("cosine", "Decay after warmup.", choices=("cosine", "linear", "constant"))
    warmup_steps: int = _opt(0, "Linear warmup steps.")
    weight_decay: float = _opt(0.0, "AdamW weight decay.")
    grad_accumulation_steps: int = _opt(1, "Batches per optimizer step.")
    grad_clip: Optional[float] = _opt(1.0, "Clip the global gradient norm to this (none to disable).")
    grad_checkpoint: bool = _opt(False, "Recompute block activations in the backward pass to save memory.")
    share_prompt: bool = _opt(True, "Run each pair's prompt once for both answers (off: two full forwards).")
    precompute_ref: bool = _opt(False, "Score every example with the reference before the first step.")
    steps_per_report: int = _opt(10, "Steps between log lines on the terminal.")
    steps_per_eval: int = _opt(50, "Steps between validations.")
    val_batches: int = _opt(-1, "Validation batches per evaluation; -1 for the whole split.")
    save_every: int = _opt(100, "Steps between numbered checkpoints.")
    progress: str = _opt("bar", "How to report progress: a bar, JSON lines on stdout, or nothing.", choices=("bar", "json", "none"))
    resume: bool = _opt(False, "Continue the run in --adapter-path from its newest checkpoint.")
    resume_from: Optional[str] = _opt(None, "Continue from this checkpoint (step number or NNNNNNN_adapters.safetensors).")
    overwrite: bool = _opt(False, "Start over in an --adapter-path that already holds a run.")
    memory_limit_gb: Optional[float] = _opt(None, "Memory the run may use (default: what this machine can give).")
    force: bool = _opt(False, "Train even when the memory estimate exceeds the limit.")

    # Settings that may change between a run and its resumption; all others must match.
    RESUMABLE_CHANGES = ("data", "model", "precompute_ref", "iters", "epochs", "steps_per_report", "steps_per_eval", "val_batches",
                         "save_every", "progress", "resume", "resume_from", "overwrite", "memory_limit_gb",
                         "force", "adapter_path")

    def scale(self) -> float:
        return self.lora_alpha / self.lora_rank if self.lora_alpha is not None else self.lora_scale


@dataclass
class EvalConfig(DataConfig, LossConfig):
    model: str = _opt("", "Base model folder or hub id.")
    adapter_path: Optional[str] = _opt(None, "Trained adapter folder; omit to see the base model's own accuracy.")
    eval_split: str = _opt("test", "Which split to score.", choices=("train", "valid", "test"))
    batch_size: int = _opt(4, "Pairs per forward.")
    max_batches: int = _opt(-1, "Stop after this many batches; -1 for the whole split.")
    json: bool = _opt(False, "Print JSON instead of a table.")


@dataclass
class GenerateConfig:
    model: str = _opt("", "Base model folder or hub id.")
    adapter_path: Optional[str] = _opt(None, "Adapter folder (omit for the base model).")
    prompt: Optional[str] = _opt(None, "The message to answer (generate).")
    system: Optional[str] = _opt(None, "System message.")
    compare: bool = _opt(False, "Answer twice, base (adapters off) and tuned, with the same seed.")
    temp: float = _opt(0.0, "Sampling temperature; 0 is greedy.")
    top_p: float = _opt(1.0, "Nucleus sampling threshold.")
    max_tokens: int = _opt(256, "Longest answer in tokens.")
    seed: int = _opt(0, "Sampling seed (the same for base and tuned).")


@dataclass
class FuseConfig:
    model: str = _opt("", "Base model folder or hub id.")
    adapter_path: str = _opt("adapters", "Adapter folder to merge.")
    save_path: str = _opt("fused_model", "Folder to write the merged model to.")
    dequantize: bool = _opt(False, "Write full-precision weights instead of re-quantizing like the base.")
    upload_repo: Optional[str] = _opt(None, "Hugging Face repo (user/name) to upload the merged model to.")
    export_gguf: bool = _opt(False, "Also write a GGUF file (llama, mistral, mixtral only).")
    gguf_path: str = _opt("ggml-model-f16.gguf", "GGUF file name inside --save-path.")


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return _base_type(args[0]) if typing.get_origin(tp) is typing.Union else (typing.get_origin(tp) or tp)


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) is typing.Union and type(None) in typing.get_args(tp)


def coerce(name: str, value: Any, tp: Any) -> Any:
    """Turn a flag string or YAML value into the field's type, or say why not."""
    base = _base_type(tp)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and _is_optional(tp)):
        if _is_optional(tp):
            return None
        raise ValueError("must not be empty")
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError(f"must be true or false, got {brief(value)}")
    if base is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(f"must be a whole number, got {brief(value)}")
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"must be a whole number, got {brief(value)}") from None
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"must be a number, got {brief(value)}")
        try:
            out = float(value)
        except ValueError:
            raise ValueError(f"must be a number, got {brief(value)}") from None
        if not math.isfinite(out):
            raise ValueError(f"must be a finite number, got {brief(value)}")
        return out
    if base is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"must be a list of names, got {brief(value)}")
        return value
    if base is dict:
        if isinstance(value, str):
            pairs = [p for p in value.split(",") if p.strip()]
            if not all("=" in p for p in pairs):
                raise ValueError(f"must look like 'a=b,c=d', got {brief(value)}")
            value = dict(p.split("=", 1) for p in pairs)
            value = {k.strip(): v.strip() for k, v in value.items()}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ValueError(f"must be a mapping of names, got {brief(value)}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be text, got {brief(value)}")
    return value


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per dataclass field; every default is None so we can tell what was given."""
    types = field_types(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        names = [flag, *f.metadata.get("aliases", ())]
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else None
        if _base_type(types[f.name]) is bool:
            parser.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=f"{help_text} (default: {default})")
        else:
            choices = f.metadata.get("choices")
            parser.add_argument(*names, dest=f.name, default=None, metavar=f.name.upper(),
                                choices=[str(c) for c in choices] if choices else None,
                                help=f"{help_text} (default: {default})")


def _yaml_lines(path: Path, text: str) -> dict[str, int]:
    """Line of each top-level key, so an error can point at it."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def read_yaml(path: str | Path) -> tuple[dict, dict[str, int]]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("config file not found", file=str(path)) from None
    except (UnicodeDecodeError, IsADirectoryError) as e:
        raise UserError(f"cannot read config: {e.__class__.__name__}", file=str(path)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise UserError(f"invalid YAML: {getattr(e, 'problem', e)}", file=str(path),
                        line=None if line is None else line + 1) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError("a config file must be a mapping of keys to values", file=str(path))
    return raw, _yaml_lines(path, text)


def build(cls: type, flags: Optional[dict] = None, yaml_path: Optional[str] = None,
          base: Optional[dict] = None) -> Any:
    """Defaults, then `base` (e.g. a trained adapter's settings), then YAML, then flags."""
    types = field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {k: v for k, v in (base or {}).items() if k in names}
    if yaml_path:
        raw, lines = read_yaml(yaml_path)
        for key, value in raw.items():
            name = str(key).replace("-", "_")
            where = dict(file=str(yaml_path), line=lines.get(str(key)), field=str(key))
            if name not in names:
                raise UserError("unknown key", **where)
            try:
                values[name] = coerce(name, value, types[name])
            except ValueError as e:
                raise UserError(str(e), **where) from None
    for name, value in (flags or {}).items():
        if value is None or name not in names:
            continue
        try:
            values[name] = coerce(name, value, types[name])
        except ValueError as e:
            raise UserError(f"--{name.replace('_', '-')} {e}") from None
    config = cls(**values)
    validate(config, yaml_path)
    return config


def validate(config: Any, source: Optional[str] = None) -> None:
    """Range and choice checks that argparse cannot do (YAML bypasses argparse)."""
    checks: list[tuple[str, bool, str]] = []
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices and value is not None and value not in choices:
            checks.append((f.name, False, f"must be one of {', '.join(map(str, choices))}, got {brief(value)}"))
    if isinstance(config, LossConfig):
        checks += [
            ("beta", config.beta > 0, f"must be > 0, got {config.beta}"),
            ("label_smoothing", 0 <= config.label_smoothing < 0.5, f"must be in [0, 0.5), got {config.label_smoothing}"),
            ("sft_weight", config.sft_weight >= 0, f"must be >= 0, got {config.sft_weight}"),
        ]
    if isinstance(config, DataConfig):
        checks += [
            ("max_length", config.max_length >= 2, f"must be >= 2, got {config.max_length}"),
            ("max_prompt_length", config.max_prompt_length >= 1, f"must be >= 1, got {config.max_prompt_length}"),
            ("val_fraction", 0 <= config.val_fraction < 1, f"must be in [0, 1), got {config.val_fraction}"),
        ]
    if isinstance(config, ModelConfig):
        checks += [
            ("lora_rank", config.lora_rank >= 1, f"must be >= 1, got {config.lora_rank}"),
            ("lora_dropout", 0 <= config.lora_dropout < 1, f"must be in [0, 1), got {config.lora_dropout}"),
            ("num_layers", config.num_layers == -1 or config.num_layers >= 1, f"must be -1 or >= 1, got {config.num_layers}"),
        ]
    if isinstance(config, (EvalConfig, GenerateConfig)):
        size = ("batch_size", config.batch_size) if isinstance(config, EvalConfig) else ("max_tokens", config.max_tokens)
        checks.append((size[0], size[1] >= 1, f"must be >= 1, got {size[1]}"))
    if isinstance(config, GenerateConfig):
        checks += [("temp", config.temp >= 0, f"must be >= 0, got {config.temp}"),
                   ("top_p", 0 < config.top_p <= 1, f"must be in (0, 1], got {config.top_p}")]
    if isinstance(config, TrainConfig):
        checks += [
            ("batch_size", config.batch_size >= 1, f"must be >= 1, got {config.batch_size}"),
            ("epochs", config.epochs >= 1, f"must be >= 1, got {config.epochs}"),
            ("iters", config.iters is None or config.iters >= 1, f"must be >= 1, got {config.iters}"),
            ("learning_rate", config.learning_rate > 0, f"must be > 0, got {config.learning_rate}"),
            ("grad_accumulation_steps", config.grad_accumulation_steps >= 1, f"must be >= 1, got {config.grad_accumulation_steps}"),
            ("grad_clip", config.grad_clip is None or config.grad_clip > 0, f"must be > 0, got {config.grad_clip}"),
            ("warmup_steps", config.warmup_steps >= 0, f"must be >= 0, got {config.warmup_steps}"),
            ("steps_per_eval", config.steps_per_eval >= 1, f"must be >= 1, got {config.steps_per_eval}"),
            ("steps_per_report", config.steps_per_report >= 1, f"must be >= 1, got {config.steps_per_report}"),
            ("save_every", config.save_every >= 1, f"must be >= 1, got {config.save_every}"),
            ("overwrite", not (config.overwrite and (config.resume or config.resume_from)),
             "cannot be combined with --resume / --resume-from"),
            ("memory_limit_gb", config.memory_limit_gb is None or config.memory_limit_gb > 0,
             f"must be > 0, got {config.memory_limit_gb}"),
        ]
    for name, ok, message in checks:
        if not ok:
            if source:
                raise UserError(message, file=source, field=name)
            raise UserError(f"--{name.replace('_', '-')} {message}")


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def changed_fields(config: Any) -> dict[str, Any]:
    """Fields that differ from their defaults: what to run on and where to write first, then the rest."""
    changed = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
               if f.default is dataclasses.MISSING or getattr(config, f.name) != f.default}
    first = [k for k in ("model", "data", "adapter_path") if k in changed]
    return {k: changed[k] for k in first + [k for k in changed if k not in first]}


def _flag_value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def to_flags(config: Any) -> list[str]:
    """CLI arguments that rebuild `config` (flags > defaults); `build` on them gives it back."""
    args: list[str] = []
    for name, value in changed_fields(config).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        else:
            args += [flag, _flag_value(value)]
    return args


def to_yaml(config: Any) -> str:
    """The settings that differ from the defaults, as a `--config` file."""
    return yaml.safe_dump(changed_fields(config), sort_keys=False)
