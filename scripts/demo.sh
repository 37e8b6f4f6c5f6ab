#!/usr/bin/env bash
# The CPU quick start (the README's main job): does TCLR pretraining learn? One seed of the learning
# demo's "switch" data (one look for every video; a square performs two of four motions one after
# the other; the class is the pair): TCLR pretraining (300 steps), then a linear probe,
# nearest-neighbour retrieval (324 test queries) and the temporal diversity of the TCLR and of a
# randomly initialised backbone -> one table, a one-line reading of it, and a picture.
# Quiet: one line per finished command; the full logs are in the run folders (log.txt) and in
# --out/logs/. scripts/learning_demo.sh runs the same on 3 seeds, with IC only, for error bars.
#
#   bash scripts/demo.sh [--out DIR] [--epochs N] [--ic-only] [--dry-run] [extra entry-point flags]
#
# --ic-only adds the instance-discrimination-only pretraining (a third row; longer). Sizes: as
# scripts/learning_demo.sh (its header; env VIDEOS_PER_CLASS, LINEAR_EPOCHS, ...). Seed 0 and the
# generator's seed 0 (data/synthetic_switch, generated on first use, shared with the learning demo).
# Everything lands in --out (default runs/demo); a re-run reuses a finished pretraining.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

OUT=runs/demo
ARGS=()
VARIANTS=tclr
while (( $# )); do
    split_eq "--out --epochs" "$1" && set -- "${EQ_SPLIT[@]}" "${@:2}"
    case $1 in
        --out) need_value "$1" $#; OUT=$2; shift 2 ;;
        --epochs) need_value "$1" $#; ARGS+=(--epochs "$2"); shift 2 ;;
        --ic-only) VARIANTS="ic_only tclr"; shift ;;
        --dry-run) ARGS+=(--dry-run); shift ;;
        -h|--help) usage_from_header "$0"; exit 0 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done

# The seed: every seed and draw the learning demo measured showed TCLR above random init in the
# linear probe and the timestep similarity (docs/demos.md); 0 is its first seed, whose picture the
# docs show. Not chosen by trying seeds.
bash "$(dirname "${BASH_SOURCE[0]}")/learning_demo.sh" --out "$OUT" --seeds 0 --data-seed 0 \
    --variants "$VARIANTS" "${ARGS[@]}"
info "more pictures: retrieval grids and Recall@k in $OUT/*/seed0/retrieval/, the" \
     "probe's confusion matrices in $OUT/*/seed0/linear/"
info "reading: TCLR learnt if its linear top-1 is well above random init's (chance 16.7%) and its" \
     "timestep similarity lower; retrieval R@1 at this scale is not a reliable sign" \
     "(docs/demos.md#the-quick-start-demo)"
