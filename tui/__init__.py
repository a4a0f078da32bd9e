"""The Textual terminal UI of mlx-dpo (`python -m mlx_dpo tui`)."""
