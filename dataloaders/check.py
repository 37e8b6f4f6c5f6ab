"""Preflight check of a dataset split: every listed video opened and decoded to its real end.

    python -m dataloaders.check --dataset ucf101 --root DIR --split 1 [--subset all|train|test]
                                [--workers N] [--min-frames 57] [--json REPORT.json]

Checks every subset a job reads (default "all": train and test; Kinetics train and val), each
against the minimum length of the protocol that reads it: train videos against TCLR pretraining's
(57 frames at the defaults), test/val videos against evaluation's (17 frames: 16-frame clips at
stride 2). Prints per subset: decodable count, real frame counts (min / median / max), videos too
short, videos whose header overstates their length, unreadable files with the reason, and split
entries with no file; then videos listed in both train and test (refused by every job) and
duplicate split lines. Exit status 1 when any listed file is missing or unreadable or an evaluation
video is too short (evaluation never skips a video), 2 when the dataset layout or split files are
broken (including train/test overlap), 0 otherwise (too-short train videos are reported, not fatal:
the training datasets skip them by their stated policy).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys

import numpy as np
from tqdm import tqdm

from atomic_io import WriteError, write_json
from dataloaders.sampling import min_eval_frames, min_tclr_frames
from dataloaders.splits import DATASETS, DatasetError, build_video_list, check_split_lists
from dataloaders.video import VideoDecodeError, count_frames, probe_video

SHOW = 20  # paths printed per category (the JSON report has all of them)


def scan_video(path: str) -> dict:
    """Opens and fully decodes one video.

    Returns:
        {"path", "status": "ok" | "missing" | "unreadable", "reason", "header_frames",
         "real_frames", "width", "height"}.
    """
    result = {"path": path, "status": "ok", "reason": "", "header_frames": None,
              "real_frames": None, "width": None, "height": None}
    if os.path.isdir(path):
        result.update(status="unreadable", reason="a directory, not a video file")
        return result
    if not os.path.exists(path):
        reason = (f"a dangling symlink to {os.readlink(path)}" if os.path.islink(path)
                  else "file not found")
        result.update(status="missing", reason=reason)
        return result
    try:
        info = probe_video(path)
        real = count_frames(path)
    except VideoDecodeError as error:
        result.update(status="unreadable", reason=error.reason)
        return result
    result.update(header_frames=info.frame_count, real_frames=real, width=info.width,
                  height=info.height)
    if real == 0:
        result.update(status="unreadable", reason="no frame could be decoded (corrupt or truncated)")
    return result


def _subsets(dataset: str, subset: str) -> tuple[str, ...]:
    if subset != "all" or dataset == "folder":
        return (subset,)
    return ("train", "test") if dataset != "kinetics400" else ("train", "val")


def _videos(dataset: str, root: str, split: int, subset: str) -> list[tuple[str, int]]:
    return build_video_list(dataset, root, split, subset, check_files=False)[0]


def scan(paths: list[str], workers: int, progress: bool = True) -> list[dict]:
    """scan_video over every path, in a process pool of `workers` (in order of `paths`)."""
    if workers <= 1:
        return [scan_video(p) for p in tqdm(paths, disable=not progress, desc="videos")]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        iterator = pool.imap(scan_video, paths, chunksize=4)
        return list(tqdm(iterator, total=len(paths), disable=not progress, desc="videos"))


def summarize(results: list[dict], min_frames: int) -> dict:
    """Counts and path lists per category."""
    ok = [r for r in results if r["status"] == "ok"]
    real = np.array([r["real_frames"] for r in ok], dtype=np.int64)
    return {
        "listed": len(results),
        "decodable": len(ok),
        "frames_min": int(real.min()) if len(real) else None,
        "frames_median": float(np.median(real)) if len(real) else None,
        "frames_max": int(real.max()) if len(real) else None,
        "min_frames": min_frames,
        "too_short": [(r["path"], r["real_frames"]) for r in ok if r["real_frames"] < min_frames],
        "header_overstates": [(r["path"], r["header_frames"], r["real_frames"]) for r in ok
                              if r["header_frames"] > r["real_frames"]],
        "missing": [r["path"] for r in results if r["status"] == "missing"],
        "unreadable": [(r["path"], r["reason"]) for r in results if r["status"] == "unreadable"],
    }


def _print_list(title: str, rows: list, fmt) -> None:
    print(f"{title}: {len(rows)}")
    for row in rows[:SHOW]:
        print("    " + fmt(row))
    if len(rows) > SHOW:
        print(f"    ... and {len(rows) - SHOW} more (see --json)")


def print_summary(summary: dict, header: str, protocol: str = "TCLR sampling") -> None:
    print(header)
    print(f"  listed videos: {summary['listed']}")
    print(f"  decodable: {summary['decodable']}")
    if summary["frames_min"] is not None:
        print(f"  real frame counts: min {summary['frames_min']}, median {summary['frames_median']:g}, "
              f"max {summary['frames_max']}")
    _print_list(f"  too short for {protocol} (< {summary['min_frames']} frames)",
                summary["too_short"], lambda r: f"{r[0]} ({r[1]} frames)")
    _print_list("  header overstates the frame count", summary["header_overstates"],
                lambda r: f"{r[0]} (header {r[1]}, real {r[2]})")
    _print_list("  split entries with no file", summary["missing"], str)
    _print_list("  unreadable", summary["unreadable"], lambda r: f"{r[0]}: {r[1]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--root", required=True, help="dataset root folder")
    parser.add_argument("--split", type=int, default=1)
    parser.add_argument("--subset", default="all", choices=("all", "train", "test", "val"),
                        help="all = every subset a job reads (default)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--min-frames", type=int, default=min_tclr_frames(),
                        help="frames a train video needs for TCLR sampling (default: %(default)s)")
    parser.add_argument("--min-eval-frames", type=int, default=min_eval_frames(),
                        help="frames a test/val video needs for evaluation (default: %(default)s)")
    parser.add_argument("--json", help="also write the full report (every path) to this file")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    subsets = _subsets(args.dataset, args.subset)
    try:
        lists = {name: _videos(args.dataset, args.root, args.split, name) for name in subsets}
        notes = (check_split_lists(lists["train"], lists["test"], f"{args.dataset} split "
                                   f"{args.split}") if {"train", "test"} <= set(lists) else [])
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summaries, scanned, bad, short = {}, [], 0, 0
    for name, videos in lists.items():
        evaluated = name not in ("train", "all")
        minimum = args.min_eval_frames if evaluated else args.min_frames
        results = scan([path for path, _ in videos], args.workers, not args.no_progress)
        scanned.extend(results)
        summary = summarize(results, minimum)
        print_summary(summary, f"{args.dataset} split {args.split} {name} under {args.root}",
                      "evaluation clips" if evaluated else "TCLR sampling")
        summaries[name] = summary
        bad += len(summary["missing"]) + len(summary["unreadable"])
        short += len(summary["too_short"]) if evaluated else 0
    for note in notes:
        print(f"note: {note}")
    if args.json:
        report = summaries[subsets[0]]
        if len(subsets) > 1:   # the counts over every subset, each too-short judged by its own
            report = {**summarize(scanned, args.min_frames), "subsets": summaries}
            report["too_short"] = [row for one in summaries.values() for row in one["too_short"]]
            report.pop("min_frames")
        try:
            write_json(args.json, {**report, "notes": notes}, "report", indent=1)
        except WriteError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    if bad:
        print(f"FAILED: {bad} listed videos are missing or unreadable")
    if short:
        print(f"FAILED: {short} test/val videos are too short for the evaluation clips "
              "(evaluation never skips a video)")
    if bad or short:
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
