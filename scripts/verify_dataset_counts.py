#!/usr/bin/env python
"""Compare a prepared UCF101 / HMDB51 folder with the official counts (TCLR_SPEC section 8).

    python scripts/verify_dataset_counts.py --dataset ucf101 --root data/ucf101
    python scripts/verify_dataset_counts.py --dataset hmdb51 --root data/hmdb51

Checks, without decoding anything (``python -m dataloaders.check`` decodes):
- the videos on disk: UCF101 13,320 in 101 class folders; HMDB51 6,766 in 51;
- every official split (1-3) reads, every listed file exists, the classes are all there;
- UCF101: each split's train and test lists together list every video once (split 1: 9,537 train,
  3,783 test); HMDB51: each split has 70 train and 30 test videos per class (3,570 / 1,530).
The --expect-* options replace the official numbers (for tests on small synthetic copies).
Exit status 0 when everything matches, 1 on a count mismatch, 2 when the layout cannot be read.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dataloaders.splits import VIDEO_EXTENSIONS, DatasetError, build_video_list  # noqa: E402


@dataclass
class Expected:
    """Official counts of one dataset; None = not checked."""

    videos: int
    classes: int
    split_sizes: dict = field(default_factory=dict)   # split -> (train, test)
    per_class: tuple | None = None                     # (train, test) videos per class and split
    partition: bool = False                            # train + test of a split = every video


OFFICIAL = {
    "ucf101": Expected(videos=13320, classes=101, split_sizes={1: (9537, 3783)}, partition=True),
    "hmdb51": Expected(videos=6766, classes=51,
                       split_sizes={s: (3570, 1530) for s in (1, 2, 3)}, per_class=(70, 30)),
}
# where the class folders are, relative to the dataset root (dataloaders/splits.py layouts)
VIDEO_DIRS = {"ucf101": "UCF-101", "hmdb51": "."}


def videos_on_disk(video_dir: Path) -> dict[str, list[str]]:
    """{class folder: [video file names]} of the class folders directly under ``video_dir``
    (folders holding no video, such as split-file folders, are left out)."""
    out = {}
    for entry in sorted(os.scandir(video_dir), key=lambda e: e.name):
        if not entry.is_dir() or entry.name.startswith((".", "_")):
            continue
        files = sorted(name for name in os.listdir(entry.path)
                       if name.lower().endswith(VIDEO_EXTENSIONS) and not name.startswith("."))
        if files:
            out[entry.name] = files
    return out


def check_counts(dataset: str, root: str, expected: Expected) -> list[str]:
    """Every mismatch between the folder and ``expected``, as readable lines (empty = all good).

    Raises:
        DatasetError: when a split file is missing or malformed (the layout itself is broken).
    """
    problems = []
    video_dir = Path(root) / VIDEO_DIRS[dataset]
    if not video_dir.is_dir():
        raise DatasetError(f"{video_dir} does not exist: unpack the dataset there first "
                           f"(scripts/prepare_{dataset}.sh --root {root})")
    disk = videos_on_disk(video_dir)
    total = sum(len(files) for files in disk.values())
    print(f"{dataset} under {root}: {total} videos in {len(disk)} class folders "
          f"(official: {expected.videos} in {expected.classes})")
    if total != expected.videos:
        problems.append(f"{total} videos on disk under {video_dir}, expected {expected.videos}")
    if len(disk) != expected.classes:
        problems.append(f"{len(disk)} class folders with videos under {video_dir}, expected "
                        f"{expected.classes}")
    every = {os.path.realpath(video_dir / name / f) for name, files in disk.items() for f in files}
    for split in (1, 2, 3):
        problems += _check_split(dataset, root, split, expected, every)
    return problems


def _check_split(dataset: str, root: str, split: int, expected: Expected, every: set) -> list[str]:
    train, classes = build_video_list(dataset, root, split, "train", check_files=True)
    test, _ = build_video_list(dataset, root, split, "test", check_files=True)
    print(f"  split {split}: {len(train)} train, {len(test)} test videos, {len(classes)} classes")
    where = f"split {split}"
    problems = []
    if len(classes) != expected.classes:
        problems.append(f"{where}: {len(classes)} classes in the split files, expected "
                        f"{expected.classes}")
    if split in expected.split_sizes and (len(train), len(test)) != expected.split_sizes[split]:
        problems.append(f"{where}: {len(train)} train / {len(test)} test videos, expected "
                        f"{expected.split_sizes[split][0]} / {expected.split_sizes[split][1]}")
    if expected.partition:
        listed = [os.path.realpath(p) for p, _ in train + test]
        repeated = [p for p, n in Counter(listed).items() if n > 1]
        unlisted = sorted(every - set(listed))
        if repeated:
            problems.append(f"{where}: {len(repeated)} videos listed more than once, e.g. "
                            f"{repeated[0]}")
        if unlisted:
            problems.append(f"{where}: {len(unlisted)} videos on disk are in neither list, e.g. "
                            f"{unlisted[0]}")
    if expected.per_class is not None:
        per_train, per_test = Counter(y for _, y in train), Counter(y for _, y in test)
        odd = [classes[c] for c in range(len(classes))
               if (per_train[c], per_test[c]) != expected.per_class]
        if odd:
            problems.append(f"{where}: {len(odd)} classes do not have {expected.per_class[0]} "
                            f"train / {expected.per_class[1]} test videos, e.g. {odd[0]}")
    return problems


def parse_split_sizes(parser: argparse.ArgumentParser, values: list[str]) -> dict:
    """{split: (train, test)} from "SPLIT:TRAIN,TEST" strings."""
    sizes = {}
    for value in values:
        try:
            split, counts = value.split(":")
            train, test = counts.split(",")
            sizes[int(split)] = (int(train), int(test))
        except ValueError:
            parser.error(f"--expect-split-size {value!r}: expected SPLIT:TRAIN,TEST, "
                         "e.g. 1:9537,3783")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=sorted(OFFICIAL))
    parser.add_argument("--root", required=True, help="dataset root (as --data-root takes it)")
    parser.add_argument("--expect-videos", type=int, help="replace the official video count")
    parser.add_argument("--expect-classes", type=int, help="replace the official class count")
    parser.add_argument("--expect-split-size", action="append", default=[],
                        metavar="SPLIT:TRAIN,TEST", help="replace the official sizes of a split "
                        "(repeatable); any --expect-* option drops the official per-split and "
                        "per-class sizes")
    args = parser.parse_args(argv)
    expected = OFFICIAL[args.dataset]
    if args.expect_videos or args.expect_classes or args.expect_split_size:
        expected = Expected(args.expect_videos or expected.videos,
                            args.expect_classes or expected.classes,
                            parse_split_sizes(parser, args.expect_split_size),
                            partition=expected.partition)
    try:
        problems = check_counts(args.dataset, args.root, expected)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if problems:
        print("MISMATCH with the official counts:\n  " + "\n  ".join(problems))
        return 1
    print("counts OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
