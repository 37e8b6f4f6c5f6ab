#!/usr/bin/env bash
# The evaluation suite of one dataset: linear probe, full finetuning and nearest-neighbour
# retrieval of one checkpoint over the official splits, into one results folder, then the tables.
# scripts/eval_ucf101.sh and scripts/eval_hmdb51.sh call this with their dataset name.
#
#   scripts/eval_suite.sh DATASET CHECKPOINT [options] [ENTRY-POINT FLAGS...] [-- FLAGS...]
#
#   CHECKPOINT           a checkpoint file (this project's, the release's, torchvision's), or
#                        "random" for the from-scratch baseline (random initialisation)
#   --splits "1 2 3"     splits to run (default: all three)
#   --seeds "0"          seeds of the linear/finetune runs (several give mean ± std); retrieval of
#                        a checkpoint runs once per split (its features do not depend on the seed)
#   --protocols "linear finetune retrieval"   which protocols (default: all three)
#   --out DIR            results folder (default: runs/eval_<dataset>_<checkpoint file stem>);
#                        runs go to DIR/<protocol>/split<S>_seed<N>/, the tables to DIR/tables.md
#   --gpus N             processes per run: torchrun --standalone when N > 1 (default:
#                        $TCLR_GPUS, else 1)
#   --linear-args "..." / --finetune-args "..." / --retrieval-args "..."   flags for one protocol
#   --force              rerun runs that already have a results.json (default: skip them)
#   --keep-going         after a failed run, go on with the others (exit status 1 at the end)
#   --dry-run            print the commands; run and create nothing
# Any other flag (and everything after --) goes to every entry point, e.g. --data-root DIR,
# --device cuda:1, --num-workers 16, --trust-checkpoint true, --preset NAME, --batch-size 16.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

usage() {
    usage_from_header "${BASH_SOURCE[0]}"
}

# Flags this script sets itself; passing them through would contradict its options.
OWN_FLAGS=" --dataset --split --seed --out-dir --checkpoint "

parse_args() {
    SPLITS="1 2 3" SEEDS="0" PROTOCOLS="linear finetune retrieval" OUT=""
    GPUS=${TCLR_GPUS:-1}
    FORCE=0 KEEP_GOING=0 LINEAR_ARGS="" FINETUNE_ARGS="" RETRIEVAL_ARGS="" EXTRA=()
    while (( $# )); do
        case $1 in
            --splits) need_value "$1" $#; SPLITS=$2; shift 2 ;;
            --seeds) need_value "$1" $#; SEEDS=$2; shift 2 ;;
            --protocols) need_value "$1" $#; PROTOCOLS=$2; shift 2 ;;
            --out) need_value "$1" $#; OUT=$2; shift 2 ;;
            --gpus) need_value "$1" $#; GPUS=$2; shift 2 ;;
            --linear-args) need_value "$1" $#; LINEAR_ARGS=$2; shift 2 ;;
            --finetune-args) need_value "$1" $#; FINETUNE_ARGS=$2; shift 2 ;;
            --retrieval-args) need_value "$1" $#; RETRIEVAL_ARGS=$2; shift 2 ;;
            --force) FORCE=1; shift ;;
            --keep-going) KEEP_GOING=1; shift ;;
            --dry-run) DRY_RUN=1; shift ;;
            -h | --help) usage; exit 0 ;;
            --) shift; EXTRA+=("$@"); break ;;
            *) EXTRA+=("$1"); shift ;;
        esac
    done
    local word
    for word in ${EXTRA[@]+"${EXTRA[@]}"}; do
        [[ $OWN_FLAGS != *" ${word%%=*} "* ]] \
            || die "$word is set by this script; use --splits, --seeds, --out or CHECKPOINT"
    done
    for word in $SPLITS; do
        [[ $word == [123] ]] || die "--splits: '$word' is not 1, 2 or 3"
    done
    for word in $SEEDS; do
        is_uint "$word" || die "--seeds: '$word' is not a non-negative integer"
    done
    for word in $PROTOCOLS; do
        [[ " linear finetune retrieval " == *" $word "* ]] \
            || die "--protocols: '$word' is not linear, finetune or retrieval"
    done
    [[ -n $SPLITS && -n $SEEDS && -n $PROTOCOLS ]] || die "--splits, --seeds, --protocols: empty"
    set_launcher "$GPUS"
}

# protocol_script PROTOCOL / protocol_args PROTOCOL: the entry point and its own extra flags.
protocol_script() {
    case $1 in
        linear) entry train_linear.py ;;
        finetune) entry train_finetune.py ;;
        retrieval) entry nn_retrieval.py ;;
    esac
}

