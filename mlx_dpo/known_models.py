"""Shapes of popular models, so memory can be planned before anything is downloaded.

Used by the TUI's memory estimate and by the benchmarks, which build
random-weight models of these shapes. Values are from each model's public
config.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

ARCHS = {
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, num_hidden_layers=24, intermediate_size=4864,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                         tie_word_embeddings=True, rms_norm_eps=1e-6, rope_theta=1000000.0,
                         max_position_embeddings=32768),
    "llama3.2-3b": dict(model_type="llama", hidden_size=3072, num_hidden_layers=28, intermediate_size=8192,
                        num_attention_heads=24, num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True,
                        rms_norm_eps=1e-5, rope_theta=500000.0, head_dim=128),
    "llama3.1-8b": dict(model_type="llama", hidden_size=4096, num_hidden_layers=32, intermediate_size=14336,
                        num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False,
                        rms_norm_eps=1e-5, rope_theta=500000.0),
    # A quarter-depth, narrower Qwen2 for --quick benchmark runs on a 2-core CPU.
    "qwen2-small": dict(model_type="qwen2", hidden_size=512, num_hidden_layers=6, intermediate_size=1536,
                        num_attention_heads=8, num_key_value_heads=2, vocab_size=32768,
                        tie_word_embeddings=True, rms_norm_eps=1e-6, rope_theta=1000000.0,
                        max_position_embeddings=32768),
    "tiny": dict(model_type="llama", hidden_size=64, num_hidden_layers=2, intermediate_size=128,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=512, rms_norm_eps=1e-5,
                 tie_word_embeddings=False),
}

# Hub ids of the MLX builds the example configs and the TUI presets use, with their bits.
HUB_MODELS = {
    "mlx-community/Qwen2.5-0.5B-Instruct-4bit": ("qwen2.5-0.5b", 4),
    "mlx-community/Llama-3.2-3B-Instruct-4bit": ("llama3.2-3b", 4),
    "mlx-community/Meta-Llama-3.1-8B-Instruct-4bit": ("llama3.1-8b", 4),
}


def model_config(model: str) -> Optional[dict]:
    """config.json of a local folder, of a hub id already in the local cache, or of a known hub id."""
    if not model:
        return None
    path = Path(model).expanduser() / "config.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None
    if model.count("/") == 1 and not Path(model).exists():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "config.json")
            if isinstance(cached, str):
                return json.loads(Path(cached).read_text())
        except (ImportError, OSError, ValueError):
            pass
    if model in HUB_MODELS:
        arch, bits = HUB_MODELS[model]
        return {**ARCHS[arch], "quantization": {"bits": bits, "group_size": 64}}
    return None
