"""Random-weight models shaped like real ones, built in memory (nothing downloaded)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_dpo.known_models import ARCHS  # noqa: F401 (re-exported for the benchmarks and tests)


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