protocol_args() {
    case $1 in
        linear) printf '%s' "$LINEAR_ARGS" ;;
        finetune) printf '%s' "$FINETUNE_ARGS" ;;
        retrieval) printf '%s' "$RETRIEVAL_ARGS" ;;
    esac
}

# seeds_of PROTOCOL: the seeds a protocol runs with.
seeds_of() {
    if [[ $1 == retrieval && $CHECKPOINT != random ]]; then
        set -- $SEEDS
        printf '%s\n' "$1"
    else
        printf '%s\n' $SEEDS
    fi
}

# run_one PROTOCOL SPLIT SEED: one entry-point run into OUT/PROTOCOL/splitS_seedN.
run_one() {
    local protocol=$1 split=$2 seed=$3 run_dir
    run_dir=$OUT/$protocol/split${split}_seed$seed
    local -a cmd own=()
    read -r -a own <<< "$(protocol_args "$protocol")"
    cmd=("${LAUNCH[@]}" "$(protocol_script "$protocol")" --dataset "$DATASET" --split "$split"
         --seed "$seed" --out-dir "$run_dir")
    [[ $CHECKPOINT == random ]] || cmd+=(--checkpoint "$CHECKPOINT")
    cmd+=(${EXTRA[@]+"${EXTRA[@]}"} ${own[@]+"${own[@]}"})
    DONE_RUNS=$((DONE_RUNS + 1))
    info "[$DONE_RUNS/$TOTAL_RUNS] $protocol, $DATASET split $split, seed $seed -> $run_dir"
    if [[ $FORCE == 0 && -f $run_dir/results.json ]]; then
        info "skipped: $run_dir/results.json exists (--force reruns it)"
        return 0
    fi
    if ! run "${cmd[@]}"; then
        FAILED+=("$protocol split $split seed $seed ($run_dir/log.txt)")
        [[ $KEEP_GOING == 1 ]] || die "$protocol on $DATASET split $split (seed $seed) failed;" \
            "see above and $run_dir/log.txt. Rerun this script to continue (finished runs are" \
            "skipped)"
    fi
}

main() {
    if [[ " $* " == *" -h "* || " $* " == *" --help "* ]]; then
        usage
        exit 0
    fi
    case $# in
        0) die "usage: scripts/eval_suite.sh DATASET CHECKPOINT|random [options] (see --help)" ;;
        1) die "usage: scripts/eval_$1.sh CHECKPOINT|random [options] (see --help)" ;;
    esac
    DATASET=$1 CHECKPOINT=$2
    shift 2
    [[ $CHECKPOINT != -* ]] \
        || die "the first argument must be the CHECKPOINT (a file, or 'random'), got $CHECKPOINT"
    parse_args "$@"
    local stem
    stem=$(basename "$CHECKPOINT")
    OUT=${OUT:-runs/eval_${DATASET}_${stem%%.*}}
    if [[ $CHECKPOINT != random && $DRY_RUN != 1 && ! -f $CHECKPOINT ]]; then
        die "checkpoint $CHECKPOINT: no such file (give a file, or 'random' for the baseline)"
    fi
    local -a protocols splits
    read -r -a protocols <<< "$PROTOCOLS"
    read -r -a splits <<< "$SPLITS"
    TOTAL_RUNS=0 DONE_RUNS=0 FAILED=()
    local protocol split seed
    for protocol in "${protocols[@]}"; do
        TOTAL_RUNS=$((TOTAL_RUNS + ${#splits[@]} * $(seeds_of "$protocol" | wc -l)))
    done
    info "evaluating $CHECKPOINT on $DATASET: ${protocols[*]}; splits ${splits[*]};" \
         "seeds $SEEDS; results in $OUT$([[ $DRY_RUN == 1 ]] && echo ' [dry run]')"
    for split in "${splits[@]}"; do
        for protocol in "${protocols[@]}"; do
            for seed in $(seeds_of "$protocol"); do
                run_one "$protocol" "$split" "$seed"
            done
        done
    done
    run "$PYTHON" "$(entry scripts/make_tables.py)" "$OUT" --out "$OUT/tables.md" \
        || printf 'warning: no tables for %s (see above)\n' "$OUT" >&2
    if (( ${#FAILED[@]} )); then
        printf 'error: %d run(s) failed:\n' "${#FAILED[@]}" >&2
        printf '  %s\n' "${FAILED[@]}" >&2
        exit 1
    fi
}

main "$@"
