#!/usr/bin/env python
"""Full finetuning of a pretrained backbone (TCLR_SPEC section 7): every layer trains.

    python train_finetune.py --preset demo --checkpoint runs/pretrain/checkpoints/latest.pth
    python train_finetune.py --dataset hmdb51 --data-root data/hmdb51 --split 2 \\
        --checkpoint runs/pretrain/checkpoints/best.pth --lr 1e-4 --dropout 0.5
    python train_finetune.py ... --label-fraction 0.01  # limited labels (1% per class, >= 1 video)

The release has no finetuning script: Adam lr 1e-4 with the linear probe's plateau schedule is this
project's documented starting point (--lr, --plateau-patience, --min-lr, --dropout,
--weight-decay). Without --checkpoint: random initialisation (the from-scratch baseline). Outputs
as train_linear.py.
"""

from __future__ import annotations

from engine.cli import job_main, run_main


def main(argv: list[str] | None = None) -> int:
    return job_main("finetune", "engine.classify:run", argv)


if __name__ == "__main__":
    run_main(main)
