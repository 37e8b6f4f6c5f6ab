"""Pretraining step benchmark: the release's step against this project's, and the end-to-end rate.

Usage:
    python scripts/bench_train_step.py                      # CUDA: R3D-18 width 64, batch 40, 112 px
    python scripts/bench_train_step.py --grad-checkpoint    # best configuration + checkpointing
    python scripts/bench_train_step.py --device cpu         # CPU: width 8, 32 px, batch 4
    python scripts/bench_train_step.py --quick --no-e2e     # CI smoke run (tiny, seconds)

Part 1, the step on synthetic tensors (no I/O). Both configurations are built and stepped by the
training code itself (engine.pretrain.prepare_model and train_step) and run in alternating rounds
(order reversed every round) so that load changes on a shared machine hit them alike:
  release_style  10 backbone passes (fused_forward=False), fp16 autocast + grad scaler on CUDA
                 (float32 on CPU), contiguous tensors, the loss as losses.reference's Python loops
                 (inside autocast, where the release computed it).
  best           one fused backbone pass, bf16 autocast on CUDA (float32 on CPU), channels_last_3d,
                 the batched losses.tclr_loss; --compile and --grad-checkpoint add torch.compile
                 and activation checkpointing of the backbone stages.
Each step reads its loss back to the host, as the training loop does. Peak memory of a
configuration, measured in one more step of each after all timed runs: its parameters, optimizer
state and input batch plus the most memory the step allocated on top (gradients included),
measured by peak_memory.PeakMemory (beside this file): torch.cuda.max_memory_allocated on CUDA; on
Linux CPUs the resident-set high-water mark (reset through /proc/self/clear_refs, large
allocations switched to mmap so that RSS follows the live tensors); "n/a" elsewhere. The other
configuration's tensors are not counted.

Part 2, end to end: real decoding of AVI files (a small synthetic dataset generated into a
temporary folder unless --e2e-videos is given; its video list is repeated so that one epoch covers
the run) through engine.common.make_loader with --workers processes, batches handed to the model by
engine.pretrain.batch_clips (augment_on "cpu": workers augment; "device": workers ship uint8 frames
and the training device augments), then the best configuration's step. Data-wait fraction = time
blocked in next(loader) / total, after warm-up steps that drain the workers' initial prefetch.

The last line is one JSON object: {"device", "release_style": {"samples_per_s", "peak_mem_mb",
...}, "best": {...}, "speedup", "mem_ratio", "e2e": {"samples_per_s", "data_wait_fraction",
"workers", "augment_on"} (the faster augment_on; null with --no-e2e), "e2e_runs": [...], versions}.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

# Run as a file (python scripts/bench_train_step.py): make the repository's packages importable.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import config as config_mod  # noqa: E402
from config import PretrainConfig  # noqa: E402
from engine.common import (TF32_POLICIES, amp_dtype, apply_tf32, autocast, make_loader,  # noqa: E402
                           make_scaler)
from engine.distributed import DistInfo, resolve_device  # noqa: E402
from engine.pretrain import batch_clips, prepare_model, train_step  # noqa: E402
from losses.reference import reference_tclr_loss  # noqa: E402
# peak_memory.py lies beside this file (the script's folder is on sys.path when it runs as a file).
from peak_memory import PeakMemory  # noqa: E402

# Sizes by device; --quick uses QUICK on any device. Values given on the command line win.
CUDA_SIZES = {"width": 64, "resolution": 112, "batch_size": 40, "steps": 20, "warmup": 5,
              "rounds": 4, "e2e_steps": 40, "e2e_frames": 150, "e2e_width": 320, "e2e_height": 240}
CPU_SIZES = {"width": 8, "resolution": 32, "batch_size": 4, "steps": 12, "warmup": 2,
             "rounds": 4, "e2e_steps": 8, "e2e_frames": 72, "e2e_width": 64, "e2e_height": 48}
QUICK_SIZES = {"width": 8, "resolution": 32, "batch_size": 4, "steps": 1, "warmup": 1,
               "rounds": 1, "e2e_steps": 2, "e2e_frames": 72, "e2e_width": 64, "e2e_height": 48}
AUGMENT_PLACES = ("cpu", "device")


def available_cpus() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers() -> int:
    """All CPUs this process may use but one (for the training process), 1..16."""
    return min(16, max(1, available_cpus() - 1))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--device", default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:N'")
    add("--backbone", default="r3d18", choices=config_mod.BACKBONE_NAMES)
    add("--width", type=int, help="backbone width (CUDA 64, CPU 8)")
    add("--resolution", type=int, help="clip side in pixels (CUDA 112, CPU 32)")
    add("--batch-size", type=int, help="videos per step (CUDA 40, CPU 4)")
    add("--steps", type=int, help="timed steps per configuration, spread over the rounds")
    add("--warmup", type=int, help="untimed steps per configuration first")
    add("--rounds", type=int, help="alternating rounds the timed steps are split into")
    add("--compile", action="store_true", help="torch.compile the best configuration's model")
    add("--grad-checkpoint", action="store_true",
        help="activation checkpointing in the best configuration (less memory, more compute)")
    add("--quick", action="store_true", help="smoke-test sizes and step counts on any device")
    add("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    add("--seed", type=int, default=0)
    add("--tf32", default="release", choices=tuple(TF32_POLICIES),
        help="TF32 policy, as the training jobs' --tf32 (default: release)")
    add("--no-e2e", action="store_true", help="skip the end-to-end measurement")
    add("--e2e-videos", help="dataset root to decode (default: a synthetic one in a temp folder)")
    add("--e2e-dataset", default="synthetic", choices=config_mod.DATASETS,
        help="reader for --e2e-videos (split 1, train and test lists)")
    add("--e2e-steps", type=int, help="timed end-to-end steps per augment_on")
    add("--e2e-warmup", type=int, help="untimed end-to-end steps first (default: 2 x workers)")
    add("--e2e-rounds", type=int, default=1, help="alternations of the augment_on settings")
    add("--workers", type=int, default=default_workers(), help="DataLoader worker processes")
    add("--augment-on", default="both", choices=(*AUGMENT_PLACES, "both"),
        help="where the end-to-end run augments")
    args = parser.parse_args(argv)
    args.device = resolve_device(args.device)
    sizes = QUICK_SIZES if args.quick else CUDA_SIZES if args.device.type == "cuda" else CPU_SIZES
    for name, value in sizes.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    if args.e2e_warmup is None:
        args.e2e_warmup = 1 if args.quick else 2 * max(1, args.workers)
    for name in ("width", "resolution", "batch_size", "steps", "rounds", "e2e_steps",
                 "e2e_rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.batch_size < 2:
        parser.error("--batch-size must be >= 2 (instance contrast needs two videos)")
    return args


# --------------------------------------------------------------------------------------------
# The two configurations
# --------------------------------------------------------------------------------------------

@dataclass
class Variant:
    """One step configuration (see the module docstring)."""

    name: str
    fused: bool
    amp: str                 # the config's amp setting; CPU runs float32 whatever it says
    channels_last: bool
    loop_loss: bool          # losses.reference's loops inside autocast instead of tclr_loss
    compile: bool = False
    grad_checkpoint: bool = False


def variants(args) -> list[Variant]:
    bf16 = args.device.type != "cuda" or torch.cuda.is_bf16_supported()
    return [Variant("release_style", fused=False, amp="fp16", channels_last=False, loop_loss=True),
            Variant("best", fused=True, amp="bf16" if bf16 else "fp16", channels_last=True,
                    loop_loss=False, compile=args.compile, grad_checkpoint=args.grad_checkpoint)]


def make_config(args, variant: Variant) -> PretrainConfig:
    """A validated pretraining config for one variant (only the model and step fields matter)."""
    cfg = PretrainConfig()
    cfg.backbone, cfg.width, cfg.batch_size, cfg.seed = (args.backbone, args.width,
                                                          args.batch_size, args.seed)
    cfg.device, cfg.amp, cfg.progress = str(args.device), variant.amp, False
    cfg.fused_forward, cfg.channels_last = variant.fused, variant.channels_last
    cfg.compile, cfg.grad_checkpoint = variant.compile, variant.grad_checkpoint
    cfg.data.resolution = args.resolution
    cfg.data.dataset = args.e2e_dataset
    return config_mod.finalize(cfg)


def release_loss(device: torch.device, dtype: torch.dtype | None):
    """losses.reference's loop implementation with tclr_loss's signature, run inside autocast."""
    def loss(sparse_global, sparse_local, dense_global, temperature=0.1, weights=None):
        with autocast(device, dtype):
            return reference_tclr_loss(sparse_global, sparse_local, dense_global, temperature)
    return loss


class StepRunner:
    """A variant's model, optimizer and grad scaler, stepped by engine.pretrain.train_step."""

    def __init__(self, args, variant: Variant):
        self.variant, self.device = variant, args.device
        self.cfg = make_config(args, variant)
        self.model, self.plain = prepare_model(self.cfg, self.device)
        self.model.train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr,
                                          weight_decay=self.cfg.weight_decay)
        self.dtype = amp_dtype(self.cfg.amp, self.device)
        self.scaler = make_scaler(self.device, self.dtype)
        self.loss_fn = release_loss(self.device, self.dtype) if variant.loop_loss else None
        self.weights = config_mod.loss_weights(self.cfg)

    def step(self, clips: torch.Tensor) -> float:
        """One training step on clips [B, V, 1+K, C, T, S, S]; the loss, read back to the host."""
        terms = train_step(self.model, clips, self.optimizer, self.scaler, self.device,
                           self.dtype, self.cfg.temperature, self.weights, self.loss_fn)
        return terms["total"].item()

    def resident_bytes(self) -> int:
        """Parameters, buffers and optimizer state (gradients are counted as step memory)."""
        tensors = [*self.plain.parameters(), *self.plain.buffers()]
        tensors += [v for state in self.optimizer.state.values() for v in state.values()
                    if torch.is_tensor(v)]
        return sum(t.numel() * t.element_size() for t in tensors if t.device == self.device)

    def describe(self) -> dict:
        v = self.variant
        return {"fused_forward": v.fused, "precision": str(self.dtype or torch.float32)[6:],
                "channels_last_3d": v.channels_last,
                "loss": "losses.reference loops" if v.loop_loss else "losses.tclr_loss",
                "compile": v.compile, "grad_checkpoint": v.grad_checkpoint}


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------

