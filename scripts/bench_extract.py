#!/usr/bin/env python
"""Feature-extraction speed on the CPU: extract_features.py beside nn_retrieval.py's own feature
pass, on the same videos, in one run.

    python scripts/bench_extract.py                       # 8 videos, R3D-18 width 64, 112 px, 9 clips
    python scripts/bench_extract.py --videos 4 --width 16 --workers 1,2 --rounds 2

Both at the retrieval protocol's settings (9 clips of 16 frames at stride 2, centre crop 0.8,
112 px, float32, random weights seeded alike, batch of 8 videos) on generated 320x240 XviD videos
(UCF101's size) of --frames frames, for each DataLoader worker count of --workers:

  retrieval     engine.retrieval.extract_features over engine.retrieval.feature_loader: the feature
                pass nn_retrieval.py runs (the loop only: no run folder, no cache file)
  extract       engine.extract.run: the whole extract_features.py job into a fresh folder, from the
                video listing to features.npy, index.csv and meta.json (shards included)
  extract_pass  the same job's compute-and-merge phase only (its result's "seconds")

Videos per second (higher is better); the methods run in interleaved rounds, first one then the
other first (the best of --rounds is printed), so that load changes on a shared machine hit them
alike, after one warm-up video each. The features of the two are checked equal. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

# Run as a file (python scripts/bench_extract.py): make the repository's packages importable.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import config  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8, help="videos to extract (default 8)")
    parser.add_argument("--frames", type=int, default=150, help="frames per video (default 150)")
    parser.add_argument("--backbone", default="r3d18", choices=config.BACKBONE_NAMES)
    parser.add_argument("--width", type=int, default=64, help="backbone width (64 = the paper's)")
    parser.add_argument("--resolution", type=int, default=112)
    parser.add_argument("--num-clips", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", default="1,2", help="DataLoader worker counts (default 1,2)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (best is kept)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0 = torch's default for this machine)")
    args = parser.parse_args(argv)
    args.worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    return args


def make_videos(folder: Path, count: int, frames: int) -> list[str]:
    """``count`` 320x240 XviD videos with a moving pattern (different per video)."""
    import cv2
    paths = []
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
    for v in range(count):
        path = folder / f"video_{v:03d}.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"XVID"), 25.0, (320, 240))
        for t in range(frames):
            frame = np.stack([128 + 100 * np.sin((xx + 3 * t + 7 * v) / (9 + v)),
                              128 + 100 * np.cos((yy - 2 * t) / (6 + v)),
                              (xx + yy + 5 * t * (v + 1)) % 256], axis=-1)
            writer.write(frame.astype(np.uint8))
        writer.release()
        paths.append(str(path))
    return paths


def common_flags(args: argparse.Namespace, workers: int) -> list[str]:
    return ["--backbone", args.backbone, "--width", str(args.width), "--resolution",
            str(args.resolution), "--num-clips", str(args.num_clips), "--batch-size",
            str(args.batch_size), "--num-workers", str(workers), "--device", "cpu",
            "--amp", "off", "--progress", "false", "--seed", "0"]


def retrieval_pass(args: argparse.Namespace, videos: list[str], workers: int
                   ) -> tuple[float, torch.Tensor]:
    """nn_retrieval.py's feature pass: (seconds, features [N, D])."""
    from engine import retrieval
    from engine.common import seed_everything
    from engine.distributed import DistInfo
    from models import build_backbone
    cfg, _ = config.parse_config("retrieval", common_flags(args, workers))
    ctx = SimpleNamespace(cfg=cfg, device=torch.device("cpu"),
                          dist=DistInfo(rank=0, world_size=1, local_rank=0,
                                        device=torch.device("cpu")))
    seed_everything(cfg.seed)                       # as retrieval's _LazyBackbone
    backbone = build_backbone(cfg.backbone, width=cfg.width).eval()
    start = time.perf_counter()
    loader = retrieval.feature_loader(cfg, ctx, [(p, 0) for p in videos])
    features, _ = retrieval.extract_features(ctx, backbone, loader, "retrieval")
    return time.perf_counter() - start, features


def extract_job(args: argparse.Namespace, folder: Path, out: Path, workers: int
                ) -> tuple[float, float, np.ndarray]:
    """The extract_features.py job into a fresh folder: (job seconds, compute-and-merge seconds,
    features [N, D])."""
    from engine import extract
    shutil.rmtree(out, ignore_errors=True)
    cfg, _ = config.parse_config("extract", common_flags(args, workers) + [
        "--videos", str(folder), "--checkpoint", "random", "--out-dir", str(out)])
    start = time.perf_counter()
    result = extract.run(cfg)
    seconds = time.perf_counter() - start
    return seconds, result["seconds"], np.load(out / extract.FEATURES_NAME)


def main(argv: list[str] | None = None) -> dict:
    import logging

    from engine.logging import get_logger
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for handler in get_logger("tclr").handlers:        # the jobs' console lines: warnings only
        if type(handler) is logging.StreamHandler:
            handler.setLevel(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    try:
        folder, warm = work / "videos", work / "warm"
        folder.mkdir()
        warm.mkdir()
        videos = make_videos(folder, args.videos, args.frames)
        make_videos(warm, 1, args.frames)
        print(f"{args.videos} videos of {args.frames} frames (320x240 XviD); {args.backbone} width "
              f"{args.width}, {args.num_clips} clips x 16 frames stride 2 at {args.resolution} px, "
              f"batch {args.batch_size}, float32; CPU: {os.cpu_count()} cores visible, torch "
              f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}",
              flush=True)
        retrieval_pass(args, [str(p) for p in sorted(warm.glob("*.avi"))], 0)   # warm-up
        extract_job(args, warm, work / "warm_out", 0)
        best: dict[str, float] = {}
        for round_ in range(args.rounds):
            for workers in args.worker_counts:
                if round_ % 2 == 0:              # ABBA order: a trend in the load hits both alike
                    r_sec, r_feat = retrieval_pass(args, videos, workers)
                    e_sec, e_pass, e_feat = extract_job(args, folder, work / "out", workers)
                else:
                    e_sec, e_pass, e_feat = extract_job(args, folder, work / "out", workers)
                    r_sec, r_feat = retrieval_pass(args, videos, workers)
                if not np.allclose(r_feat.numpy(), e_feat, atol=1e-5, rtol=0):
                    raise AssertionError("extract_features.py and nn_retrieval.py features differ")
                for name, sec in (("retrieval", r_sec), ("extract", e_sec),
                                  ("extract_pass", e_pass)):
                    key = f"{name}_workers{workers}"
                    best[key] = max(best.get(key, 0.0), args.videos / sec)
                print(f"workers {workers}: retrieval {args.videos / r_sec:.3f} videos/s, extract "
                      f"job {args.videos / e_sec:.3f} videos/s (its pass {args.videos / e_pass:.3f}"
                      ")", flush=True)
        print(f"{'workers':>7}  {'retrieval':>10}  {'extract':>10}  {'extract_pass':>12}  (videos/s)")
        for workers in args.worker_counts:
            row = [best[f"{n}_workers{workers}"] for n in ("retrieval", "extract", "extract_pass")]
            print(f"{workers:>7}  {row[0]:>10.3f}  {row[1]:>10.3f}  {row[2]:>12.3f}")
        print("features equal (atol 1e-5): yes")
        print(json.dumps({k: round(v, 4) for k, v in best.items()}))
        return best
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
