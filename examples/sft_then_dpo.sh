#!/usr/bin/env bash
# SFT then DPO in two commands: the SFT adapter is DPO's starting point and its reference model.
# Usage: bash examples/sft_then_dpo.sh MODEL [ITERS]
set -euo pipefail
MODEL=${1:-mlx-community/Qwen2.5-0.5B-Instruct-4bit}
ITERS=${2:-100}
python -m mlx_dpo train --model "$MODEL" --data examples/data/folder --loss-type sft --adapter-path runs/sft --iters "$ITERS" --overwrite
python -m mlx_dpo train --model "$MODEL" --data examples/data/folder --init-adapter runs/sft --adapter-path runs/sft-dpo --iters "$ITERS" --overwrite
