"""Time forward + backward of the batched TCLR loss against the release-structured loop reference.

Usage:
    python scripts/bench_losses.py                 # B=40, K=4, D=128, CPU (+ CUDA if present)
    python scripts/bench_losses.py --quick         # CI smoke run: small sizes, few repeats
    python scripts/bench_losses.py --devices cpu --repeats 50

Prints a table, then as its last line one JSON object per device (a list when there are
several): {"device", "batched_ms", "loop_ms", "speedup", ...}. Times are medians over repeats.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

# Run as a file (python scripts/bench_losses.py): make the repository's packages importable.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from losses import tclr_loss  # noqa: E402
from losses.reference import reference_tclr_loss  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=40, help="videos per batch B")
    parser.add_argument("--clips", type=int, default=4, help="dense clips per video K")
    parser.add_argument("--dim", type=int, default=128, help="embedding size D")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per implementation")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first")
    parser.add_argument("--devices", nargs="+", default=None,
                        help="devices to time (default: cpu, plus cuda when available)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: B=8, 3 repeats, 1 warmup (sizes given explicitly win)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice)")
    args = parser.parse_args(argv)
    if args.quick:
        defaults = {"batch": 40, "repeats": 20, "warmup": 3}
        quick = {"batch": 8, "repeats": 3, "warmup": 1}
        for name, value in quick.items():
            if getattr(args, name) == defaults[name]:
                setattr(args, name, value)
    if args.devices is None:
        args.devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return args


def make_inputs(batch, clips, dim, device, seed=0):
    """Random L2-normalised model outputs on ``device`` that require grad."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(2, batch, dim), (2, batch, clips, dim), (2, batch, clips, dim)]
    return [
        F.normalize(torch.randn(shape, generator=gen), dim=-1).to(device).requires_grad_()
        for shape in shapes
    ]


def time_steps(loss_fns, inputs, repeats, warmup):
    """Median milliseconds of loss_fn(*inputs)["total"].backward() for each of ``loss_fns``.

    The implementations take turns within each repeat, so that load from other processes on a
    shared machine hits them alike.
    """
    sync = torch.cuda.synchronize if inputs[0].device.type == "cuda" else (lambda: None)
    times = [[] for _ in loss_fns]
    for step in range(warmup + repeats):
        for loss_fn, samples in zip(loss_fns, times):
            for x in inputs:
                x.grad = None
            sync()
            start = time.perf_counter()
            loss_fn(*inputs)["total"].backward()
            sync()
            if step >= warmup:
                samples.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(samples) for samples in times]


def bench_device(args, device):
    inputs = make_inputs(args.batch, args.clips, args.dim, device)
    batched = tclr_loss(*inputs)["total"].item()
    loop = reference_tclr_loss(*inputs)["total"].item()
    batched_ms, loop_ms = time_steps(
        [tclr_loss, reference_tclr_loss], inputs, args.repeats, args.warmup
    )
    return {
        "device": str(device),
        "B": args.batch, "K": args.clips, "D": args.dim, "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "batched_ms": round(batched_ms, 3),
        "loop_ms": round(loop_ms, 3),
        "speedup": round(loop_ms / batched_ms, 2),
        "abs_diff": abs(batched - loop),
    }


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results = [bench_device(args, torch.device(name)) for name in args.devices]
    print(f"{'device':<8} {'B':>4} {'K':>3} {'D':>4} {'batched ms':>11} {'loop ms':>9} "
          f"{'speedup':>8} {'|diff|':>9}")
    for row in results:
        print(f"{row['device']:<8} {row['B']:>4} {row['K']:>3} {row['D']:>4} "
              f"{row['batched_ms']:>11.3f} {row['loop_ms']:>9.3f} {row['speedup']:>8.1f} "
              f"{row['abs_diff']:>9.2e}")
    print(json.dumps(results[0] if len(results) == 1 else results))


if __name__ == "__main__":
    main()
