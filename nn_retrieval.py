#!/usr/bin/env python
"""Nearest-neighbour retrieval with a pretrained backbone (TCLR_SPEC section 7).

    python nn_retrieval.py --preset demo --checkpoint runs/pretrain/checkpoints/latest.pth
    python nn_retrieval.py --dataset ucf101 --data-root data/ucf101 --split 1 \\
        --checkpoint runs/pretrain/checkpoints/best.pth
    python nn_retrieval.py ... --ks 1,5,10,20,50        # a rerun with other k uses cached features

Test videos query the train gallery; Recall@k in results.json; retrieval_grid.png shows queries
and their nearest gallery videos (green frame = same class, red = another); TensorBoard gets the
grid and the test features for its embedding projector. Without --checkpoint: random weights.
"""

from __future__ import annotations

from engine.cli import job_main, run_main


def main(argv: list[str] | None = None) -> int:
    return job_main("retrieval", "engine.retrieval:run", argv)


if __name__ == "__main__":
    run_main(main)
