#!/usr/bin/env python
"""TCLR pretraining (Dave et al., CVIU 2022).

    python train_pretrain.py --preset demo                       # CPU, synthetic videos
    python train_pretrain.py --preset ucf101_r3d18 --data-root data/ucf101
    torchrun --nproc_per_node 4 train_pretrain.py --preset ucf101_r3d18 --data-root data/ucf101

Every config field is a flag (see --help); --config FILE reads YAML/JSON; --resume auto continues
the run in --out-dir.
"""

from __future__ import annotations

from engine.cli import job_main, run_main


def main(argv: list[str] | None = None) -> int:
    return job_main("pretrain", "engine.pretrain:run", argv)


if __name__ == "__main__":
    run_main(main)
