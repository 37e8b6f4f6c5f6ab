#!/usr/bin/env python
"""Features of your own videos with a pretrained backbone (engine.extract, engine.features).

    python extract_features.py --videos my_videos/ --checkpoint runs/pretrain/checkpoints/best.pth \\
        --out-dir runs/features/my_videos
    python extract_features.py --list videos.txt --checkpoint random --feature pooled
    python extract_features.py --dataset ucf101 --data-root data/ucf101 --split 1 --subset test \\
        --checkpoint best.pth --out-dir runs/features/ucf101_test
    torchrun --standalone --nproc_per_node 4 extract_features.py --videos ... --checkpoint ...

Writes features.npy ([N, D], memory-mappable; the retrieval protocol's features by default, the
same numbers nn_retrieval.py computes), index.csv (row, path, frames, fps, seconds, status, reason)
and meta.json (checkpoint sha256, protocol, versions, command). A rerun computes only the videos
that are new or changed; a folder never mixes two checkpoints or protocols. Search the folder with
scripts/search_features.py.
"""

from __future__ import annotations

from engine.cli import job_main, run_main


def main(argv: list[str] | None = None) -> int:
    return job_main("extract", "engine.extract:run", argv)


if __name__ == "__main__":
    run_main(main)
