#!/usr/bin/env bash
# The paper's main experiment end to end: TCLR pretraining on UCF101 split 1 (TCLR_SPEC section 6),
# then the UCF101 and HMDB51 evaluation suites (linear probe, finetuning, retrieval; splits 1-3)
# on the lowest-training-loss checkpoint (best.pth: the release evaluates its model_best_e*_loss_*
# checkpoint), then the Markdown tables beside the published figures.
#
#   scripts/reproduce_paper.sh [options] [PRETRAINING FLAGS...]
#
#   --preset NAME        pretraining preset (default ucf101_r3d18; see train_pretrain.py --help);
#                        its backbone, width, resolution and channel order go to the evaluations
#   --ucf-root DIR       UCF101 root (default data/ucf101; scripts/prepare_ucf101.sh makes it)
#   --hmdb-root DIR      HMDB51 root (default data/hmdb51; scripts/prepare_hmdb51.sh makes it)
#   --pretrain-root DIR  pretraining data root (default: the UCF101 root; set it for k400_* presets)
#   --out DIR            everything goes here (default runs/reproduce_<preset>):
#                        DIR/pretrain/ (checkpoints/, log.txt, tensorboard/), DIR/eval_ucf101/,
#                        DIR/eval_hmdb51/, DIR/tables.md
#   --gpus N             processes per job on this machine: torchrun --standalone when N > 1
#                        (default: $TCLR_GPUS, else 1). Several machines: pretrain with
#                        OUT_DIR=DIR/pretrain sbatch scripts/slurm_pretrain.sh ..., then run
#                        this with --skip-pretrain
#   --checkpoint-name F  the checkpoint evaluated, in DIR/pretrain/checkpoints/ (default
#                        best.pth = lowest epoch training loss, as the release; latest.pth = the
#                        final epoch)
#   --skip-pretrain      evaluate an existing DIR/pretrain (default: pretrain, resuming if stopped)
#   --baseline           also evaluate a randomly initialised backbone (DIR/eval_*_random/)
#   --splits, --seeds, --protocols   passed to both evaluation suites (scripts/eval_suite.sh)
#   --eval-args "..."    flags for every evaluation run (e.g. "--num-workers 16")
#   --dry-run            print the commands; run and create nothing
# Any other flag goes to train_pretrain.py (e.g. --epochs 200 --num-workers 16).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

usage() {
    usage_from_header "${BASH_SOURCE[0]}"
}

parse_args() {
    PRESET=ucf101_r3d18 UCF_ROOT=data/ucf101 HMDB_ROOT=data/hmdb51 PRETRAIN_ROOT="" OUT=""
    GPUS=${TCLR_GPUS:-1} CKPT_NAME=best.pth SKIP_PRETRAIN=0 BASELINE=0 EVAL_ARGS=""
    SUITE_OPTS=() PRETRAIN_EXTRA=()
    while (( $# )); do
        case $1 in
            --preset) need_value "$1" $#; PRESET=$2; shift 2 ;;
            --ucf-root) need_value "$1" $#; UCF_ROOT=$2; shift 2 ;;
            --hmdb-root) need_value "$1" $#; HMDB_ROOT=$2; shift 2 ;;
            --pretrain-root) need_value "$1" $#; PRETRAIN_ROOT=$2; shift 2 ;;
            --out) need_value "$1" $#; OUT=$2; shift 2 ;;
            --gpus) need_value "$1" $#; GPUS=$2; shift 2 ;;
            --checkpoint-name) need_value "$1" $#; CKPT_NAME=$2; shift 2 ;;
            --skip-pretrain) SKIP_PRETRAIN=1; shift ;;
            --baseline) BASELINE=1; shift ;;
            --splits | --seeds | --protocols)
                need_value "$1" $#; SUITE_OPTS+=("$1" "$2"); shift 2 ;;
            --eval-args) need_value "$1" $#; EVAL_ARGS=$2; shift 2 ;;
            --dry-run) DRY_RUN=1; shift ;;
            -h | --help) usage; exit 0 ;;
            --data-root | --out-dir | --preset=* | --split)
                die "$1: use --pretrain-root/--ucf-root, --out, --preset NAME (split 1 is fixed)" ;;
            *) PRETRAIN_EXTRA+=("$1"); shift ;;
        esac
    done
    PRETRAIN_ROOT=${PRETRAIN_ROOT:-$UCF_ROOT}
    OUT=${OUT:-runs/reproduce_$PRESET}
    set_launcher "$GPUS"
}

# model_flags PRESET: the preset's model settings as evaluation flags (read from config.py).
model_flags() {
    env PYTHONPATH="$TCLR_REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "$1" <<'EOF'
import sys
import config
cfg = config.PretrainConfig()
try:
    config.apply_preset(cfg, sys.argv[1])
except config.ConfigError as exc:
    sys.exit(f"error: --preset: {exc}")
print(f"--backbone {cfg.backbone} --width {cfg.width} --resolution {cfg.data.resolution} "
      f"--color {cfg.data.color}")
EOF
}

pretrain() {
    info "pretraining with preset $PRESET on $PRETRAIN_ROOT (split 1) -> $OUT/pretrain"
    run "${LAUNCH[@]}" "$(entry train_pretrain.py)" --preset "$PRESET" \
        --data-root "$PRETRAIN_ROOT" --split 1 --out-dir "$OUT/pretrain" --resume auto \
        ${PRETRAIN_EXTRA[@]+"${PRETRAIN_EXTRA[@]}"}
}

# evaluate DATASET ROOT CHECKPOINT FOLDER: one evaluation suite.
evaluate() {
    local dataset=$1 root=$2 checkpoint=$3 folder=$4
    local -a flags=() dry=()
    read -r -a flags <<< "$MODEL_FLAGS $EVAL_ARGS"
    [[ $DRY_RUN == 1 ]] && dry=(--dry-run)
    info "evaluation suite: $dataset, $checkpoint -> $folder"
    bash "$TCLR_REPO/scripts/eval_suite.sh" "$dataset" "$checkpoint" --out "$folder" \
        --gpus "$GPUS" ${SUITE_OPTS[@]+"${SUITE_OPTS[@]}"} ${dry[@]+"${dry[@]}"} \
        -- --data-root "$root" "${flags[@]}"
}

main() {
    parse_args "$@"
    MODEL_FLAGS=$(model_flags "$PRESET") || exit 1
    info "reproducing TCLR: preset $PRESET, results in" \
         "$OUT$([[ $DRY_RUN == 1 ]] && echo ' [dry run]')"
    if [[ $SKIP_PRETRAIN == 1 ]]; then
        info "skipping pretraining (--skip-pretrain)"
    else
        pretrain
    fi
    local checkpoint=$OUT/pretrain/checkpoints/$CKPT_NAME
    if [[ $DRY_RUN != 1 && ! -f $checkpoint ]]; then
        die "$checkpoint does not exist (see $OUT/pretrain/checkpoints/;" \
            "--checkpoint-name picks another)"
    fi
    evaluate ucf101 "$UCF_ROOT" "$checkpoint" "$OUT/eval_ucf101"
    evaluate hmdb51 "$HMDB_ROOT" "$checkpoint" "$OUT/eval_hmdb51"
    if [[ $BASELINE == 1 ]]; then
        evaluate ucf101 "$UCF_ROOT" random "$OUT/eval_ucf101_random"
        evaluate hmdb51 "$HMDB_ROOT" random "$OUT/eval_hmdb51_random"
    fi
    info "tables of all evaluations"
    run "$PYTHON" "$(entry scripts/make_tables.py)" "$OUT" --out "$OUT/tables.md"
}

main "$@"
