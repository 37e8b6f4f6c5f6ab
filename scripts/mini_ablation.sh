#!/usr/bin/env bash
# The paper's loss ablation at demo scale on the synthetic dataset (CPU): IC only, IC + local-local,
# IC + global-local and full TCLR, each pretrained with the same budget and seed, plus random init;
# each backbone judged by nearest-neighbour retrieval (and, with --linear, a linear probe).
#
#   bash scripts/mini_ablation.sh [--out DIR] [--epochs N] [--linear] [--dry-run] [extra flags]
#
# Default budget: 6 epochs of 12 steps of 10 videos per variant (PRETRAIN_EPOCHS), about 3 CPU
# minutes each on 2 idle cores; LINEAR_EPOCHS (default 10) for --linear, which, like demo.sh, lets
# BatchNorm statistics update (--bn-mode train). Finished pretraining is reused on a re-run; the
# evaluations run again (--overwrite true: the earlier results stay until the new ones are saved).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

OUT=runs/mini_ablation
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-6}
LINEAR_EPOCHS=${LINEAR_EPOCHS:-10}
LINEAR=0
EXTRA=()
while (( $# )); do
    split_eq "--out --epochs" "$1" && set -- "${EQ_SPLIT[@]}" "${@:2}"
    case $1 in
        --out) need_value "$1" $#; OUT=$2; shift 2 ;;
        --epochs) need_value "$1" $#; PRETRAIN_EPOCHS=$2; shift 2 ;;
        --linear) LINEAR=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage_from_header "$0"; exit 0 ;;
        *) EXTRA+=("$1"); shift ;;
    esac
done

COMMON=(--preset demo --device cpu "${EXTRA[@]}")
# variant name -> loss weights (ic_global ic_local local_local global_local)
declare -A WEIGHTS=([ic_only]="1 1 0 0" [ic_ll]="1 1 1 0" [ic_gl]="1 1 0 1" [tclr]="1 1 1 1")
VARIANTS=(ic_only ic_ll ic_gl tclr)

evaluate() {  # evaluate NAME [--checkpoint PATH]
    local name=$1; shift
    run "$PYTHON" "$(entry nn_retrieval.py)" "${COMMON[@]}" "$@" --overwrite true \
        --out-dir "$OUT/$name/retrieval"
    if [[ $LINEAR == 1 ]]; then
        run "$PYTHON" "$(entry train_linear.py)" "${COMMON[@]}" "$@" --overwrite true \
            --epochs "$LINEAR_EPOCHS" \
            --preset demo_linear --out-dir "$OUT/$name/linear"
    fi
}

start=$SECONDS
info "random init"
evaluate random
for variant in "${VARIANTS[@]}"; do
    read -r ig il ll gl <<< "${WEIGHTS[$variant]}"
    info "$variant: pretraining $PRETRAIN_EPOCHS epochs (weights ic_global $ig, ic_local $il, local_local $ll, global_local $gl)"
    run "$PYTHON" "$(entry train_pretrain.py)" "${COMMON[@]}" --epochs "$PRETRAIN_EPOCHS" \
        --w-ic-global "$ig" --w-ic-local "$il" --w-local-local "$ll" --w-global-local "$gl" \
        --out-dir "$OUT/$variant/pretrain" --resume auto
    evaluate "$variant" --checkpoint "$OUT/$variant/pretrain/checkpoints/latest.pth"
done
info "results (synthetic test split 1; $(( SECONDS - start )) s in all)"
run "$PYTHON" "$(entry scripts/summarize_runs.py)" "random init=$OUT/random" \
    "IC only=$OUT/ic_only" "IC + LL=$OUT/ic_ll" "IC + GL=$OUT/ic_gl" "TCLR (IC + LL + GL)=$OUT/tclr"
