"""mlx-dpo: Direct Preference Optimization with LoRA on quantized MLX models."""

from .config import TrainConfig
from .run import train

__all__ = ["TrainConfig", "train"]
__version__ = "0.1.0"
