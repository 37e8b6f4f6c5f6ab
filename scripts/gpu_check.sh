#!/usr/bin/env bash
# The first command on a fresh GPU box: exercise every CUDA path of the code and print the numbers
# docs/performance.md needs, in at most 8 minutes (one GPU, 16 cores, no internet needed).
#
#   bash scripts/gpu_check.sh                       # CUDA, full sizes, budget 470 s
#   SMOKE=1 DEVICE=cpu bash scripts/gpu_check.sh    # every step at tiny sizes on the CPU (CI)
#
# Environment: OUT (default runs/gpu_check_<date>: gpu_check.log, steps.jsonl, summary.txt),
# WORK (runs, checkpoints and data; default $OUT.work, removed at the end unless KEEP_WORK=1),
# DEVICE (cuda | cuda:N | cpu), BUDGET_S, WORKERS (DataLoader workers, default 15), PYTHON.
# Steps in priority order, each with its own timeout; a failed step is recorded and the next one
# runs; a step that no longer fits the budget is listed as skipped. The step table, the budget and
# the summary are scripts/gpu_check.py; this file is the list of commands. Exit status 1 when a
# step failed or timed out.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"
cd "$TCLR_REPO"

SMOKE=${SMOKE:-0}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-runs/gpu_check_$(date +%Y%m%d_%H%M%S)}
WORK=${WORK:-$OUT.work}
BUDGET_S=${BUDGET_S:-470}
WORKERS=${WORKERS:-15}
TORCHRUN=("$PYTHON" -m torch.distributed.run --standalone)
CHECK=("$PYTHON" scripts/gpu_check.py)
DATA=$WORK/data
if [[ $SMOKE == 1 ]]; then
    WORKERS=1
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}     # tiny convolutions: one thread is fastest
    VIDEOS=(--classes 4 --videos-per-class 6 --frames 72 --width 64 --height 48)
    NET=(--width 8 --resolution 32)
    BATCH=4; EPOCHS=1; STEPS=2; EVAL_BATCH=4; DDP_BATCH=4
    BENCH=(--quick); E2E=(--e2e-steps 2 --e2e-warmup 1); SMOKE_FLAG=(--smoke)
else
    VIDEOS=(--classes 12 --videos-per-class 40 --frames 72 --width 320 --height 240)
    NET=(--width 64 --resolution 112)
    BATCH=40; EPOCHS=3; STEPS=12; EVAL_BATCH=32; DDP_BATCH=16
    BENCH=(--steps 12 --warmup 3 --rounds 2); E2E=(--e2e-steps 16 --e2e-warmup 8); SMOKE_FLAG=()
fi
SYNC_BN=(); COMPILE=(--grad-checkpoint)
if [[ $DEVICE == cuda* ]]; then
    SYNC_BN=(--sync-bn true)        # SyncBatchNorm is GPU-only
    COMPILE+=(--compile)            # inductor's CPU build of R3D-18 takes over 10 min on 2 cores
fi
COMMON=(--dataset ucf101 --data-root "$DATA" --backbone r3d18 "${NET[@]}" --device "$DEVICE"
        --num-workers "$WORKERS" --progress false)
PRETRAIN=("${COMMON[@]}" --batch-size "$BATCH" --max-steps-per-epoch "$STEPS"
          --save-every-epochs 0)
FASTEST=(--fused-forward true --channels-last true --augment-on device)
CKPT=$WORK/fastest/checkpoints/latest.pth
step() { "${CHECK[@]}" step --out "$OUT" "$@"; }

"${CHECK[@]}" init --out "$OUT" --work "$WORK" --budget-s "$BUDGET_S" "${SMOKE_FLAG[@]}" || exit 2
step env --metrics json -- "${CHECK[@]}" env
step data -- "$PYTHON" -m dataloaders.synthetic --out "$DATA" "${VIDEOS[@]}" \
    --workers "$WORKERS" --quiet
step pytest_gpu -- "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider tests
step pretrain_release --metrics "run:$WORK/release" -- "${TORCHRUN[@]}" --nproc_per_node 1 \
    train_pretrain.py "${PRETRAIN[@]}" --epochs "$EPOCHS" --out-dir "$WORK/release"
step bench --metrics json -- "$PYTHON" scripts/bench_train_step.py --device "$DEVICE" \
    "${BENCH[@]}" --batch-size "$BATCH" "${NET[@]}" --workers "$WORKERS" --e2e-videos "$DATA" \
    --e2e-dataset ucf101 "${E2E[@]}"
step pretrain_fastest --metrics "run:$WORK/fastest" -- "$PYTHON" train_pretrain.py \
    "${PRETRAIN[@]}" "${FASTEST[@]}" --amp bf16 --epochs "$EPOCHS" --out-dir "$WORK/fastest"
step resume_precision --metrics "run:$WORK/fastest" -- "$PYTHON" train_pretrain.py \
    "${PRETRAIN[@]}" "${FASTEST[@]}" --amp fp16 --epochs $(( EPOCHS + 1 )) \
    --out-dir "$WORK/fastest" --resume auto
step linear --metrics "results:$WORK/linear" -- "$PYTHON" train_linear.py "${COMMON[@]}" \
    --checkpoint "$CKPT" --batch-size "$EVAL_BATCH" --epochs 1 --max-steps-per-epoch "$STEPS" \
    --num-test-clips 2 --val-fraction 0 --select last --out-dir "$WORK/linear"
step retrieval --metrics "results:$WORK/retrieval" -- "$PYTHON" nn_retrieval.py "${COMMON[@]}" \
    --checkpoint "$CKPT" --batch-size "$EVAL_BATCH" --num-clips 2 --embedding-points 0 \
    --num-grid-queries 2 --out-dir "$WORK/retrieval"
step compile_ckpt --metrics json -- "$PYTHON" scripts/bench_train_step.py --device "$DEVICE" \
    "${BENCH[@]}" --batch-size "$BATCH" "${NET[@]}" "${COMPILE[@]}" --no-e2e
step ddp_gloo --metrics "run:$WORK/ddp" -- "${TORCHRUN[@]}" --nproc_per_node 2 train_pretrain.py \
    "${COMMON[@]}" --batch-size "$DDP_BATCH" --max-steps-per-epoch 3 --epochs 1 \
    --save-every-epochs 0 --dist-backend gloo "${SYNC_BN[@]}" --out-dir "$WORK/ddp"
step nccl_probe --metrics json -- "${TORCHRUN[@]}" --nproc_per_node 1 scripts/gpu_check.py \
    probe-collectives --device "$DEVICE"
"${CHECK[@]}" summary --out "$OUT"
status=$?
"${CHECK[@]}" finish --out "$OUT"
exit $status
