#!/usr/bin/env bash
# The learning demo (CPU): does TCLR pretraining beat random initialisation and instance
# discrimination alone (IC only), over several seeds? On the "switch" synthetic design (one look for
# every video; a square performs two of four motions one after the other, and the class is the
# pair), for each seed: IC-only and
# full TCLR pretraining, then nearest-neighbour retrieval, a linear probe and the temporal diversity
# of the random-init, IC-only and TCLR backbones; one table of means and standard deviations over
# the seeds, a side-by-side picture of the timestep similarity matrices (seed 0), and the pretraining
# monitor's curves of IC only vs TCLR (Recall@1 on a train-split monitor set and the timestep
# similarity against step, every epoch; the learning preset turns the monitor on).
#
#   bash scripts/learning_demo.sh [--out DIR] [--seeds "0 1 2"] [--epochs N] [--jobs N] [--dry-run]
#                                 [extra flags for every entry point]
#
# Sizes (env or flags): SEEDS ("0 1 2"), PRETRAIN_EPOCHS (--epochs; default 30 epochs of
# STEPS_PER_EPOCH=10 steps of BATCH=20 videos: 300 steps), LINEAR_EPOCHS (10), EVAL_CLIPS (clips per
# video for retrieval and temporal diversity, 3), VIDEOS_PER_CLASS (180: 324 test queries on split
# 1), DIVERSITY_VIDEOS (test videos for temporal diversity, 120), DESIGN (switch; or trajectory),
# DATA (dataset folder, data/synthetic_$DESIGN, generated on first use). JOBS (2) commands run
# side by side, one thread each (OMP_NUM_THREADS=1, which on a loaded machine is also several times
# faster per process than two threads); each writes its log to DIR/logs/. Finished pretraining
# runs are reused on a re-run; the evaluations run again (--overwrite true: the earlier results
# stay until the new ones are saved). Everything lands in --out (default runs/learning_demo).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

OUT=runs/learning_demo
SEEDS=${SEEDS:-"0 1 2"}
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-30}
STEPS_PER_EPOCH=${STEPS_PER_EPOCH:-10}
BATCH=${BATCH:-20}
LINEAR_EPOCHS=${LINEAR_EPOCHS:-10}
EVAL_CLIPS=${EVAL_CLIPS:-3}
VIDEOS_PER_CLASS=${VIDEOS_PER_CLASS:-180}
DIVERSITY_VIDEOS=${DIVERSITY_VIDEOS:-120}
DESIGN=${DESIGN:-switch}
DATA=${DATA:-data/synthetic_$DESIGN}
JOBS=${JOBS:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
EXTRA=()
while (( $# )); do
    split_eq "--out --seeds --epochs --jobs" "$1" && set -- "${EQ_SPLIT[@]}" "${@:2}"
    case $1 in
        --out) need_value "$1" $#; OUT=$2; shift 2 ;;
        --seeds) need_value "$1" $#; SEEDS=$2; shift 2 ;;
        --epochs) need_value "$1" $#; PRETRAIN_EPOCHS=$2; shift 2 ;;
        --jobs) need_value "$1" $#; JOBS=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage_from_header "$0"; exit 0 ;;
        *) EXTRA+=("$1"); shift ;;
    esac
done
for value in "$PRETRAIN_EPOCHS" "$STEPS_PER_EPOCH" "$BATCH" "$LINEAR_EPOCHS" "$EVAL_CLIPS" "$VIDEOS_PER_CLASS" \
             "$DIVERSITY_VIDEOS" "$JOBS" $SEEDS; do
    is_uint "$value" || die "sizes and seeds must be non-negative integers, got '$value'"
