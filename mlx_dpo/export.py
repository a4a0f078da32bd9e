"""`fuse`: merge the adapters into the base, write a model folder mlx-lm loads, upload it.

Merging uses mlx-lm's own `fuse` on each LoRA layer and its `save`; the
folder is written under a temporary name and renamed into place, so a
failed fuse leaves nothing half-written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

from mlx.utils import tree_flatten, tree_unflatten

from .config import FuseConfig
from .errors import UserError
from .hub import upload
from .model import Loaded, load_tuned, resolve_model_path
from .run import METRICS_FILE

GGUF_TYPES = ("llama", "mistral", "mixtral")


def last_eval(adapter_path: str | Path) -> Optional[dict]:
    """The final validation event of the run, if it logged one."""
    path = Path(adapter_path) / METRICS_FILE
    if not path.is_file():
        return None
    evals = [e for e in (json.loads(line) for line in path.read_text().splitlines() if line.strip())
             if e.get("event") == "eval"]
    return evals[-1] if evals else None


def model_card(base: str, adapter_config: dict, metrics: Optional[dict], quantization: Optional[dict]) -> str:
    get = adapter_config.get
    lines = [
        "---",
        "library_name: mlx",
        "pipeline_tag: text-generation",
        f"base_model: {base}",
        "tags: [mlx, dpo, mlx-dpo, lora]",
        "---",
        "",
        f"# {base} + DPO",
        "",
        f"LoRA adapters trained with Direct Preference Optimization (mlx-dpo) on `{get('data')}` and merged "
        f"into [{base}](https://huggingface.co/{base}).",
        "",
        "| setting | value |",
        "| --- | --- |",
        f"| loss | {get('loss_type')} |",
        f"| beta | {get('beta')} |",
        f"| LoRA rank / scale | {get('lora_parameters', {}).get('rank')} / {get('lora_parameters', {}).get('scale')} |",
        f"| learning rate | {get('learning_rate')} |",
        f"| epochs / iters | {get('epochs')} / {get('iters')} |",
        f"| weights | {'%d-bit, group %d' % (quantization['bits'], quantization['group_size']) if quantization else 'full precision'} |",
    ]
    if metrics:
        lines += ["", f"Validation at step {metrics['step']}:", "", "| metric | value |", "| --- | --- |"]
        for key in ("rewards/accuracies", "rewards/margins", "loss", "kl/chosen", "kl/rejected"):
            if key in metrics:
                lines.append(f"| {key} | {metrics[key]:.4f} |")
    lines += ["", "```bash", "mlx_lm.generate --model <this repo> --prompt \"Hello\"", "```", ""]
    return "\n".join(lines)


def fused_model(loaded: Loaded, dequantize: bool) -> dict:
    """Merge in place; returns the config to save (quantization dropped when dequantized)."""
    from mlx_lm.utils import dequantize_model

    model, config = loaded.model, dict(loaded.config)
    merged = [(name, m.fuse(dequantize=dequantize)) for name, m in model.named_modules() if hasattr(m, "fuse")]
    if merged:
        model.update_modules(tree_unflatten(merged))
    if dequantize:
        dequantize_model(model)
        config.pop("quantization", None)
        config.pop("quantization_config", None)
    return config


def fuse(cfg: FuseConfig) -> Path:
    from mlx_lm.utils import save

    out = Path(cfg.save_path)
    if out.exists() and any(out.iterdir()):
        raise UserError("already exists and is not empty; choose another --save-path", file=str(out))
    loaded = load_tuned(cfg.model, cfg.adapter_path)
    config = fused_model(loaded, cfg.dequantize)
    if cfg.export_gguf:
        if config.get("model_type") not in GGUF_TYPES:
            raise UserError(f"--export-gguf supports {', '.join(GGUF_TYPES)} models; this one is "
                            f"{config.get('model_type')!r}", file=cfg.model)
        if config.get("quantization"):
            raise UserError("--export-gguf writes fp16 and needs --dequantize", file=cfg.model)
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save(tmp, str(resolve_model_path(cfg.model)), loaded.model, loaded.tokenizer, config, donate_model=False)
        (tmp / "README.md").write_text(model_card(cfg.model, loaded.adapter_config, last_eval(cfg.adapter_path),
                                                  config.get("quantization")))
        if cfg.export_gguf:
            from mlx_lm.gguf import convert_to_gguf

            convert_to_gguf(tmp, dict(tree_flatten(loaded.model.parameters())), config, str(tmp / cfg.gguf_path))
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if cfg.upload_repo:
        upload(out, cfg.upload_repo)
    return out
