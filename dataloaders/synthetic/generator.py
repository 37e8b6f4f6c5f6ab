"""Generating the synthetic dataset into a folder, and its command line.

`generate` checks the arguments, refuses foreign folders, skips a dataset that is already complete,
renders and encodes the videos (in parallel processes), writes the split files and the manifest
(synthetic_manifest.json: the arguments, every video's label and split roles, and the top-level
entries the generator owns). `main` is `python -m dataloaders.synthetic`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from atomic_io import WriteError, write_error, write_text
from dataloaders.synthetic.designs import (CLASS_REGISTRY, DEFAULT_DESIGN, DESIGNS,
                                           SyntheticDatasetError, class_names, get_design)
from dataloaders.synthetic.layout import (LAYOUTS, NUM_SPLITS, SPLIT_FOLDERS, VideoEntry,
                                          group_layout, plan_videos, write_split_files)
from dataloaders.synthetic.render import VideoSpec, pick_fourcc, write_video

GENERATOR_VERSION = 1
MANIFEST_NAME = "synthetic_manifest.json"


# --------------------------------------------------------------------------------------------------
# Output folder handling (manifest, refusing foreign folders, skipping identical datasets).


def _arguments(num_classes: int, videos_per_class: int, frames: int, width: int, height: int,
               seed: int, layout: str, fps: float, design: str) -> dict:
    return {"classes": num_classes, "videos_per_class": videos_per_class, "frames": frames,
            "width": width, "height": height, "seed": seed, "layout": layout, "fps": fps,
            "design": design, "generator_version": GENERATOR_VERSION}


def read_manifest(root: str | Path) -> dict:
    """The manifest of a generated dataset. Raises SyntheticDatasetError if absent or unreadable."""
    path = Path(root) / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SyntheticDatasetError(
            f"{path} not found: {root} is not a generated synthetic dataset") from None
    except json.JSONDecodeError as err:
        raise SyntheticDatasetError(
            f"{path} is not valid JSON ({err}); regenerate with --overwrite") from None


def _prepare_folder(out: Path, arguments: dict, overwrite: bool) -> bool:
    """Make `out` ready for writing. Returns True when the same complete dataset is already there."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        out.mkdir(parents=True, exist_ok=True)
        return False
    if not out.is_dir():
        raise SyntheticDatasetError(f"--out {out} exists and is not a folder")
    if not (out / MANIFEST_NAME).is_file():
        raise SyntheticDatasetError(
            f"--out {out} is not empty and has no {MANIFEST_NAME}, so it is not a synthetic dataset: "
            f"refusing to write into it (even with --overwrite); choose a new or empty folder")
    old = read_manifest(out)
    same = old.get("arguments") == arguments
    if same and old.get("complete"):
        return True
    if not same and not overwrite:
        changed = {k: (old.get("arguments", {}).get(k), v) for k, v in arguments.items()
                   if old.get("arguments", {}).get(k) != v}
        raise SyntheticDatasetError(
            f"--out {out} holds a different synthetic dataset (changed old -> new: {changed}); pass "
            f"--overwrite to replace it, or choose another --out")
    for name in old.get("entries", []):  # only what the previous generation wrote itself
        target = out / name
        if Path(name).name != name or name in ("", ".", ".."):
            raise SyntheticDatasetError(f"{out / MANIFEST_NAME}: refusing to delete odd entry {name!r}")
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    (out / MANIFEST_NAME).unlink()
    return False


def _write_manifest(out: Path, arguments: dict, fourcc: str, entries: Sequence[VideoEntry],
                    top_level: Sequence[str], complete: bool) -> None:
    manifest = {"generator": "dataloaders.synthetic", "arguments": arguments, "complete": complete,
                "fourcc": fourcc, "class_names": sorted({e.class_name for e in entries}),
                "entries": sorted(top_level), "videos": [asdict(e) for e in entries]}
    write_text(out / MANIFEST_NAME, json.dumps(manifest, indent=1), "synthetic dataset manifest")


# --------------------------------------------------------------------------------------------------
# Public entry points.


