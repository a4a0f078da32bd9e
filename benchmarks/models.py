"""Random-weight models shaped like real ones, built in memory (nothing downloaded)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

# Shapes from the public config.json files of these models.
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
    # A quarter-depth, narrower Qwen2 for --quick runs on a 2-core CPU.
    "qwen2-small": dict(model_type="qwen2", hidden_size=512, num_hidden_layers=6, intermediate_size=1536,
                        num_attention_heads=8, num_key_value_heads=2, vocab_size=32768,
                        tie_word_embeddings=True, rms_norm_eps=1e-6, rope_theta=1000000.0,
                        max_position_embeddings=32768),
    "tiny": dict(model_type="llama", hidden_size=64, num_hidden_layers=2, intermediate_size=128,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=512, rms_norm_eps=1e-5,
                 tie_word_embeddings=False),
}


def build(arch: str, bits: int | None = 4, group_size: int = 64, seed: int = 0) -> tuple[nn.Module, dict]:
    from mlx_lm.utils import _get_classes, quantize_model

    config = dict(ARCHS[arch])
    mx.random.seed(seed)
    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    if bits:
        model, config = quantize_model(model, config, group_size, bits)
    mx.eval(model.parameters())
    model.freeze()
    return model, config
