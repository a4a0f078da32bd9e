"""mlx-dpo from Python: train, evaluate and compare answers, all offline.

    python examples/api.py [WORK_DIR]

Builds a small local model (no download) so it runs anywhere; point `model`
at a real MLX model (e.g. "mlx-community/Qwen2.5-0.5B-Instruct-4bit") and
`data` at your preference file for real use.
"""

import sys
from pathlib import Path

from mlx_dpo import TrainConfig, train
from mlx_dpo.config import EvalConfig, GenerateConfig
from mlx_dpo.eval_report import evaluate
from mlx_dpo.generate import answer
from mlx_dpo.model import load_tuned
from mlx_dpo.synthetic_data import corpus_lines, write_splits
from mlx_dpo.tiny_model import build_tiny_model

work = Path(sys.argv[1] if len(sys.argv) > 1 else "api_example")
model = str(build_tiny_model(work / "model", list(corpus_lines()) * 2))
data = str(write_splits(work / "data"))

result = train(TrainConfig(model=model, data=data, adapter_path=str(work / "adapters"), learning_rate=2e-3,
                           batch_size=8, iters=24, progress="none"),
               on_event=lambda e: e["event"] == "eval" and print(f"step {e['step']}: val accuracy "
                                                                 f"{e['rewards/accuracies']:.2f}"))
report = evaluate(EvalConfig(model=model, adapter_path=result["adapter_path"], data=data), progress=False)
print(f"held-out preference accuracy: {report['tuned']['preference_accuracy']:.2f}")

tuned = load_tuned(model, result["adapter_path"])
question = [{"role": "user", "content": "Tell me about the cat."}]
for label, use_adapters in (("base", False), ("tuned", True)):
    print(f"[{label}]", answer(tuned.model, tuned.tokenizer, question, GenerateConfig(max_tokens=12), use_adapters))
