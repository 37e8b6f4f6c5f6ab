#!/usr/bin/env bash
# The learning demo (CPU): does TCLR pretraining beat random initialisation and instance
# discrimination alone (IC only), over several seeds? On the "switch" synthetic design (one look for
# every video; a square performs two of four motions one after the other, and the class is the
# pair), for each seed: IC-only and full TCLR pretraining, then nearest-neighbour retrieval, a
# linear probe and the temporal diversity of the random-init, IC-only and TCLR backbones; one table
# of means and standard deviations over the seeds, a side-by-side picture of the timestep
# similarity matrices (first seed), and the pretraining monitor's curves of IC only vs TCLR
# (Recall@1 on a train-split monitor set and the timestep similarity against step, every epoch;
# the learning preset turns the monitor on). scripts/demo.sh runs it for one seed, without IC only.
#
#   bash scripts/learning_demo.sh [--out DIR] [--seeds "0 1 2"] [--epochs N] [--jobs N]
#                                 [--data-seed N] [--variants "ic_only tclr"] [--dry-run]
#                                 [extra flags for every entry point]
#
# Sizes (env or flags): SEEDS ("0 1 2"), PRETRAIN_EPOCHS (--epochs; default 30 epochs of
# STEPS_PER_EPOCH=10 steps of BATCH=20 videos: 300 steps), LINEAR_EPOCHS (10), EVAL_CLIPS (clips per
# video for retrieval and temporal diversity, 3), VIDEOS_PER_CLASS (180: 324 test queries on split
# 1), DIVERSITY_VIDEOS (test videos for temporal diversity, 120), DESIGN (switch; or trajectory),
# DATA_SEED (--data-seed: the generator's seed, i.e. which draw of videos; 0), DATA (dataset
# folder, data/synthetic_$DESIGN for data seed 0, data/synthetic_${DESIGN}_seed$DATA_SEED otherwise;
# generated on first use), VARIANTS (--variants: the pretrainings, "ic_only tclr"; random init is
# always evaluated). JOBS (2) commands run side by side, one thread each (OMP_NUM_THREADS=1, which
# on a loaded machine is also several times faster per process than two threads). Quiet: one line
# per finished command; each command's console output goes to DIR/logs/NAME.log (its first line is
# the command), and each job's own log.txt to its run folder; a failure prints the log's tail and
# path. Finished pretraining runs are reused on a re-run; the evaluations run again (--overwrite
# true: the earlier results stay until the new ones are saved). Everything lands in --out
# (default runs/learning_demo).
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
DATA_SEED=${DATA_SEED:-0}
DATA=${DATA:-}
VARIANTS=${VARIANTS:-"ic_only tclr"}
JOBS=${JOBS:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
EXTRA=()
while (( $# )); do
    split_eq "--out --seeds --epochs --jobs --data-seed --variants" "$1" \
        && set -- "${EQ_SPLIT[@]}" "${@:2}"
    case $1 in
        --out) need_value "$1" $#; OUT=$2; shift 2 ;;
        --seeds) need_value "$1" $#; SEEDS=$2; shift 2 ;;
        --epochs) need_value "$1" $#; PRETRAIN_EPOCHS=$2; shift 2 ;;
        --jobs) need_value "$1" $#; JOBS=$2; shift 2 ;;
        --data-seed) need_value "$1" $#; DATA_SEED=$2; shift 2 ;;
        --variants) need_value "$1" $#; VARIANTS=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage_from_header "$0"; exit 0 ;;
        *) EXTRA+=("$1"); shift ;;
    esac
done
for value in "$PRETRAIN_EPOCHS" "$STEPS_PER_EPOCH" "$BATCH" "$LINEAR_EPOCHS" "$EVAL_CLIPS" "$VIDEOS_PER_CLASS" \
             "$DIVERSITY_VIDEOS" "$JOBS" "$DATA_SEED" $SEEDS; do
    is_uint "$value" || die "sizes and seeds must be non-negative integers, got '$value'"