def measure_memory(args, runners: list[StepRunner], clips: torch.Tensor) -> dict[str, float | None]:
    """Peak MB of one step of each runner: its resident tensors, the input and the step's peak."""
    meter = PeakMemory(args.device)
    input_bytes = clips.numel() * clips.element_size()
    peaks = {}
    for runner in runners:
        runner.optimizer.zero_grad(set_to_none=True)  # gradients count as step memory
        meter.start()
        runner.step(clips)
        above = meter.peak()
        peaks[runner.variant.name] = None if above is None else round(
            (above + runner.resident_bytes() + input_bytes) / 2**20, 1)
    return peaks


# --------------------------------------------------------------------------------------------
# Part 1: the step
# --------------------------------------------------------------------------------------------

def synthetic_clips(args) -> torch.Tensor:
    """Random float clips [B, V=2, 1+K, 3, T, S, S] in [0, 1] on the device (K = 4, T = 16)."""
    gen = torch.Generator().manual_seed(args.seed)
    shape = (args.batch_size, 2, 5, 3, 16, args.resolution, args.resolution)
    return torch.rand(shape, generator=gen).to(args.device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_steps(args, runners: list[StepRunner], clips: torch.Tensor) -> dict[str, dict]:
    """Warm-up, then alternating timed rounds; per variant: rate, step time, last loss."""
    for _ in range(args.warmup):
        for runner in runners:
            runner.step(clips)
    per_round = math.ceil(args.steps / args.rounds)
    seconds = {r.variant.name: [] for r in runners}
    losses = {}
    for round_index in range(args.rounds):
        for runner in runners if round_index % 2 == 0 else runners[::-1]:
            _sync(args.device)
            begin = time.perf_counter()
            for _ in range(per_round):
                losses[runner.variant.name] = runner.step(clips)
            _sync(args.device)
            seconds[runner.variant.name].append(time.perf_counter() - begin)
    results = {}
    for runner in runners:
        spent, steps = seconds[runner.variant.name], per_round * args.rounds
        results[runner.variant.name] = {
            "samples_per_s": round(steps * args.batch_size / sum(spent), 3),
            "step_ms": round(1000 * sum(spent) / steps, 2),
            "round_samples_per_s": [round(per_round * args.batch_size / s, 3) for s in spent],
            "peak_mem_mb": None,
            "loss": round(losses[runner.variant.name], 5),
            "config": runner.describe(),
        }
    return results


# --------------------------------------------------------------------------------------------
# Part 2: end to end
# --------------------------------------------------------------------------------------------

def e2e_videos(args, folder: str) -> list[tuple[str, int]]:
    """The videos to decode: --e2e-videos (split 1, train + test) or a generated synthetic set."""
    from dataloaders import synthetic
    from dataloaders.splits import build_video_list
    root, dataset = args.e2e_videos, args.e2e_dataset
    if root is None:
        root, dataset = os.path.join(folder, "videos"), "synthetic"
        begin = time.perf_counter()
        synthetic.generate(root, classes=2, videos_per_class=4, frames=args.e2e_frames,
                           width=args.e2e_width, height=args.e2e_height, seed=args.seed,
                           layout="ucf101", workers=min(8, default_workers()), progress=False)
        print(f"generated 8 synthetic {args.e2e_width}x{args.e2e_height} videos of "
              f"{args.e2e_frames} frames in {time.perf_counter() - begin:.1f} s")
    videos = {}
    for subset in ("train", "test"):
        videos.update(build_video_list(dataset, root, split=1, subset=subset)[0])
    return sorted(videos.items())


def bench_e2e(args, runner: StepRunner, videos: list[tuple[str, int]], augment_on: str) -> dict:
    """Decode -> (augment) -> collate -> pinned copy -> runner's step, the training loop's way."""
    from dataloaders.batching import collate_pretrain
    from dataloaders.datasets import build_dataset
    cfg = copy.deepcopy(runner.cfg)
    cfg.data.augment_on, cfg.data.num_workers = augment_on, args.workers
    d = cfg.data
    steps = args.e2e_warmup + args.e2e_steps
    # enough items that one epoch covers the run plus whatever the workers prefetch beyond it
    needed = cfg.batch_size * (steps + 2 * max(1, args.workers) + 1)
    repeated = videos * math.ceil(needed / len(videos))
    dataset = build_dataset(d, "pretrain", repeated, cfg.seed)
    dist_info = DistInfo(rank=0, world_size=1, local_rank=0, device=args.device)
    loader, sampler = make_loader(dataset, cfg, dist_info, train=True, collate_fn=collate_pretrain,
                                  min_last_batch=2)
    sampler.set_epoch(0)
    wait = busy = 0.0
    samples = 0
    iterator = iter(loader)
    try:
        for step in range(steps):
            begin = time.perf_counter()
            batch = next(iterator)
            got = time.perf_counter()
            clips = batch_clips(batch, args.device, cfg)              # [B, V, 1+K, C, T, S, S]
            runner.step(clips)                                        # reads the loss: a sync
            if step >= args.e2e_warmup:
                wait += got - begin
                busy += time.perf_counter() - got
                samples += clips.shape[0]
    finally:
        del iterator, loader  # shuts the persistent workers down before another run starts
    return {"samples_per_s": round(samples / (wait + busy), 3),
            "data_wait_fraction": round(wait / (wait + busy), 4), "workers": args.workers,
            "augment_on": augment_on, "steps": args.e2e_steps}


def run_e2e(args, runner: StepRunner) -> list[dict]:
    places = AUGMENT_PLACES if args.augment_on == "both" else (args.augment_on,)
    with tempfile.TemporaryDirectory(prefix="bench_train_step_") as folder:
        videos = e2e_videos(args, folder)
        runs = {place: [] for place in places}
        for round_index in range(args.e2e_rounds):
            for place in places if round_index % 2 == 0 else places[::-1]:
                try:
                    runs[place].append(bench_e2e(args, runner, videos, place))
                except RuntimeError as error:  # e.g. a worker killed for lack of shared memory
                    print(f"end-to-end run with augment_on={place} failed: {error}")
                    runs[place].append({"augment_on": place, "workers": args.workers,
                                        "error": str(error)[:500]})
    merged = []
    for place, results in runs.items():
        failed = [r for r in results if "error" in r]
        if failed:
            merged.append(failed[0])
            continue
        rate = sum(r["samples_per_s"] for r in results) / len(results)
        wait = sum(r["data_wait_fraction"] for r in results) / len(results)
        merged.append({**results[0], "samples_per_s": round(rate, 3),
                       "data_wait_fraction": round(wait, 4)})
    return merged


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def environment(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": available_cpus()}
    if os.path.isdir("/dev/shm"):  # DataLoader workers hand batches over through it
        info["shm_gb"] = round(shutil.disk_usage("/dev/shm").total / 2**30, 1)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return info


def print_report(args, env: dict, steps: dict, e2e: list[dict]) -> dict:
    gpu = f", {env['gpu']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}" if "gpu" in env else ""
    print(f"device {env['device']}{gpu}; torch {env['torch']}, {env['threads']} CPU threads")
    print(f"{args.backbone} width {args.width}, {args.resolution} px, batch {args.batch_size}; "
          f"{args.warmup} warm-up + {math.ceil(args.steps / args.rounds) * args.rounds} timed "
          f"steps each, in {args.rounds} alternating rounds")
    print(f"{'configuration':<15} {'samples/s':>10} {'ms/step':>9} {'peak MB':>9} {'loss':>9}  "
          "rounds (samples/s)")
    for name, row in steps.items():
        peak = "n/a" if row["peak_mem_mb"] is None else f"{row['peak_mem_mb']:.1f}"
        print(f"{name:<15} {row['samples_per_s']:>10.2f} {row['step_ms']:>9.1f} {peak:>9} "
              f"{row['loss']:>9.4f}  {row['round_samples_per_s']}")
        print(f"{'':<15} {row['config']}")
    release, best = steps["release_style"], steps["best"]
    speedup = round(best["samples_per_s"] / release["samples_per_s"], 3)
    mem_ratio = None
    if best["peak_mem_mb"] is not None and release["peak_mem_mb"]:
        mem_ratio = round(best["peak_mem_mb"] / release["peak_mem_mb"], 3)
    print(f"best / release_style: {speedup:.2f}x samples/s, peak memory ratio "
          f"{'n/a' if mem_ratio is None else f'{mem_ratio:.2f}'}")
    for run in e2e:
        head = f"end to end, augment_on={run['augment_on']}, {run['workers']} workers: "
        print(head + (f"FAILED ({run['error']})" if "error" in run else
                      f"{run['samples_per_s']:.2f} samples/s, data wait "
                      f"{run['data_wait_fraction']:.1%}"))
    done = [run for run in e2e if "error" not in run]
    best_e2e = max(done, key=lambda r: r["samples_per_s"]) if done else None
    return {**env, "backbone": args.backbone, "width": args.width, "resolution": args.resolution,
            "batch_size": args.batch_size, "release_style": release, "best": best,
            "speedup": speedup, "mem_ratio": mem_ratio,
            "e2e": None if best_e2e is None else {k: best_e2e[k] for k in (
                "samples_per_s", "data_wait_fraction", "workers", "augment_on")},
            "e2e_runs": e2e}


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as engine.common.setup_run does for training
    print(f"tf32: {apply_tf32(args.tf32)}")
    runners = [StepRunner(args, variant) for variant in variants(args)]
    clips = synthetic_clips(args)
    steps = bench_steps(args, runners, clips)
    e2e = [] if args.no_e2e else run_e2e(args, runners[1])
    for name, peak in measure_memory(args, runners, clips).items():
        steps[name]["peak_mem_mb"] = peak
    result = print_report(args, environment(args.device), steps, e2e)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
