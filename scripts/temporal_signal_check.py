#!/usr/bin/env python
"""Can the temporal losses find a signal in this data? Train on one fixed set of videos twice.

    python scripts/temporal_signal_check.py --preset demo --steps 40

Both runs start from the same random backbone + head and optimise only the temporal terms
(local-local + global-local by default) on the same B training videos:

- fixed: one batch (one sampling and augmentation draw) reused at every step. The losses must fall
  far below their collapse values within tens of steps; if they do not, the model, the loss or
  the gradients are broken (a plumbing check).
- fresh: a new sampling and augmentation draw of the same videos at every step, as in training.
  Here the losses can only fall if the dense clips of a video differ in a way that survives the
  augmentations. Values that settle at the collapse values mean the model found no such signal:
  every clip of a video gets the same representation.

Collapse values (every representation of a video equal): local-local B * ln(2K - 1), global-local
4 * K * ln K (both printed). The model and data settings are those of train_pretrain.py (--preset,
--data-root, --width, --resolution, --batch-size, --lr, the loss weights ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

TEMPORAL_ONLY = ["--w-ic-global", "0", "--w-ic-local", "0"]  # before the user's flags: theirs win


def collapse_values(batch: int, num_local: int) -> dict[str, float]:
    """Loss values when all representations of a video are equal (uniform softmax rows)."""
    return {"local_local": batch * math.log(2 * num_local - 1),
            "global_local": 4 * num_local * math.log(num_local)}


def run_mode(cfg, dataset, indices: list[int], fresh: bool, steps: int, log_every: int) -> dict:
    """Train a new model for ``steps`` steps; returns the loss terms of the last step."""
    from config import LOSS_TERMS, loss_weights
    from dataloaders.batching import collate_pretrain
    from engine.common import amp_dtype, make_scaler
    from engine.distributed import resolve_device
    from engine.pretrain import build_model, train_step

    device = resolve_device(cfg.device)
    dtype = amp_dtype(cfg.amp, device)
    torch.manual_seed(cfg.seed)  # the same initial weights in both modes
    model = build_model(cfg).to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = make_scaler(device, dtype)
    weights = loss_weights(cfg)
    clips = None
    terms = {}
    for step in range(steps):
        if clips is None or fresh:  # (index, seed) keys: a new draw per step, or draw 0 always
            items = [dataset[(i, step if fresh else 0)] for i in indices]
            clips = collate_pretrain(items)["clips"].to(device)
        terms = train_step(model, clips, optimizer, scaler, device, dtype, cfg.temperature, weights)
        if step % log_every == 0 or step == steps - 1:
            shown = " ".join(f"{k} {float(terms[k].detach()):.2f}" for k in LOSS_TERMS if weights[k])
            print(f"  {'fresh' if fresh else 'fixed'} step {step:3d}: {shown}", flush=True)
    return {k: float(v.detach()) for k, v in terms.items()}


def main(argv: list[str] | None = None) -> int:
    from config import ConfigError, parse_config
    from dataloaders.datasets import build_dataset
    from dataloaders.splits import build_video_list
    from engine.common import ensure_dataset
    from engine.logging import get_logger

    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--steps", type=int, default=40, help="optimizer steps per mode")
    extra.add_argument("--log-every", type=int, default=5)
    extra.add_argument("--keep-ic", action="store_true",
                       help="keep the instance-contrastive terms (default: temporal terms only)")
    ours, rest = extra.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        print(__doc__)
        extra.print_help()
        print("\nand every flag of train_pretrain.py")
        return 0
    if ours.steps < 1 or ours.log_every < 1:
        raise ConfigError(f"--steps and --log-every must be >= 1, got {ours.steps} and {ours.log_every}")
    cfg, _ = parse_config("pretrain", ([] if ours.keep_ic else TEMPORAL_ONLY) + rest)
    ensure_dataset(cfg, get_logger())
    d = cfg.data
    videos, _ = build_video_list(d.dataset, d.data_root, split=d.split, subset="train")
    if len(videos) < cfg.batch_size:
        raise ConfigError(f"{d.data_root} has {len(videos)} train videos, fewer than --batch-size "
                         f"{cfg.batch_size}")
    dataset = build_dataset(dataclasses.replace(d, augment_on="cpu"), "pretrain", videos, cfg.seed)
    stride = len(videos) // cfg.batch_size  # spread over the list (and so over the classes)
    indices = [i * stride for i in range(cfg.batch_size)]
    collapse = collapse_values(cfg.batch_size, d.num_local)
    print(f"{cfg.batch_size} videos of {d.data_root}, {cfg.backbone} width {cfg.width}, "
          f"{d.resolution} px, lr {cfg.lr}, device {cfg.device}; collapse values: local-local "
          f"{collapse['local_local']:.2f}, global-local {collapse['global_local']:.2f}")
    start = time.perf_counter()
    final = {mode: run_mode(cfg, dataset, indices, mode == "fresh", ours.steps, ours.log_every)
             for mode in ("fixed", "fresh")}
    print(f"\n| term | collapse value | fixed batch, step {ours.steps} | fresh draws, step {ours.steps} |")
    print("| --- | ---: | ---: | ---: |")
    for term in ("local_local", "global_local"):
        if getattr(cfg, f"w_{term}"):
            print(f"| {term} | {collapse[term]:.2f} | {final['fixed'][term]:.2f} | "
                  f"{final['fresh'][term]:.2f} |")
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    from engine.cli import run_main
    run_main(main)
