"""Peak memory of one DPO step against one LoRA SFT step over the same 2B sequences.

Same quantized model, same LoRA, same sequences: the SFT step is mlx-lm's
own (`default_loss`, value_and_grad, AdamW); the DPO step is our Trainer's
first step, reference forward included. Target: DPO <= 1.15x SFT.

    python benchmarks/bench_memory.py [--arch qwen2-small] [--pairs 2] [--length 256] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import ARCHS, build  # noqa: E402

from mlx_dpo.config import TrainConfig  # noqa: E402
from mlx_dpo.memory import estimate_peak_bytes  # noqa: E402
from mlx_dpo.model import attach_lora, lora_parameters  # noqa: E402
from mlx_dpo.tokenize import TokenizedPair  # noqa: E402
from mlx_dpo.trainer import Trainer  # noqa: E402


def synthetic_pairs(n: int, length: int, vocab: int, seed: int = 0) -> list[TokenizedPair]:
    rng = np.random.default_rng(seed)
    prompt = length // 4
    return [TokenizedPair(*(tuple(int(t) for t in rng.integers(1, vocab, size)) for size in
                            (prompt, length - prompt, length - prompt))) for _ in range(n)]


def fresh_model(arch: str, bits: int):
    model, config = build(arch, bits)
    mx.random.seed(0)
    attach_lora(model, -1, lora_parameters(8, 20.0, 0.0))
    return model


def measure(fn) -> float:
    mx.clear_cache()
    mx.reset_peak_memory()
    fn()
    return mx.get_peak_memory() / 1e9


def sft_step(model, pairs: list[TokenizedPair]) -> None:
    """A LoRA SFT step as mlx-lm's trainer takes it, over the chosen and the rejected sequences."""
    from mlx_lm.tuner.trainer import default_loss

    seqs = [p.prompt_ids + p.chosen_ids for p in pairs] + [p.prompt_ids + p.rejected_ids for p in pairs]
    batch = mx.array(np.array(seqs, dtype=np.int32))
    lengths = mx.array([[len(p.prompt_ids), len(s)] for p, s in zip(pairs * 2, seqs)])
    opt = optim.AdamW(learning_rate=1e-5)
    (loss, _), grads = nn.value_and_grad(model, default_loss)(model, batch, lengths)
    opt.update(model, grads)
    mx.eval(loss, model.trainable_parameters(), opt.state)


def dpo_step(model, pairs: list[TokenizedPair]) -> None:
    cfg = TrainConfig(batch_size=len(pairs), iters=1, progress="none", learning_rate=1e-5)
    with tempfile.TemporaryDirectory() as out:
        Trainer(model, cfg, pad_id=0, out=Path(out), emit=lambda e: None).train(pairs, [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="qwen2-small", choices=sorted(ARCHS))
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--pairs", type=int, default=2, help="B: the step scores 2B sequences")
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    pairs = synthetic_pairs(args.pairs, args.length, ARCHS[args.arch]["vocab_size"])
    results = {"sft_peak_gb": [], "dpo_peak_gb": []}
    for _ in range(2):  # alternate, keep the lower of each: allocator warm-up is not the method's cost
        results["sft_peak_gb"].append(measure(lambda: sft_step(fresh_model(args.arch, args.bits), pairs)))
        results["dpo_peak_gb"].append(measure(lambda: dpo_step(fresh_model(args.arch, args.bits), pairs)))
    sft, dpo = min(results["sft_peak_gb"]), min(results["dpo_peak_gb"])
    estimate = estimate_peak_bytes(fresh_model(args.arch, args.bits), args.pairs, args.length, False) / 1e9
    report = {"arch": args.arch, "bits": args.bits, "sequences": 2 * args.pairs, "length": args.length,
              "device": str(mx.default_device()), "sft_peak_gb": sft, "dpo_peak_gb": dpo,
              "dpo_over_sft": dpo / sft, "target": 1.15, "ok": dpo / sft <= 1.15,
              "preflight_estimate_gb": estimate, "estimate_over_measured": estimate / dpo}
    print(f"{'step':<10}{'peak GB':>10}")
    print(f"{'LoRA SFT':<10}{sft:>10.3f}\n{'DPO':<10}{dpo:>10.3f}")
    print(f"DPO / SFT = {dpo / sft:.3f} (target <= 1.15: {'ok' if report['ok'] else 'MISSED'})")
    print(f"pre-flight estimate {estimate:.3f} GB = {estimate / dpo:.2f}x the measured DPO peak")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
