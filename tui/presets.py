"""Settings known to fit Macs by memory size; the same as examples/configs (a test keeps them equal)."""

from __future__ import annotations

COMMON = dict(loss_type="sigmoid", beta=0.1, learning_rate=5e-6, epochs=2, grad_checkpoint=True,
              num_layers=16, max_prompt_length=512)

PRESETS: dict[str, dict] = {
    "8 GB": dict(COMMON, model="mlx-community/Qwen2.5-0.5B-Instruct-4bit", batch_size=1,
                 grad_accumulation_steps=4, max_length=512, max_prompt_length=256, lora_rank=8, lora_alpha=16),
    "16 GB": dict(COMMON, model="mlx-community/Llama-3.2-3B-Instruct-4bit", batch_size=1,
                  grad_accumulation_steps=4, max_length=1024, lora_rank=8, lora_alpha=16),
    "32 GB+": dict(COMMON, model="mlx-community/Meta-Llama-3.1-8B-Instruct-4bit", batch_size=2,
                   grad_accumulation_steps=2, max_length=1024, lora_rank=16, lora_alpha=32),
}

# The example config each preset mirrors.
EXAMPLE_FILES = {"8 GB": "mac-8gb-qwen2.5-0.5b.yaml", "16 GB": "mac-16gb-llama3.2-3b.yaml",
                 "32 GB+": "mac-32gb-llama3.1-8b.yaml"}
