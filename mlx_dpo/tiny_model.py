"""Build a small random-init model folder that `mlx_lm.load` reads.

Nothing here downloads: the tokenizer is trained with `tokenizers` on the
text it is given and the weights are random. The demo, the benchmarks and
the tests all start from such a folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

import mlx.core as mx
from mlx.utils import tree_flatten

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<|im_start|>", "<|im_end|>"]


def train_tokenizer(lines: Iterable[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer, the kind most chat models ship."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(lines), trainer=trainer)
    return tok


def model_config(vocab_size: int, hidden: int, layers: int, eos_id: int, **extra) -> dict:
    config = {
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "intermediate_size": 2 * hidden,
        "num_attention_heads": max(1, hidden // 16),
        "num_key_value_heads": max(1, hidden // 32),
        "rms_norm_eps": 1e-5,
        "vocab_size": vocab_size,
        "rope_theta": 10000.0,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
        "eos_token_id": eos_id,
    }
    config.update(extra)
    return config


def save_random_model(path: Path, config: dict, seed: int = 0, quantize_bits: Optional[int] = None,
                      q_group_size: int = 64) -> None:
    """Random weights for `config`, written the way mlx-lm writes models."""
    from mlx_lm.utils import _get_classes, quantize_model, save_config

    mx.random.seed(seed)
    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    if quantize_bits:
        model, config = quantize_model(model, dict(config), q_group_size, quantize_bits)
    mx.save_safetensors(str(path / "model.safetensors"), dict(tree_flatten(model.parameters())))
    save_config(dict(config), path / "config.json")


def build_tiny_model(path: str | Path, corpus: Iterable[str], hidden: int = 64, layers: int = 2,
                     vocab_size: int = 512, seed: int = 0, quantize_bits: Optional[int] = None,
                     chat_template: Optional[str] = CHATML_TEMPLATE) -> Path:
    """Write tokenizer, config and random weights into `path` and return it."""
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(corpus, vocab_size)
    kwargs = {"chat_template": chat_template} if chat_template else {}
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>", **kwargs
    )
    hf_tok.save_pretrained(str(path))
    eos_id = tok.token_to_id("<|im_end|>")
    config = model_config(tok.get_vocab_size(), hidden, layers, eos_id)
    save_random_model(path, config, seed=seed, quantize_bits=quantize_bits)
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": eos_id}))
    return path
