#!/usr/bin/env python
"""Linear evaluation of a pretrained backbone (TCLR_SPEC section 7): frozen backbone, one Linear.

    python train_linear.py --preset demo --checkpoint runs/pretrain/checkpoints/latest.pth
    python train_linear.py --dataset ucf101 --data-root data/ucf101 --split 1 \\
        --checkpoint runs/pretrain/checkpoints/best.pth
    python train_linear.py ... --bn-mode train          # the release's drifting BatchNorm stats
    python train_linear.py ... --label-fraction 0.1     # limited labels (10% per class)

Without --checkpoint the backbone is randomly initialised (the from-scratch baseline). Model
selection: --select val (default: held-out train videos), last, or best_test (the release's,
optimistic). Writes results.json, per_class_accuracy.csv, confusion_matrix.{csv,png} and
checkpoints/{latest,best}.pth into --out-dir.
"""

from __future__ import annotations

from engine.cli import job_main, run_main


def main(argv: list[str] | None = None) -> int:
    return job_main("linear", "engine.classify:run", argv)


if __name__ == "__main__":
    run_main(main)
