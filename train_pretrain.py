#!/usr/bin/env python
"""TCLR pretraining (Dave et al., CVIU 2022).

    python train_pretrain.py --preset demo                       # CPU, synthetic videos
    python train_pretrain.py --preset ucf101_r3d18 --data-root data/ucf101
    torchrun --nproc_per_node 4 train_pretrain.py --preset ucf101_r3d18 --data-root data/ucf101

Every config field is a flag (see --help); --config FILE reads YAML/JSON; --resume auto continues
the run in --out-dir.
"""

from __future__ import annotations

from config import describe, parse_config
from engine.cli import run_main
from engine.distributed import env_world_size


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_config("pretrain", argv, world_size=env_world_size())
    if args.print_config:
        print(describe(cfg))
        return 0
    from engine.pretrain import run
    run(cfg)
    return 0


if __name__ == "__main__":
    run_main(main)
