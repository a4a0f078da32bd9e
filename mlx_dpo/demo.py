"""`demo`: watch DPO work in a few minutes, offline, on any machine.

1. build a small model locally and teach it (a short full-parameter SFT) to answer
   in two styles, warm ("Sure! The cat is calm.") and curt ("No. The cat is
   calm."), equally often;
2. measure how often it prefers the warm answer on held-out prompts (about
   half the time) and let it answer two of them;
3. run DPO on pairs that prefer the warm style;
4. measure again (now nearly always) and ask the same two prompts.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, TextIO

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

from .batching import collate
from .config import EvalConfig, GenerateConfig, TrainConfig
from .data import load_splits
from .eval_report import evaluate
from .generate import answer
from .logps import LogpScorer, split_pairs
from .model import load_model, load_tuned
from .run import pad_id_of, train
from .tokenize import tokenize_pairs
from .synthetic_data import corpus_lines, write_demo_data
from .tiny_model import build_tiny_model

# One subject the base answers warmly, one it answers curtly: DPO changes the second.
PROMPTS = ["Tell me about the cat.", "Tell me about the dog."]


@dataclass
class DemoPlan:
    hidden: int
    layers: int
    sft_iters: int
    dpo_iters: int
    n_sft: int
    n_test: int


FULL = DemoPlan(hidden=128, layers=2, sft_iters=400, dpo_iters=60, n_sft=800, n_test=64)
QUICK = DemoPlan(hidden=64, layers=2, sft_iters=150, dpo_iters=30, n_sft=300, n_test=32)


def pretrain(model_dir: Path, data: Path, iters: int, out: TextIO, batch_size: int = 16, lr: float = 3e-3) -> None:
    """Full-parameter SFT on the chosen answers, so the random model learns to talk; saved in place.

    This makes the demo's *base* model; it is not part of DPO, which trains LoRA only.
    """
    from mlx.utils import tree_flatten

    model, tokenizer, _ = load_model(str(model_dir))
    model.unfreeze()
    pairs, _ = tokenize_pairs(load_splits(str(data))["train"].pairs, tokenizer)
    opt = optim.AdamW(learning_rate=optim.cosine_decay(lr, iters, end=lr / 10))

    scorer = LogpScorer(model)

    def loss_fn(m, batch):
        sums, counts = scorer(m, batch)
        chosen, _ = split_pairs(sums)
        n, _ = split_pairs(counts)
        return -chosen.sum() / n.sum()

    step_fn = nn.value_and_grad(model, loss_fn)
    rng = np.random.default_rng(0)
    for it in range(1, iters + 1):
        idx = rng.choice(len(pairs), size=batch_size, replace=False).tolist()
        batch = collate([pairs[i] for i in idx], idx, pad_id_of(tokenizer))
        loss, grads = step_fn(model, batch)
        opt.update(model, grads)
        mx.eval(loss, model.parameters(), opt.state)
        if it % 50 == 0 or it == iters:
            out.write(f"    step {it}/{iters}: answer loss {loss.item():.3f}\n")
            out.flush()
    mx.save_safetensors(str(model_dir / "model.safetensors"), dict(tree_flatten(model.parameters())))


def _accuracy(result: dict) -> float:
    side = result.get("tuned", result["base"])
    return side["likelihood_accuracy"]


def _answers(base_dir: str, adapter: Optional[str], out: TextIO) -> None:
    loaded = load_tuned(base_dir, adapter)
    gen = GenerateConfig(max_tokens=16)
    for prompt in PROMPTS:
        text = answer(loaded.model, loaded.tokenizer, [{"role": "user", "content": prompt}], gen)
        out.write(f"  > {prompt}\n    {text.strip()}\n")


def run_demo(folder: str | Path = "demo_run", quick: bool = False, out: Optional[TextIO] = None) -> dict:
    out = out or sys.stdout
    plan = QUICK if quick else FULL
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    out.write(f"1/4 Building a small model in {folder} (hidden {plan.hidden}, {plan.layers} layers, no download)\n")
    raw = build_tiny_model(folder / "base_model", list(corpus_lines()) * 3, hidden=plan.hidden, layers=plan.layers)
    sft_data, prefs = write_demo_data(folder / "data", n_sft=plan.n_sft, n_test=plan.n_test)
    out.write("    teaching it to answer warmly about some subjects and curtly about others\n")
    pretrain(raw, sft_data, plan.sft_iters, out)
    base = str(raw)

    evals = EvalConfig(model=base, data=str(prefs), batch_size=8)
    before = evaluate(evals, progress=False)
    out.write(f"\n2/4 Base model: prefers the warm answer on {_accuracy(before):.0%} of {before['pairs']} "
              "held-out prompts\n")
    _answers(base, None, out)

    # DPO-Positive: plain DPO on so small a model lowers the chosen answers' likelihood too and the
    # text falls apart; DPOP's penalty keeps the chosen answers likely while the margin grows.
    out.write("\n3/4 DPO (DPO-Positive) on pairs that prefer the warm style\n")
    adapter = folder / "adapters"
    train(TrainConfig(model=base, data=str(prefs), adapter_path=str(adapter), loss_type="dpop",
                      learning_rate=5e-4, batch_size=8,
                      iters=plan.dpo_iters, beta=0.1, steps_per_eval=max(10, plan.dpo_iters // 3),
                      progress="bar", steps_per_report=10_000))
    after = evaluate(EvalConfig(model=base, adapter_path=str(adapter), data=str(prefs), batch_size=8), progress=False)
    out.write(f"\n4/4 Tuned model: prefers the warm answer on {_accuracy(after):.0%} of the same prompts "
              f"(implicit-reward accuracy {after['tuned']['preference_accuracy']:.0%})\n")
    _answers(base, str(adapter), out)
    out.write(f"\nAdapters saved to {adapter}\n"
              f"  chat with it:   python -m mlx_dpo chat --model {base} --adapter-path {adapter} --compare\n"
              f"  evaluate it:    python -m mlx_dpo eval --model {base} --adapter-path {adapter}\n"
              f"  open it in the terminal app (Chat tab: base and tuned side by side; Runs tab: its curves):\n"
              f"                  python -m mlx_dpo tui --model {base} --adapter-path {adapter} --data {prefs}\n")
    return {"before": _accuracy(before), "after": _accuracy(after), "base_model": base, "adapter_path": str(adapter)}