done
(( JOBS >= 1 )) || die "--jobs must be >= 1"
read -r -a SEED_LIST <<< "$SEEDS"
(( ${#SEED_LIST[@]} >= 1 )) || die "--seeds names no seed"

COMMON=(--preset learning --device cpu --data-root "$DATA" --synthetic-design "$DESIGN"
        --synthetic-videos-per-class "$VIDEOS_PER_CLASS" --progress false "${EXTRA[@]}")

# Background commands, at most JOBS at once; `settle` waits for all and stops at the first failure.
PIDS=()
NAMES=()
DONE=0
TOTAL=0
start=$SECONDS
clock() { printf '%d:%02d' $(( (SECONDS - start) / 60 )) $(( (SECONDS - start) % 60 )); }
launch() {  # launch NAME CMD...
    local name=$1
    shift
    show "$@"
    [[ $DRY_RUN == 1 ]] && return 0
    (( ${#PIDS[@]} < JOBS )) || settle
    mkdir -p "$OUT/logs"
    "$@" > "$OUT/logs/$name.log" 2>&1 &
    PIDS+=("$!")
    NAMES+=("$name")
    info "[$(clock)] started $name (log: $OUT/logs/$name.log)"
}
settle() {
    local i status
    for i in "${!PIDS[@]}"; do
        status=0
        wait "${PIDS[$i]}" || status=$?
        if (( status )); then
            tail -n 15 "$OUT/logs/${NAMES[$i]}.log" >&2
            die "${NAMES[$i]} failed (exit $status); its log: $OUT/logs/${NAMES[$i]}.log"
        fi
        DONE=$(( DONE + 1 ))
        info "[$(clock)] finished ${NAMES[$i]} ($DONE of $TOTAL commands)"
    done
    PIDS=()
    NAMES=()
}
stop_children() {  # Ctrl-C or an error: end the commands this script started, by their ids
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2> /dev/null || true
    done
}
trap stop_children EXIT

INITS=(random ic_only tclr)
TOTAL=$(( ${#SEED_LIST[@]} * (2 + 3 * 3) + 1 ))
info "[$(clock)] synthetic data ($DATA; generated once, about a minute)"
set_pymodule dataloaders.synthetic
run "${PYMOD[@]}" --out "$DATA" --design "$DESIGN" --classes 6 --videos-per-class "$VIDEOS_PER_CLASS" \
    --frames 96 --width 64 --height 48 --seed 0 --workers "$JOBS" --quiet

info "[$(clock)] pretraining: IC only and full TCLR, seeds ${SEED_LIST[*]}, $PRETRAIN_EPOCHS epochs of" \
     "$STEPS_PER_EPOCH steps of $BATCH videos each"
for seed in "${SEED_LIST[@]}"; do
    for variant in ic_only tclr; do
        if [[ $variant == ic_only ]]; then WEIGHTS=(--w-local-local 0 --w-global-local 0); else WEIGHTS=(); fi
        launch "$variant-seed$seed-pretrain" "$PYTHON" "$(entry train_pretrain.py)" "${COMMON[@]}" \
            --seed "$seed" --epochs "$PRETRAIN_EPOCHS" --max-steps-per-epoch "$STEPS_PER_EPOCH" \
            --batch-size "$BATCH" "${WEIGHTS[@]}" --out-dir "$OUT/pretrain/${variant}_seed$seed" \
            --resume auto
    done
done
settle
IC_RUNS=() TCLR_RUNS=()
for seed in "${SEED_LIST[@]}"; do
    IC_RUNS+=("$OUT/pretrain/ic_only_seed$seed") TCLR_RUNS+=("$OUT/pretrain/tclr_seed$seed")
done
run "$PYTHON" "$(entry scripts/plot_monitor_curves.py)" "IC only=$(IFS=,; echo "${IC_RUNS[*]}")" \
    "TCLR=$(IFS=,; echo "${TCLR_RUNS[*]}")" --out "$OUT/monitor_curves.png"

info "[$(clock)] evaluation: retrieval, linear probe ($LINEAR_EPOCHS epochs) and temporal diversity"
for seed in "${SEED_LIST[@]}"; do
    for init in "${INITS[@]}"; do
        dir=$OUT/$init/seed$seed
        if [[ $init == random ]]; then CKPT=random INIT=(); else
            CKPT=$OUT/pretrain/${init}_seed$seed/checkpoints/latest.pth INIT=(--checkpoint "$CKPT"); fi
        launch "$init-seed$seed-retrieval" "$PYTHON" "$(entry nn_retrieval.py)" "${COMMON[@]}" \
            --seed "$seed" "${INIT[@]}" --num-clips "$EVAL_CLIPS" --overwrite true \
            --out-dir "$dir/retrieval"
        launch "$init-seed$seed-linear" "$PYTHON" "$(entry train_linear.py)" "${COMMON[@]}" \
            --seed "$seed" "${INIT[@]}" --epochs "$LINEAR_EPOCHS" "${DEMO_LINEAR_ARGS[@]}" \
            --overwrite true --out-dir "$dir/linear"
        launch "$init-seed$seed-diversity" "$PYTHON" "$(entry scripts/temporal_diversity.py)" \
            "$CKPT" "${COMMON[@]}" --seed "$seed" --num-clips "$EVAL_CLIPS" --max-videos "$DIVERSITY_VIDEOS" \
            --overwrite true --out-dir "$dir/diversity"
    done
done
first=${SEED_LIST[0]}
launch "diversity-figure" "$PYTHON" "$(entry scripts/temporal_diversity.py)" random \
    "$OUT/pretrain/ic_only_seed$first/checkpoints/latest.pth" \
    "$OUT/pretrain/tclr_seed$first/checkpoints/latest.pth" "${COMMON[@]}" --seed "$first" \
    --num-clips "$EVAL_CLIPS" \
    --max-videos "$DIVERSITY_VIDEOS" --overwrite true --out-dir "$OUT/diversity_seed$first"
settle

# the table covers every seed folder under $OUT, also those of earlier runs with other --seeds
shown=${SEED_LIST[*]}
if [[ $DRY_RUN != 1 ]]; then
    shown=$(cd "$OUT/random" && printf '%s\n' seed* | sed 's/^seed//' | sort -n | tr '\n' ' ')
fi
info "[$(clock)] results: synthetic test split 1, mean ± std over seeds ${shown% }" \
     "($(( SECONDS - start )) s in all)"
run "$PYTHON" "$(entry scripts/summarize_runs.py)" "random init=$OUT/random" "IC only=$OUT/ic_only" \
    "TCLR=$OUT/tclr"
info "timestep similarity matrices (random init, IC only, TCLR; seed $first):" \
     "$OUT/diversity_seed$first/similarity_all.png"
info "the pretraining monitor's curves (IC only vs TCLR, every seed): $OUT/monitor_curves.png"