@dataclass(frozen=True)
class GenerationSummary:
    """What `generate` made (or found already made)."""

    root: str
    layout: str
    class_names: list[str]  # alphabetical = label order (0-based label = position)
    num_videos: int
    frames: int
    width: int
    height: int
    fourcc: str
    skipped: bool  # True when the identical dataset already existed
    seconds: float
    split_sizes: dict[int, tuple[int, int]]  # split -> (train videos, test videos)


def _validate(num_classes: int, videos_per_class: int, frames: int, width: int, height: int,
              layout: str, fps: float, workers: int, design: str) -> None:
    class_names(num_classes, design)
    group_layout(videos_per_class)
    if layout not in LAYOUTS:
        raise SyntheticDatasetError(f"layout={layout!r}: choose one of {LAYOUTS}")
    if frames < 2:
        raise SyntheticDatasetError(f"frames={frames}: need at least 2 frames per video")
    for label, value in (("width", width), ("height", height)):
        if value < 16 or value % 2:
            raise SyntheticDatasetError(f"{label}={value}: must be an even number >= 16 (video codecs "
                                        f"need even frame sizes)")
    if fps <= 0:
        raise SyntheticDatasetError(f"fps={fps}: must be positive")
    if workers < 1:
        raise SyntheticDatasetError(f"workers={workers}: must be >= 1")


def _summary(out: Path, manifest: dict, skipped: bool, seconds: float) -> GenerationSummary:
    args = manifest["arguments"]
    videos = manifest["videos"]
    sizes = {k: (sum(v["roles"][str(k)] == "train" for v in videos),
                 sum(v["roles"][str(k)] == "test" for v in videos)) for k in range(1, NUM_SPLITS + 1)}
    return GenerationSummary(str(out), args["layout"], manifest["class_names"], len(videos),
                             args["frames"], args["width"], args["height"], manifest["fourcc"],
                             skipped, seconds, sizes)


