#!/usr/bin/env bash
# HMDB51 evaluation suite of one checkpoint: linear probe, full finetuning and
# nearest-neighbour retrieval over splits 1-3 (TCLR_SPEC section 7), into one results folder.
#
#   scripts/eval_hmdb51.sh CHECKPOINT|random [--splits "1 2 3"] [--seeds "0"] [--out DIR] [--gpus N]
#                       [--dry-run] [ENTRY-POINT FLAGS, e.g. --data-root data/hmdb51 --device cuda]
#
# All options: scripts/eval_suite.sh --help (this is eval_suite.sh with the dataset hmdb51).
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/eval_suite.sh" hmdb51 "$@"
