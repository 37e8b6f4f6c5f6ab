#!/usr/bin/env bash
# Does pretraining pass random initialisation, and when? Nearest-neighbour retrieval of a randomly
# initialised backbone and of every saved epoch checkpoint (checkpoints/epoch_NNNN.pth) of one
# pretraining run, printed as one table (R@1, R@5 per checkpoint).
#
#   bash scripts/retrieval_curve.sh RUN_DIR [--out DIR] [--dry-run] [flags for nn_retrieval.py]
#
# Pass the data and backbone flags of the pretraining run (e.g. --preset demo --device cpu, or
# --preset ucf101_r3d18 --data-root data/ucf101). Results land in --out (default RUN_DIR/curve);
# finished evaluations are reused on a re-run. Save checkpoints more often with the pretraining
# flag --save-every-epochs N. Example (the demo's data, 30 epochs, a checkpoint every 3):
#   python train_pretrain.py --preset demo --device cpu --epochs 30 --save-every-epochs 3 --out-dir runs/curve
#   bash scripts/retrieval_curve.sh runs/curve --preset demo --device cpu
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

RUN_DIR=""
OUT=""
EXTRA=()
while (( $# )); do
    case $1 in
        --out) need_value "$1" $#; OUT=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage_from_header "$0"; exit 0 ;;
        *) if [[ -z $RUN_DIR && $1 != -* ]]; then RUN_DIR=$1; else EXTRA+=("$1"); fi; shift ;;
    esac
done
[[ -n $RUN_DIR ]] || die "name the pretraining run folder: bash scripts/retrieval_curve.sh RUN_DIR [flags]"
OUT=${OUT:-$RUN_DIR/curve}
shopt -s nullglob
CHECKPOINTS=("$RUN_DIR"/checkpoints/epoch_*.pth)
(( ${#CHECKPOINTS[@]} )) || die "no $RUN_DIR/checkpoints/epoch_*.pth: pretrain with --save-every-epochs N" \
    "(and --out-dir $RUN_DIR) first"

# evaluate NAME [--checkpoint PATH]: retrieval into OUT/NAME/retrieval unless it is already there
evaluate() {
    local name=$1; shift
    if [[ -f $OUT/$name/retrieval/results.json ]]; then
        info "$name: reusing $OUT/$name/retrieval/results.json"
        return 0
    fi
    run "$PYTHON" "$(entry nn_retrieval.py)" ${EXTRA[@]+"${EXTRA[@]}"} "$@" --num-grid-queries 0 \
        --out-dir "$OUT/$name/retrieval"
}

start=$SECONDS
info "random init"
evaluate random
ROWS=("random init=$OUT/random")
for ckpt in "${CHECKPOINTS[@]}"; do
    name=$(basename "$ckpt" .pth)
    label=$name
    if [[ $DRY_RUN != 1 ]]; then  # the optimizer steps the checkpoint was taken after
        steps=$("$PYTHON" -c "import sys, torch; print(torch.load(sys.argv[1], map_location='cpu', weights_only=True)['step'])" "$ckpt") \
            || die "$ckpt is not a readable checkpoint of this project"
        label="$name ($steps steps)"
    fi
    info "$label"
    evaluate "$name" --checkpoint "$ckpt"
    ROWS+=("$label=$OUT/$name")
done
info "retrieval after each checkpoint of $RUN_DIR ($(( SECONDS - start )) s)"
run "$PYTHON" "$(entry scripts/summarize_runs.py)" "${ROWS[@]}"