def _run_jobs(specs: Sequence[VideoSpec], workers: int, progress: bool) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(specs), desc="synthetic videos", unit="video", disable=not progress)
    try:
        if workers == 1:
            for spec in specs:
                write_video(spec)
                bar.update()
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(write_video, specs, chunksize=max(1, len(specs) // (4 * workers))):
                bar.update()
    finally:
        bar.close()


def generate(out: str | Path, classes: int = 10, videos_per_class: int = 12, frames: int = 150,
             width: int = 320, height: int = 240, seed: int = 0, layout: str = "ucf101",
             fps: float = 25.0, workers: int = 1, progress: bool = True,
             overwrite: bool = False, design: str = DEFAULT_DESIGN) -> GenerationSummary:
    """Generate the synthetic dataset under `out` (see the package docstring for the design).

    Args:
        out: dataset root. UCF101 layout: out/UCF-101/<Class>/v_<Class>_gXX_cYY.avi and
            out/ucfTrainTestlist/{classInd,trainlist0k,testlist0k}.txt; HMDB51 layout:
            out/<class>/<file>.avi and out/testTrainMulti_7030_splits/<class>_test_split{k}.txt.
        classes: number of classes: the first ones of the design's class set (2..12 for
            "varied", 2..6 for "trajectory" and "switch").
        videos_per_class: >= 4, spread over UCF-style groups.
        frames, width, height, fps: video length and size (even width/height); defaults like UCF101.
        seed: everything (appearance, dynamics, splits, hence the decoded frames) follows from it.
        layout: "ucf101" or "hmdb51".
        workers: processes that render and encode videos in parallel.
        progress: show a tqdm bar.
        overwrite: replace a different synthetic dataset found in `out` (never a foreign folder).
        design: "varied" (appearance varies within every class), "trajectory" (one look for every
            video, classes differ only in the path of a square) or "switch" (two such paths one
            after the other; the class is the pair); see DESIGNS.

    Returns:
        GenerationSummary; `skipped` is True when the identical dataset was already complete in `out`.
    """
    start = time.perf_counter()
    _validate(classes, videos_per_class, frames, width, height, layout, fps, workers, design)
    out = Path(out)
    arguments = _arguments(classes, videos_per_class, frames, width, height, seed, layout, fps, design)
    try:
        return _generate(out, arguments, classes, videos_per_class, frames, width, height, seed,
                         layout, fps, workers, progress, overwrite, design, start)
    except OSError as exc:   # a folder that cannot be made or written (permission, full disk)
        target = exc.filename or out
        error = write_error(target, exc, "synthetic dataset", kept=False)
        raise error from exc


def _generate(out: Path, arguments: dict, classes: int, videos_per_class: int, frames: int,
              width: int, height: int, seed: int, layout: str, fps: float, workers: int,
              progress: bool, overwrite: bool, design: str, start: float) -> GenerationSummary:
    if _prepare_folder(out, arguments, overwrite):
        return _summary(out, read_manifest(out), True, time.perf_counter() - start)
    fourcc = pick_fourcc(out, width, height, fps)
    entries = plan_videos(class_names(classes, design), videos_per_class, layout, seed, design)
    # the top-level entries this generation owns (and a later --overwrite may delete)
    owned = sorted({e.path.split("/")[0] for e in entries}) + [SPLIT_FOLDERS[layout]]
    _write_manifest(out, arguments, fourcc, entries, owned, complete=False)
    specs = []
    for entry in entries:
        (out / entry.path).parent.mkdir(parents=True, exist_ok=True)
        specs.append(VideoSpec(str(out / entry.path), get_design(design).index(entry.kind), entry.group,
                               entry.clip, seed, width, height, frames, fps, fourcc, design))
    _run_jobs(specs, workers, progress)
    write_split_files(out, entries, layout)
    _write_manifest(out, arguments, fourcc, entries, owned, complete=True)
    return _summary(out, read_manifest(out), False, time.perf_counter() - start)


# --------------------------------------------------------------------------------------------------
# Command line.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dataloaders.synthetic",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,  # every flag shows its default
        description="Write a synthetic video dataset (real AVI files, UCF101 or HMDB51 layout and split "
                    "files) whose classes differ only in temporal structure. Classes, in order: "
                    + ", ".join(CLASS_REGISTRY) + ".")
    parser.add_argument("--out", required=True, default=argparse.SUPPRESS,
                        help="dataset root folder (created if missing); required")
    parser.add_argument("--classes", type=int, default=10,
                        help="number of classes: " + ", ".join(
                            f"2..{len(d.classes)} ({d.name})" for d in DESIGNS.values()))
    parser.add_argument("--design", choices=tuple(DESIGNS), default=DEFAULT_DESIGN,
                        help="; ".join(f"{d.name}: {d.summary}" for d in DESIGNS.values()))
    parser.add_argument("--videos-per-class", type=int, default=12, help="videos per class, >= 4")
    parser.add_argument("--frames", type=int, default=150, help="frames per video")
    parser.add_argument("--width", type=int, default=320, help="frame width in px (even)")
    parser.add_argument("--height", type=int, default=240, help="frame height in px (even)")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything (videos and splits)")
    parser.add_argument("--layout", choices=LAYOUTS, default="ucf101", help="on-disk layout")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate written into the files")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a different synthetic dataset already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (2 with a one-line message on bad input)."""
    args = build_parser().parse_args(argv)
    try:
        summary = generate(args.out, args.classes, args.videos_per_class, args.frames, args.width,
                           args.height, args.seed, args.layout, args.fps, args.workers,
                           progress=not args.quiet, overwrite=args.overwrite, design=args.design)
    except (SyntheticDatasetError, WriteError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    verb = "already present, skipped" if summary.skipped else f"written in {summary.seconds:.1f} s"
    sizes = ", ".join(f"split {k}: {tr} train / {te} test" for k, (tr, te) in summary.split_sizes.items())
    print(f"{summary.layout} synthetic dataset at {summary.root}: {len(summary.class_names)} classes, "
          f"{summary.num_videos} videos of {summary.frames} frames at {summary.width}x{summary.height} "
          f"({summary.fourcc}), {verb}; {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
