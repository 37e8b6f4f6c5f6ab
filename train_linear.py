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

from config import describe, parse_config
from engine.cli import run_main
from engine.distributed import env_world_size


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_config("linear", argv, world_size=env_world_size())
    if args.print_config:
        print(describe(cfg))
        return 0
    from engine.classify import run
    run(cfg)
    return 0


if __name__ == "__main__":
    run_main(main)
