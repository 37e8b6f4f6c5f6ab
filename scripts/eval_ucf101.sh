#!/usr/bin/env bash
# UCF101 evaluation suite of one checkpoint: linear probe, full finetuning and
# nearest-neighbour retrieval over splits 1-3 (TCLR_SPEC section 7), into one results folder.
#
#   scripts/eval_ucf101.sh CHECKPOINT|random [--splits "1 2 3"] [--seeds "0"] [--out DIR] [--gpus N]
#                      [--dry-run] [ENTRY-POINT FLAGS, e.g. --data-root data/ucf101 --device cuda]
#
# All options: scripts/eval_suite.sh --help (this is eval_suite.sh with the dataset ucf101).
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/eval_suite.sh" ucf101 "$@"
