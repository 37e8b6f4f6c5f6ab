"""The synthetic dataset's on-disk layout: UCF-style groups, split roles, paths and split files.

UCF101 layout: out/UCF-101/<Class>/v_<Class>_gXX_cYY.avi and out/ucfTrainTestlist/*.txt; HMDB51
layout: out/<class>/<file>.avi and out/testTrainMulti_7030_splits/*.txt, both in the official
split-file formats (TCLR_SPEC section 8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from atomic_io import write_text
from dataloaders.synthetic.designs import (DEFAULT_DESIGN, SyntheticDatasetError, get_design,
                                           hmdb_class_name)

UCF_EOL = "\r\n"  # the official ucfTrainTestlist files end lines with CRLF
HMDB_EOL = " \n"  # the official HMDB51 split files end lines with a space, then LF
LAYOUTS = ("ucf101", "hmdb51")
SPLIT_FOLDERS = {"ucf101": "ucfTrainTestlist", "hmdb51": "testTrainMulti_7030_splits"}
NUM_SPLITS = 3
MIN_VIDEOS_PER_CLASS = 4  # three disjoint test groups plus one group that is always in train
UCF_TEST_GROUP_FRACTION = 7 / 25  # official UCF101: groups 1-7, 8-14, 15-21 of 25 are the test sets
HMDB_TEST_FRACTION = 0.3  # official HMDB51: 70 train / 30 test videos per class


# --------------------------------------------------------------------------------------------------
# Groups and splits.


def group_layout(videos_per_class: int) -> list[int]:
    """Clips per UCF-style group (len = number of groups), like UCF101's 25 groups of 4-7 clips.

    The number of groups G is chosen so that a test band of n = round(7/25 * G) groups (official:
    7 of 25) leaves train groups after three disjoint bands (3n < G), with at least 3 clips per group
    where possible, and n/G as close to 7/25 as possible.
    """
    if videos_per_class < MIN_VIDEOS_PER_CLASS:
        raise SyntheticDatasetError(
            f"videos_per_class={videos_per_class}: need at least {MIN_VIDEOS_PER_CLASS} so that each of "
            f"the {NUM_SPLITS} splits has train and test videos of every class")
    best = None
    for groups in range(MIN_VIDEOS_PER_CLASS, min(25, videos_per_class) + 1):
        if groups > MIN_VIDEOS_PER_CLASS and videos_per_class / groups < 3:
            break
        band = _test_band(groups)
        score = (abs(band / groups - UCF_TEST_GROUP_FRACTION), groups)
        best = score if best is None or score < best else best
    groups = best[1]
    base, extra = divmod(videos_per_class, groups)
    return [base + (1 if g < extra else 0) for g in range(groups)]


def _test_band(groups: int) -> int:
    """Groups per test band: about 7/25 of them, leaving at least one train group."""
    return max(1, min(round(groups * UCF_TEST_GROUP_FRACTION), (groups - 1) // NUM_SPLITS))


def ucf_roles(group: int, groups: int) -> dict[int, str]:
    """'train' or 'test' of a 1-based group for splits 1..3 (split k tests band k of groups)."""
    band = _test_band(groups)
    return {k: "test" if (k - 1) * band < group <= k * band else "train" for k in range(1, NUM_SPLITS + 1)}


def hmdb_roles(rng: np.random.Generator, num_videos: int) -> list[dict[int, str]]:
    """Per video, 'train'/'test'/'unused' for splits 1..3: disjoint ~30 % test sets, 10 % unused."""
    order = rng.permutation(num_videos)
    unused = num_videos // 10
    test = max(1, round(HMDB_TEST_FRACTION * (num_videos - unused)))
    roles = [dict() for _ in range(num_videos)]
    for k in range(1, NUM_SPLITS + 1):
        start = (k - 1) * test
        for offset in range(num_videos):
            video = int(order[(start + offset) % num_videos])
            roles[video][k] = "test" if offset < test else "unused" if offset < test + unused else "train"
    return roles


@dataclass
class VideoEntry:
    """One video of the dataset as the manifest records it."""

    path: str  # relative to the dataset root
    class_name: str  # as the layout spells it: 'BlinkFast' (UCF101) or 'blink_fast' (HMDB51)
    kind: str  # TEMPORAL_CLASSES name that rendered it
    label: int  # 0-based, alphabetical order of class_name (classInd.txt holds label + 1)
    group: int
    clip: int
    roles: dict[int, str] = field(default_factory=dict)  # split -> train | test | unused


def _video_path(layout: str, class_name: str, group: int, clip: int) -> str:
    if layout == "ucf101":
        return f"UCF-101/{class_name}/v_{class_name}_g{group:02d}_c{clip:02d}.avi"
    return f"{class_name}/{class_name}_g{group:02d}_c{clip:02d}.avi"


def plan_videos(kinds: Sequence[str], videos_per_class: int, layout: str, seed: int,
                design: str = DEFAULT_DESIGN) -> list[VideoEntry]:
    """All videos of the dataset with relative paths, labels and split roles (no I/O).

    Args:
        kinds: class names of the design to include.
        videos_per_class, layout, seed, design: as in `generate`.
    """
    shown = {k: k if layout == "ucf101" else hmdb_class_name(k) for k in kinds}
    labels = {name: i for i, name in enumerate(sorted(shown.values()))}
    sizes = group_layout(videos_per_class)
    entries = []
    for kind in kinds:
        name = shown[kind]
        per_class = [VideoEntry(_video_path(layout, name, group, clip), name, kind, labels[name], group, clip,
                                ucf_roles(group, len(sizes)) if layout == "ucf101" else {})
                     for group, clips in enumerate(sizes, start=1) for clip in range(1, clips + 1)]
        if layout == "hmdb51":
            rng = np.random.default_rng([seed, 4, get_design(design).index(kind)])
            for entry, roles in zip(per_class, hmdb_roles(rng, len(per_class))):
                entry.roles = roles
        entries.extend(per_class)
    return entries


def _write_text(path: Path, lines: Sequence[str], eol: str) -> None:
    # bytes, so the line ends are exactly as given
    write_text(path, "".join(line + eol for line in lines), "split file", encoding="ascii")


def write_split_files(root: Path, entries: Sequence[VideoEntry], layout: str) -> None:
    """Write the split files in the official formats (TCLR_SPEC section 8) under `root`."""
    rows = sorted(entries, key=lambda e: e.path)
    if layout == "ucf101":
        folder = root / SPLIT_FOLDERS["ucf101"]
        folder.mkdir(parents=True, exist_ok=True)
        names = sorted({e.class_name for e in rows})
        _write_text(folder / "classInd.txt", [f"{i} {n}" for i, n in enumerate(names, start=1)], UCF_EOL)
        in_list = [e.path.removeprefix("UCF-101/") for e in rows]  # "<Class>/<file>.avi"
        for k in range(1, NUM_SPLITS + 1):
            train = [f"{p} {e.label + 1}" for p, e in zip(in_list, rows) if e.roles[k] == "train"]
            _write_text(folder / f"trainlist0{k}.txt", train, UCF_EOL)
            test = [p for p, e in zip(in_list, rows) if e.roles[k] == "test"]
            _write_text(folder / f"testlist0{k}.txt", test, UCF_EOL)
        return
    folder = root / SPLIT_FOLDERS["hmdb51"]
    folder.mkdir(parents=True, exist_ok=True)
    ids = {"unused": 0, "train": 1, "test": 2}
    for name in sorted({e.class_name for e in rows}):
        for k in range(1, NUM_SPLITS + 1):
            _write_text(folder / f"{name}_test_split{k}.txt",
                        [f"{Path(e.path).name} {ids[e.roles[k]]}" for e in rows if e.class_name == name],
                        HMDB_EOL)
