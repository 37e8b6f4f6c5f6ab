#!/usr/bin/env bash
# TCLR pretraining on a SLURM cluster: one torchrun per node, srun starts them on every node.
#
#   sbatch --nodes 2 scripts/slurm_pretrain.sh --preset ucf101_r3d18 --data-root /data/ucf101
#
# The global batch (--batch-size, 40 by default) is shared by all processes: with 2 nodes x 4 GPUs
# each process gets 5 videos. Preemption: SLURM sends SIGTERM, the run saves checkpoints/latest.pth
# at the current step and exits 0; --requeue plus `--resume auto` continues it.
#SBATCH --job-name=tclr-pretrain
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --time=48:00:00
#SBATCH --requeue
#SBATCH --signal=TERM@120
#SBATCH --output=slurm-%j.out
set -euo pipefail

GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_PER_NODE:-4}}
OUT_DIR=${OUT_DIR:-runs/pretrain_${SLURM_JOB_ID:-local}}
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_PORT=${MASTER_PORT:-29500}

srun --kill-on-bad-exit=1 torchrun \
    --nnodes "$SLURM_NNODES" --nproc_per_node "$GPUS_PER_NODE" \
    --rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d --rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" \
    train_pretrain.py --out-dir "$OUT_DIR" --resume auto \
    --num-workers $(( ${SLURM_CPUS_PER_TASK:-32} / GPUS_PER_NODE )) "$@"