done
(( JOBS >= 1 )) || die "--jobs must be >= 1"
read -r -a SEED_LIST <<< "$SEEDS"
(( ${#SEED_LIST[@]} >= 1 )) || die "--seeds names no seed"
read -r -a VARIANT_LIST <<< "$VARIANTS"
(( ${#VARIANT_LIST[@]} >= 1 )) || die "--variants names no pretraining"
for variant in "${VARIANT_LIST[@]}"; do
    [[ $variant == ic_only || $variant == tclr ]] \
        || die "--variants takes ic_only and/or tclr, got '$variant'"
done
if [[ -z $DATA ]]; then
    DATA=data/synthetic_$DESIGN
    (( DATA_SEED == 0 )) || DATA+=_seed$DATA_SEED
fi
declare -A LABEL=([random]="random init" [ic_only]="IC only" [tclr]="TCLR")

COMMON=(--preset learning --device cpu --data-root "$DATA" --synthetic-design "$DESIGN"
        --synthetic-videos-per-class "$VIDEOS_PER_CLASS" --progress false "${EXTRA[@]}")

# Background commands, at most JOBS at once: `launch` waits for any one to finish when all slots
# are taken, `settle` for all of them; both stop at the first failure.
declare -A RUNNING=()  # pid -> name
DONE=0
TOTAL=0
start=$SECONDS
clock() { printf '%d:%02d' $(( (SECONDS - start) / 60 )) $(( (SECONDS - start) % 60 )); }
launch() {  # launch NAME CMD...: the command goes to the first line of its log, not the console
    local name=$1
    shift
    if [[ $DRY_RUN == 1 ]]; then show "$@"; return 0; fi
    while (( ${#RUNNING[@]} >= JOBS )); do reap; done
    mkdir -p "$OUT/logs"
    show "$@" > "$OUT/logs/$name.log"
    "$@" >> "$OUT/logs/$name.log" 2>&1 &
    RUNNING[$!]=$name
}
reap() {  # wait for one background command; one line when it succeeded, its log's tail if not
    local pid status=0 name log
    wait -n -p pid "${!RUNNING[@]}" || status=$?
    name=${RUNNING[$pid]}
    log=$OUT/logs/$name.log
    unset "RUNNING[$pid]"
    if (( status )); then
        tail -n 15 "$log" >&2
        die "$name failed (exit $status); its log: $log"
    fi
    DONE=$(( DONE + 1 ))
    info "[$(clock)] $DONE/$TOTAL finished $name (log: $log)"
}
settle() {
    while (( ${#RUNNING[@]} )); do reap; done
}
stop_children() {  # Ctrl-C or an error: end the commands this script started, by their ids
    local pid
    for pid in "${!RUNNING[@]}"; do
        kill "$pid" 2> /dev/null || true
    done
}
trap stop_children EXIT

INITS=(random "${VARIANT_LIST[@]}")
TOTAL=$(( 1 + ${#SEED_LIST[@]} * (${#VARIANT_LIST[@]} + 3 * ${#INITS[@]}) + 2 ))
info "[$(clock)] synthetic data ($DATA, generator seed $DATA_SEED; generated once, about a minute)"
set_pymodule dataloaders.synthetic
launch "data" "${PYMOD[@]}" --out "$DATA" --design "$DESIGN" --classes 6 \
    --videos-per-class "$VIDEOS_PER_CLASS" --frames 96 --width 64 --height 48 --seed "$DATA_SEED" \
    --workers "$JOBS" --quiet
settle

# Random init's evaluations need no pretraining: they run beside it (a free process slot).
evaluate() {  # evaluate SEED INIT
    local seed=$1 init=$2 dir=$OUT/$2/seed$1 CKPT INIT
    if [[ $init == random ]]; then CKPT=random INIT=(); else
        CKPT=$OUT/pretrain/${init}_seed$seed/checkpoints/latest.pth INIT=(--checkpoint "$CKPT"); fi
    launch "$init-seed$seed-retrieval" "$PYTHON" "$(entry nn_retrieval.py)" "${COMMON[@]}" \
        --seed "$seed" "${INIT[@]}" --num-clips "$EVAL_CLIPS" --overwrite true \
        --out-dir "$dir/retrieval"
    launch "$init-seed$seed-linear" "$PYTHON" "$(entry train_linear.py)" "${COMMON[@]}" \
        --seed "$seed" "${INIT[@]}" --epochs "$LINEAR_EPOCHS" "${DEMO_LINEAR_ARGS[@]}" \
        --overwrite true --out-dir "$dir/linear"
    launch "$init-seed$seed-diversity" "$PYTHON" "$(entry scripts/temporal_diversity.py)" \
        "$CKPT" "${COMMON[@]}" --seed "$seed" --num-clips "$EVAL_CLIPS" \
        --max-videos "$DIVERSITY_VIDEOS" --overwrite true --out-dir "$dir/diversity"
}

info "[$(clock)] pretraining (${VARIANT_LIST[*]}; seeds ${SEED_LIST[*]}; $PRETRAIN_EPOCHS" \
     "epochs of $STEPS_PER_EPOCH steps of $BATCH videos each), then retrieval, a" \
     "$LINEAR_EPOCHS-epoch linear probe and temporal diversity of each backbone"
for seed in "${SEED_LIST[@]}"; do
    for variant in "${VARIANT_LIST[@]}"; do
        if [[ $variant == ic_only ]]; then WEIGHTS=(--w-local-local 0 --w-global-local 0); else WEIGHTS=(); fi
        launch "$variant-seed$seed-pretrain" "$PYTHON" "$(entry train_pretrain.py)" "${COMMON[@]}" \
            --seed "$seed" --epochs "$PRETRAIN_EPOCHS" --max-steps-per-epoch "$STEPS_PER_EPOCH" \
            --batch-size "$BATCH" "${WEIGHTS[@]}" --out-dir "$OUT/pretrain/${variant}_seed$seed" \
            --resume auto
    done
done
for seed in "${SEED_LIST[@]}"; do evaluate "$seed" random; done
settle

settle
CURVES=()
for variant in "${VARIANT_LIST[@]}"; do
    runs=()
    for seed in "${SEED_LIST[@]}"; do runs+=("$OUT/pretrain/${variant}_seed$seed"); done
    CURVES+=("${LABEL[$variant]}=$(IFS=,; echo "${runs[*]}")")
done
launch "monitor-curves" "$PYTHON" "$(entry scripts/plot_monitor_curves.py)" "${CURVES[@]}" \
    --out "$OUT/monitor_curves.png"

for seed in "${SEED_LIST[@]}"; do
    for init in "${VARIANT_LIST[@]}"; do evaluate "$seed" "$init"; done
done
first=${SEED_LIST[0]}
FIGURE=(random)
for variant in "${VARIANT_LIST[@]}"; do
    FIGURE+=("$OUT/pretrain/${variant}_seed$first/checkpoints/latest.pth")
done
launch "diversity-figure" "$PYTHON" "$(entry scripts/temporal_diversity.py)" "${FIGURE[@]}" \
    "${COMMON[@]}" --seed "$first" --num-clips "$EVAL_CLIPS" --max-videos "$DIVERSITY_VIDEOS" \
    --overwrite true --out-dir "$OUT/diversity_seed$first"
settle

# the table covers every seed folder under $OUT, also those of earlier runs with other --seeds
shown=${SEED_LIST[*]}
if [[ $DRY_RUN != 1 ]]; then
    shown=$(cd "$OUT/random" && printf '%s\n' seed* | sed 's/^seed//' | sort -n | tr '\n' ' ')
    shown=${shown% }
fi
if [[ $shown == *" "* ]]; then over="mean ± std over seeds $shown"; else over="seed $shown"; fi
info "[$(clock)] results: synthetic test split 1 (generator seed $DATA_SEED), $over" \
     "($(( SECONDS - start )) s in all)"
ROWS=()
for init in "${INITS[@]}"; do ROWS+=("${LABEL[$init]}=$OUT/$init"); done
if [[ $DRY_RUN == 1 ]]; then show "$PYTHON" "$(entry scripts/summarize_runs.py)" "${ROWS[@]}"; else
    "$PYTHON" "$(entry scripts/summarize_runs.py)" "${ROWS[@]}"; fi
NAMED=()
for init in "${INITS[@]}"; do NAMED+=("${LABEL[$init]}"); done
info "timestep similarity matrices ($(IFS=,; echo "${NAMED[*]}" | sed 's/,/, /g'); seed $first):" \
     "$OUT/diversity_seed$first/similarity_all.png"
info "the pretraining monitor's curves (${NAMED[*]:1}, every seed): $OUT/monitor_curves.png"
