"""A DPO step, the way peers write it and the way mlx-dpo does, side by side in one process.

Configurations (same 4-bit model shape, same LoRA, same pairs):
  naive      a second full reference model object, separate forwards for chosen and
             rejected, the reference recomputed every step, full-vocabulary logits;
  first      our trainer's step in the first epoch (reference computed, adapters off);
  cached     our trainer's step on later epochs (reference from the cache);
  ckpt       cached, with --grad-checkpoint.
Reports seconds per step, tokens per second, peak memory (reset between
configurations), ratios to the naive baseline and achieved FLOP/s as a
fraction of the matmul peak measured at start-up at the model's layer shapes.
Also the log-prob head's own peak for 2x512 scored tokens at vocab 151,936.

    python benchmarks/bench_dpo.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import synthetic_pairs  # noqa: E402
from models import ARCHS, build  # noqa: E402

from mlx_dpo.batching import collate  # noqa: E402
from mlx_dpo.config import TrainConfig  # noqa: E402
from mlx_dpo.logps import chunked_logp, token_logps  # noqa: E402
from mlx_dpo.model import attach_lora, lora_parameters  # noqa: E402
from mlx_dpo.recompute import recomputing  # noqa: E402
from mlx_dpo.trainer import Trainer  # noqa: E402

BETA = 0.1


def policy_model(arch: str):
    model, _ = build(arch, 4)
    mx.random.seed(0)
    attach_lora(model, -1, lora_parameters(8, 20.0, 0.0))
    return model


def released() -> float:
    """GB still held after the last configuration's objects are dropped: must be ~0, or its
    leftovers would count in the next configuration's peak."""
    gc.collect()
    mx.clear_cache()
    return mx.get_active_memory() / 1e9


# --- the naive baseline, written the way peers write it ----------------------

def naive_logps(model, tokens, mask):
    logits = model(tokens[:, :-1])  # every position, full vocabulary
    lp = token_logps(logits, tokens[:, 1:])
    return (lp * mask[:, 1:]).sum(-1)


def naive_step_fn(policy, reference, batch):
    b = batch.pairs
    chosen, rejected = batch.tokens[:b], batch.tokens[b:]
    mc, mr = batch.mask[:b], batch.mask[b:]
    opt = optim.AdamW(learning_rate=1e-5)

    def loss_fn(model):
        pc, pr = naive_logps(model, chosen, mc), naive_logps(model, rejected, mr)
        rc = mx.stop_gradient(naive_logps(reference, chosen, mc))
        rr = mx.stop_gradient(naive_logps(reference, rejected, mr))
        return -nn.log_sigmoid(BETA * ((pc - rc) - (pr - rr))).mean()

    grad_fn = nn.value_and_grad(policy, loss_fn)

    def step():
        loss, grads = grad_fn(policy)
        opt.update(policy, grads)
        mx.eval(loss, policy.trainable_parameters(), opt.state)
    return step


# --- ours: the trainer's own step ---------------------------------------------

def our_step_fn(model, pairs, batch, cached: bool, grad_checkpoint: bool, out: Path):
    cfg = TrainConfig(batch_size=len(pairs), iters=1, progress="none", learning_rate=1e-5,
                      grad_checkpoint=grad_checkpoint)
    trainer = Trainer(model, cfg, pad_id=0, out=out, emit=lambda e: None)
    trainer.optimizer = optim.AdamW(learning_rate=1e-5)
    trainer.use_reference(len(pairs), 0)
    if cached:
        trainer.ref_train(batch)

    def step():
        if not cached:
            trainer.use_reference(len(pairs), 0)  # a fresh cache: the first epoch scores the reference
        with recomputing(model, grad_checkpoint):
            metrics, grads = trainer.step_batch(batch)
            trainer.update(grads, metrics, 1)
    return step


