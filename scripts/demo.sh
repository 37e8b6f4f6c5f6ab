#!/usr/bin/env bash
# The CPU demo (the README's main job): synthetic videos -> TCLR pretraining -> linear probe and
# nearest-neighbour retrieval of the pretrained and of a randomly initialised backbone -> one table.
# A pipeline run: about 4 minutes, too short to show learning (scripts/learning_demo.sh does).
#
#   bash scripts/demo.sh [--out DIR] [--epochs N] [--dry-run] [extra flags for every entry point]
#
# Sizes (env or flags): PRETRAIN_EPOCHS (default 5 epochs of 12 steps of 10 videos),
# LINEAR_EPOCHS (default 10). The linear probe lets BatchNorm statistics update (--bn-mode train,
# the release's protocol): with frozen statistics a random backbone would be judged with its
# uncalibrated initial ones. Everything lands in --out (default runs/demo); the synthetic dataset in
# data/synthetic_demo (generated on first use). Re-running continues an interrupted pretraining.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

OUT=runs/demo
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-5}
LINEAR_EPOCHS=${LINEAR_EPOCHS:-10}
EXTRA=()
while (( $# )); do
    case $1 in
        --out) need_value "$1" $#; OUT=$2; shift 2 ;;
        --epochs) need_value "$1" $#; PRETRAIN_EPOCHS=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage_from_header "$0"; exit 0 ;;
        *) EXTRA+=("$1"); shift ;;
    esac
done

COMMON=(--preset demo --device cpu "${EXTRA[@]}")
start=$SECONDS
info "1/4 TCLR pretraining on synthetic videos ($PRETRAIN_EPOCHS epochs; generates data/synthetic_demo if absent)"
# --resume auto: a finished run returns at once, an interrupted one continues where it stopped
run "$PYTHON" "$(entry train_pretrain.py)" "${COMMON[@]}" --epochs "$PRETRAIN_EPOCHS" \
    --out-dir "$OUT/pretrain" --resume auto
CKPT=$OUT/pretrain/checkpoints/latest.pth
for init in random tclr; do
    if [[ $init == tclr ]]; then INIT=(--checkpoint "$CKPT"); else INIT=(); fi
    info "2/4 nearest-neighbour retrieval, $init backbone"
    run "$PYTHON" "$(entry nn_retrieval.py)" "${COMMON[@]}" "${INIT[@]}" \
        --out-dir "$OUT/$init/retrieval"
    info "3/4 linear probe, $init backbone ($LINEAR_EPOCHS epochs)"
    run "$PYTHON" "$(entry train_linear.py)" "${COMMON[@]}" "${INIT[@]}" --epochs "$LINEAR_EPOCHS" \
        --preset demo_linear --out-dir "$OUT/$init/linear"
done
info "4/4 results (synthetic test split 1; $(( SECONDS - start )) s in all)"
run "$PYTHON" "$(entry scripts/summarize_runs.py)" "random init=$OUT/random" "TCLR=$OUT/tclr"
info "too short to show learning: on these data and at this budget TCLR does not beat random init" \
     "(docs/demos.md). For 3 seeds of random init vs IC only vs TCLR on data where it" \
     "does learn: bash scripts/learning_demo.sh"
