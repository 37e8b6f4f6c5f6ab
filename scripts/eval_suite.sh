#!/usr/bin/env bash
# The evaluation suite of one dataset: linear probe, full finetuning and nearest-neighbour
# retrieval of one checkpoint over the official splits, into one results folder, then the tables.
# scripts/eval_ucf101.sh and scripts/eval_hmdb51.sh call this with their dataset name.
#
#   scripts/eval_suite.sh DATASET CHECKPOINT|random [options] [ENTRY-POINT FLAGS...] [-- FLAGS...]
#
# All options: scripts/eval_suite.sh --help. The run matrix, its checks, the skip of finished runs
# and the failure ledger are Python: scripts/orchestrate.py suite (PYTHON names the interpreter).
set -euo pipefail
exec "${PYTHON:-python}" "$(dirname "${BASH_SOURCE[0]}")/orchestrate.py" suite "$@"
