#!/usr/bin/env python
"""The pretraining monitor's cost as a share of an epoch, estimated from measured CPU figures.

    python scripts/bench_monitor.py [--seconds S] [--width W] [--videos-per-class N] [--clips C]

What the monitor adds per call, against what one pretraining epoch does, at the paper's sizes
(UCF101 split 1: 9,537 train videos, 101 classes, batch 40, 16-frame clips at 112 px, R3D-18):

  data     one monitor item (MultiClipDataset, C centre-cropped clips) vs one TCLR pretraining
           sample (10 augmented clips; also with --augment-on device, whose workers only decode
           and ship raw clips, the dearer case for the monitor's share), both built from a
           generated 320x240 175-frame XviD AVI like UCF101's, one process, one thread;
  compute  one clip forward in eval mode without gradients (the monitor) vs one clip forward and
           backward in training mode (pretraining), R3D-18 at --width (the ratio of the two is
           what matters; the paper's width 64 costs 16x more in both);

monitor share <= max(data ratio, compute ratio): the monitor's loader and forward overlap as the
epoch's do, so its time is at most the larger of its data and compute times, while the epoch
takes at least the larger of its own. No GPU was used: on one, both sides move together. The
last line is a JSON object with the measured figures and the estimate.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

UCF101_TRAIN_VIDEOS, UCF101_CLASSES, CLIPS_PER_SAMPLE = 9537, 101, 10


def _make_video(path: str) -> str:
    spec = importlib.util.spec_from_file_location("bench_loader",
                                                  os.path.join(REPO, "scripts", "bench_loader.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_test_video(path)


def per_call(fn, seconds: float, rounds: int = 3) -> float:
    """Seconds per call of ``fn`` (after one warm-up call), over ``rounds`` timed rounds."""
    fn()
    calls, spent = 0, 0.0
    for _ in range(rounds):
        begin = time.perf_counter()
        while time.perf_counter() - begin < seconds / rounds:
            fn()
            calls += 1
        spent += time.perf_counter() - begin
    return spent / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--width", type=int, default=16, help="R3D-18 width for the compute ratio")
    parser.add_argument("--videos-per-class", type=int, default=4, help="--monitor-videos")
    parser.add_argument("--clips", type=int, default=2, help="--monitor-clips")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from dataloaders.datasets import MultiClipDataset, TCLRPretrainDataset
    from models import build_backbone
    with tempfile.TemporaryDirectory() as folder:
        path = _make_video(os.path.join(folder, "ucf_like.avi"))
        train = TCLRPretrainDataset([(path, 0)], augment_on="cpu")
        raw = TCLRPretrainDataset([(path, 0)], augment_on="device")
        watch = MultiClipDataset([(path, 0)], num_clips=args.clips, clip_len=16, stride=2, size=112)
        keys = iter(range(10**9))
        t_sample = per_call(lambda: train[(0, next(keys))], args.seconds)
        t_raw = per_call(lambda: raw[(0, next(keys))], args.seconds)
        t_item = per_call(lambda: watch[0], args.seconds)
    net = build_backbone("r3d18", width=args.width)
    clip = torch.randn(2, 3, 16, 112, 112)

    def forward_eval():
        net.eval()
        with torch.no_grad():
            net(clip)

    def step_train():
        net.train()
        net.zero_grad()
        net(clip).sum().backward()

    t_fwd = per_call(forward_eval, args.seconds) / 2
    t_step = per_call(step_train, args.seconds) / 2
    videos = args.videos_per_class * UCF101_CLASSES
    data = videos * t_item / (UCF101_TRAIN_VIDEOS * t_sample)
    data_raw = videos * t_item / (UCF101_TRAIN_VIDEOS * t_raw)
    compute = videos * args.clips * t_fwd / (UCF101_TRAIN_VIDEOS * CLIPS_PER_SAMPLE * t_step)
    print(f"pretraining sample (10 clips): {1000 * t_sample:.1f} ms (augment-on device: "
          f"{1000 * t_raw:.1f} ms); monitor item "
          f"({args.clips} clips): {1000 * t_item:.1f} ms")
    print(f"R3D-18 width {args.width}, per clip: eval forward {1000 * t_fwd:.1f} ms, training "
          f"forward+backward {1000 * t_step:.1f} ms")
    print(f"ucf101_r3d18, monitor of {videos} videos x {args.clips} clips vs an epoch of "
          f"{UCF101_TRAIN_VIDEOS} samples: data {data:.2%}, compute {compute:.2%} -> at most "
          f"{max(data, compute):.2%} of the epoch per call ({max(data_raw, compute):.2%} with "
          "--augment-on device)")
    print(json.dumps({"sample_ms": round(1000 * t_sample, 2),
                      "monitor_item_ms": round(1000 * t_item, 2),
                      "forward_ms": round(1000 * t_fwd, 2),
                      "train_step_ms": round(1000 * t_step, 2),
                      "videos": videos, "clips": args.clips, "data_share": round(data, 5),
                      "compute_share": round(compute, 5), "estimate": round(max(data, compute), 5),
                      "sample_device_mode_ms": round(1000 * t_raw, 2),
                      "estimate_device_mode": round(max(data_raw, compute), 5)}))


if __name__ == "__main__":
    main()