def measure(name: str, step, steps: int, warmup: int = 1) -> tuple[float, float]:
    """(median seconds per step, peak GB) over `warmup` untimed and `steps` timed steps."""
    mx.clear_cache()
    mx.reset_peak_memory()
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        tic = time.perf_counter()
        step()
        times.append(time.perf_counter() - tic)
    print(f"  measured {name}: {statistics.median(times):.2f} s/step", file=sys.stderr, flush=True)
    return statistics.median(times), mx.get_peak_memory() / 1e9


def matmul_peak(cfg: dict, tokens: int) -> float:
    """Best FLOP/s of a 4-bit matmul at the model's own layer shapes, both ways round: x @ W.T is the
    forward's product, x @ W the backward's, and a backend may be much faster at one of them."""
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    best = 0.0
    for out_dim in (h, i):
        w, scales, biases = mx.quantize(mx.random.normal((out_dim, h)), group_size=64, bits=4)
        for transpose, x in ((True, mx.random.normal((tokens, h))), (False, mx.random.normal((tokens, out_dim)))):
            mx.eval(w, scales, biases, x)
            for _ in range(3):
                tic = time.perf_counter()
                mx.eval(mx.quantized_matmul(x, w, scales, biases, transpose=transpose, group_size=64, bits=4))
                best = max(best, 2 * tokens * h * out_dim / (time.perf_counter() - tic))
    return best


def step_flops(cfg: dict, tokens: int, seq: int, scored_share: float, reference: float) -> float:
    """6N + 6cH + 4A per token for the policy, plus (2N + 2cH + 2A) x `reference` for reference forwards."""
    h, i, n_layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    kv = cfg["num_key_value_heads"] * h // cfg["num_attention_heads"]
    n = n_layers * (2 * h * h + 2 * h * kv + 3 * h * i)
    head = cfg["vocab_size"] * h
    attn = n_layers * seq * h  # causal QK^T and AV, forward, per token
    return tokens * ((6 * n + 6 * scored_share * head + 4 * attn) + reference * (2 * n + 2 * scored_share * head + 2 * attn))


