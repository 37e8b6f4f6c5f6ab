#!/usr/bin/env bash
# Does pretraining pass random initialisation, and when? Nearest-neighbour retrieval of a randomly
# initialised backbone and of every saved epoch checkpoint (checkpoints/epoch_NNNN.pth) of one
# pretraining run, printed as one table (R@1, R@5 per checkpoint).
#
#   bash scripts/retrieval_curve.sh RUN_DIR [--out DIR] [--dry-run] [flags for nn_retrieval.py]
#
# Example (the demo's data, 30 epochs, a checkpoint every 3):
#   python train_pretrain.py --preset demo --device cpu --epochs 30 --save-every-epochs 3 --out-dir runs/curve
#   bash scripts/retrieval_curve.sh runs/curve --preset demo --device cpu
# More: bash scripts/retrieval_curve.sh --help. The plan is Python: scripts/orchestrate.py curve
# (PYTHON names the interpreter).
set -euo pipefail
exec "${PYTHON:-python}" "$(dirname "${BASH_SOURCE[0]}")/orchestrate.py" curve "$@"