def head_peak_gb(positions: int, vocab: int, hidden: int) -> tuple[float, float]:
    """Peak GB above the resident weights of value+gradient through the head: (chunked, full logits)."""
    mx.random.seed(0)
    head = nn.Linear(hidden, vocab, bias=False)
    h = mx.random.normal((positions, hidden))
    t = mx.random.randint(0, vocab, (positions,))
    mx.eval(head.parameters(), h, t)
    results = []
    for fn in (lambda x: chunked_logp(head, x, t, max(8, 4_000_000 // vocab)).sum(),
               lambda x: token_logps(head(x), t).sum()):
        mx.clear_cache()
        mx.reset_peak_memory()
        base = mx.get_active_memory()
        mx.eval(mx.value_and_grad(fn)(h))
        results.append((mx.get_peak_memory() - base) / 1e9)
    return results[0], results[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller Qwen2-shaped model; a few minutes on a CPU")
    ap.add_argument("--arch", default=None, choices=sorted(ARCHS))
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--length", type=int, default=None, help="tokens per sequence, a quarter of them prompt "
                    "(default 256; 128 with --quick)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per configuration (default 2; 1 with --quick)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per configuration first (0 is fair on a "
                    "CPU, where nothing is compiled; the peak then comes from the timed steps)")
    ap.add_argument("--head-hidden", type=int, default=None,
                    help="hidden size for the head-peak probe (default: the model's; the peak is set by vocab x chunk)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    arch = args.arch or ("qwen2-small" if args.quick else "qwen2.5-0.5b")
    args.length = args.length or (128 if args.quick else 256)
    args.steps = args.steps or (1 if args.quick else 2)
    cfg = ARCHS[arch]
    pairs = synthetic_pairs(args.pairs, args.length, cfg["vocab_size"])
    batch = collate(pairs, list(range(len(pairs))), pad_id=0)
    tokens = batch.n_tokens
    scored = float(batch.counts.sum().item()) / tokens

    peak_flops = matmul_peak(cfg, tokens)
    rows = {}
    idle = released()
    rows["naive"] = measure("naive", naive_step_fn(policy_model(arch), policy_model(arch), batch),
                            args.steps, args.warmup) + (1.0, 1.0)
    with tempfile.TemporaryDirectory() as out:
        for name, cached, ckpt in (("first", False, False), ("cached", True, False), ("ckpt", True, True)):
            leftover = released() - idle
            assert leftover < 0.01, f"{leftover:.3f} GB of the previous configuration still alive"
            step = our_step_fn(policy_model(arch), pairs, batch, cached, ckpt, Path(out))
            rows[name] = measure(name, step, args.steps, args.warmup) + (scored, 0.0 if cached else 1.0)
            del step
    head_hidden = args.head_hidden or (64 if args.quick else ARCHS["qwen2.5-0.5b"]["hidden_size"])
    head_chunked, head_full = head_peak_gb(1024, 151936, head_hidden)
    # What the peak grows with: half the scored positions at the same vocabulary, and the same
    # positions at half the vocabulary.
    head_half_positions = head_peak_gb(512, 151936, head_hidden)[0]
    head_half_vocab = head_peak_gb(1024, 151936 // 2, head_hidden)[0]

    base_s, base_gb = rows["naive"][0], rows["naive"][1]
    print(f"{arch}, 4-bit, LoRA r=8 on all blocks; {args.pairs} pairs x 2 x {args.length} tokens; "
          f"{mx.default_device()}; matmul peak {peak_flops / 1e9:.1f} GFLOP/s")
    print(f"{'config':<8}{'s/step':>9}{'tok/s':>9}{'peak GB':>9}{'time x':>8}{'mem x':>8}{'of peak':>9}")
    table = {}
    for name, (sec, gb, share, ref) in rows.items():
        flops = step_flops(cfg, tokens, args.length, share, (2.0 if name == "naive" else ref))
        table[name] = {"seconds_per_step": sec, "tokens_per_second": tokens / sec, "peak_gb": gb,
                       "step_ratio": sec / base_s, "memory_ratio": gb / base_gb,
                       "flops_fraction_of_peak": flops / sec / peak_flops}
        t = table[name]
        print(f"{name:<8}{sec:>9.2f}{t['tokens_per_second']:>9.0f}{gb:>9.3f}{t['step_ratio']:>8.2f}"
              f"{t['memory_ratio']:>8.2f}{t['flops_fraction_of_peak']:>9.1%}")
    print(f"log-prob head, 2x512 scored tokens, vocab 151,936 (hidden {head_hidden}): chunked {head_chunked:.3f} GB, "
          f"full logits {head_full:.3f} GB; at 2x256 tokens {head_half_positions:.3f} GB, at half the vocabulary "
          f"{head_half_vocab:.3f} GB")
    report = {
        "arch": arch, "pairs": args.pairs, "length": args.length, "steps": args.steps, "warmup": args.warmup,
        "device": str(mx.default_device()), "mlx": mx.__version__,
        "matmul_peak_gflops": peak_flops / 1e9, "configs": table,
        "memory_ratio": table["cached"]["memory_ratio"],
        "memory_ratio_first_epoch": table["first"]["memory_ratio"],
        "memory_ratio_grad_checkpoint": table["ckpt"]["memory_ratio"],
        "step_ratio_first_epoch": table["first"]["step_ratio"],
        "step_ratio_cached": table["cached"]["step_ratio"],
        "logprob_head_peak_gb": head_chunked, "logprob_head_full_logits_gb": head_full,
        "logprob_head_peak_gb_half_positions": head_half_positions,
        "logprob_head_peak_gb_half_vocab": head_half_vocab,
        "targets": {"memory_ratio": 0.6, "memory_ratio_grad_checkpoint": 0.35, "step_ratio_cached": 0.45,
                    "step_ratio_first_epoch": 0.7, "logprob_head_peak_gb": 0.25},
    }
    report["met"] = {k: report[k] <= v for k, v in report["targets"].items()}
    print("targets: " + ", ".join(f"{k} {report[k]:.2f} <= {v} {'ok' if report['met'][k] else 'MISSED'}"
                                  for k, v in report["targets"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
