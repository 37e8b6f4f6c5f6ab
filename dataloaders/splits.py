"""Dataset layouts and official split files (spec section 8), behind one registry.

Readers return (videos, class_names): videos is a list of (path relative to the dataset's video
folder, 0-based class index) in the order of the official files; build_video_list() joins the paths
with the video folder and checks that the files exist. Every layout or split problem raises
DatasetError naming the file (and line) and what to do.

Accepted layouts:
* ucf101 (also "synthetic"): ROOT/UCF-101/<Class>/<video>.avi and ROOT/ucfTrainTestlist/ with
  classInd.txt ("<1-based index> <Class>"), trainlist0{1,2,3}.txt ("<Class>/<file> <1-based index>")
  and testlist0{1,2,3}.txt ("<Class>/<file>").
* hmdb51: ROOT/<class>/<video>.avi and ROOT/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt
  ("<file> <id>", id 1 = train, 2 = test, 0 = unused). Classes are sorted by name.
* kinetics400: (a) the official CSV lists ROOT/<subset>.csv or ROOT/annotations/<subset>.csv with
  the columns label, youtube_id, time_start, time_end (split and is_cc optional), the videos named
  <youtube_id>_<time_start:06d>_<time_end:06d>.<mp4|mkv|webm|avi> under ROOT/<subset>/<label>/ (the
  label as written or with spaces replaced by underscores) or directly under ROOT/<subset>/; entries
  whose video is absent are dropped with a logged count (YouTube removals are normal for Kinetics).
  (b) Without a CSV: a folder per class, ROOT/<subset>/<class>/ or ROOT/<class>/. Class indices
  follow the sorted class names of the train list. "val" and "validate" name the same subset.
* folder: ROOT/<class>/<video files>; classes sorted by name; subset "all", or a deterministic
  per-class 70/30 "train"/"test" split seeded by the split number.
"""
from __future__ import annotations

import csv
import logging
import os

import numpy as np

from user_errors import UserError

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v")
SUBSETS = ("train", "test")
_LOG = logging.getLogger(__name__)


class DatasetError(UserError):
    """A dataset layout, split file or video list problem (the message names file and line)."""


def _require_dir(path: str, what: str, hint: str) -> None:
    if not os.path.isdir(path):
        raise DatasetError(f"{what} {path} does not exist. {hint}")


def _require_file(path: str, hint: str) -> None:
    if not os.path.isfile(path):
        raise DatasetError(f"split file {path} does not exist. {hint}")


def _lines(path: str):
    """(line number, stripped text) of the non-empty lines of a text file.

    Raises:
        DatasetError: the file cannot be read (permission) or is not UTF-8 text.
    """
    try:
        with open(path, encoding="utf-8-sig") as handle:
            lines = handle.readlines()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"split file {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x}"
                           f" at offset {exc.start}); restore the original file") from None
    except OSError as exc:
        raise DatasetError(f"cannot read split file {path}: {_os_reason(exc)}") from None
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if text:
            yield number, text


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied; fix its permissions (chmod a+r, or a+rx for a folder)"
    return exc.strerror or str(exc)


def _listdir(folder: str) -> list[str]:
    """os.listdir, with an unreadable folder as a DatasetError naming it."""
    try:
        return os.listdir(folder)
    except OSError as exc:
        raise DatasetError(f"cannot read folder {folder}: {_os_reason(exc)}") from None


def _split_entry(entry: str, path: str, number: int, class_dir: str | None = None) -> str:
    """A split entry as a normalised path below the video folder (as ``os.path.normpath`` would
    have it, but refusing what leaves the class folder or root on the way), so that
    ``./Class/x.avi`` and ``Class/x.avi`` name one video for labelling, overlap and duplicate checks.

    Args:
        entry: the entry as written ("<Class>/<file>" for UCF101, "<file>" for HMDB51).
        path, number: the split file and line, for messages.
        class_dir: the class folder the entry lives in when the entry does not name it (HMDB51).
    Returns:
        "<class folder>/<...>/<file>" with no ".", ".." or empty parts.
    Raises:
        DatasetError: an absolute entry, or one whose ".." leaves its class folder or the dataset
            root (``Shrink/../Expand/x.avi`` would be labelled Shrink but read from Expand).
    """
    if entry.startswith(("/", "\\")) or os.path.isabs(entry):
        raise DatasetError(f"{path}:{number}: entry {entry!r} is an absolute path; split entries "
                           "are relative to the dataset's video folder ('<Class>/<file>')")
    parts = [class_dir] if class_dir is not None else []
    for part in entry.split("/"):
        if part in ("", "."):
            continue
        if part != "..":
            parts.append(part)
        elif len(parts) > 1:
            parts.pop()
        else:
            where = "the dataset root" if not parts else f"its class folder {parts[0]!r}"
            raise DatasetError(f"{path}:{number}: entry {entry!r} leaves {where} with '..'; "
                               "write the video's own path '<Class>/<file>' in the split file")
    if len(parts) < 2:
        raise DatasetError(f"{path}:{number}: entry {entry!r} names no file inside a class "
                           "folder; expected '<Class>/<file>'")
    return "/".join(parts)


def _check_split(split: int, subset: str, subsets=SUBSETS) -> None:
    if split not in (1, 2, 3):
        raise DatasetError(f"split must be 1, 2 or 3, got {split!r}")
    if subset not in subsets:
        raise DatasetError(f"subset must be one of {subsets}, got {subset!r}")


# --------------------------------------------------------------------------------------------- UCF101
UCF_HINT = ("Expected ROOT/UCF-101/<Class>/*.avi and ROOT/ucfTrainTestlist/*.txt: download UCF101 and "
            "its train/test split archive and run scripts/prepare_ucf101.sh ROOT.")


def _ucf_classes(list_dir: str) -> list[str]:
    path = os.path.join(list_dir, "classInd.txt")
    _require_file(path, UCF_HINT)
    classes: list[str] = []
    for number, text in _lines(path):
        fields = text.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise DatasetError(f"{path}:{number}: expected '<index> <Class>', got {text!r}")
        if int(fields[0]) != len(classes) + 1:
            raise DatasetError(f"{path}:{number}: class index {fields[0]} out of order "
                               f"(expected {len(classes) + 1})")
        classes.append(fields[1])
    if not classes:
        raise DatasetError(f"{path} lists no classes")
    return classes


def _ucf_class_index(name: str, lookup: dict[str, int], path: str, number: int) -> int:
    if name in lookup:
        return lookup[name]
    folded = {key.lower(): value for key, value in lookup.items()}
    if name.lower() in folded:  # tolerate case differences (HandStandPushups vs HandstandPushups)
        return folded[name.lower()]
    raise DatasetError(f"{path}:{number}: unknown class {name!r} (not in classInd.txt)")


def ucf101_split(root: str, split: int = 1, subset: str = "train") -> tuple[list, list[str]]:
    """UCF101 split `split` (1-3), subset "train" or "test".

    Returns:
        ([(relative path "<Class>/<file>.avi", 0-based label)], class names in classInd order).
    Raises:
        DatasetError: missing root or split file, malformed line, unknown class, label mismatch.
    """
    _check_split(split, subset)
    _require_dir(root, "UCF101 root", UCF_HINT)
    list_dir = os.path.join(root, "ucfTrainTestlist")
    _require_dir(list_dir, "UCF101 split folder", UCF_HINT)
    classes = _ucf_classes(list_dir)
    lookup = {name: index for index, name in enumerate(classes)}
    path = os.path.join(list_dir, f"{subset}list0{split}.txt")
    _require_file(path, UCF_HINT)
    videos = []
    for number, text in _lines(path):
        fields = text.split()
        expected = 2 if subset == "train" else 1
        if len(fields) != expected or "/" not in fields[0]:
            form = "'<Class>/<file>.avi <index>'" if subset == "train" else "'<Class>/<file>.avi'"
            raise DatasetError(f"{path}:{number}: expected {form}, got {text!r}")
        entry = _split_entry(fields[0], path, number)
        label = _ucf_class_index(entry.split("/")[0], lookup, path, number)
        if subset == "train":
            if not fields[1].isdigit():
                raise DatasetError(f"{path}:{number}: class index {fields[1]!r} is not a number")
            if int(fields[1]) != label + 1:
                raise DatasetError(f"{path}:{number}: class index {fields[1]} disagrees with "
                                   f"classInd.txt ({classes[label]} is {label + 1})")
        videos.append((entry, label))
    return videos, classes


# --------------------------------------------------------------------------------------------- HMDB51
HMDB_HINT = ("Expected ROOT/<class>/*.avi and ROOT/testTrainMulti_7030_splits/<class>_test_split"
             "{1,2,3}.txt: unpack HMDB51 and its three-splits archive into ROOT.")
_HMDB_IDS = {"train": "1", "test": "2"}


def hmdb51_split(root: str, split: int = 1, subset: str = "train") -> tuple[list, list[str]]:
    """HMDB51 split `split` (1-3), subset "train" (id 1) or "test" (id 2).

    Returns:
        ([(relative path "<class>/<file>.avi", 0-based label)], sorted class names).
    Raises:
        DatasetError: missing root, split folder or files, malformed line, unknown id.
    """
    _check_split(split, subset)
    _require_dir(root, "HMDB51 root", HMDB_HINT)
    list_dir = os.path.join(root, "testTrainMulti_7030_splits")
    _require_dir(list_dir, "HMDB51 split folder", HMDB_HINT)
    suffix = f"_test_split{split}.txt"
    classes = sorted(name[: -len(suffix)] for name in _listdir(list_dir) if name.endswith(suffix))
    if not classes:
        raise DatasetError(f"{list_dir} has no *{suffix} files. {HMDB_HINT}")
    videos = []
    for label, name in enumerate(classes):
        path = os.path.join(list_dir, name + suffix)
        for number, text in _lines(path):
            fields = text.split()
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise DatasetError(f"{path}:{number}: expected '<file>.avi <0|1|2>', got {text!r}")
            entry = _split_entry(fields[0], path, number, class_dir=name)
            if fields[1] == _HMDB_IDS[subset]:
                videos.append((entry, label))
    return videos, classes


# ------------------------------------------------------------------------------------------ Kinetics
KINETICS_HINT = ("Expected ROOT/<subset>/<class>/<video> folders, or the official CSV lists "
                 "(ROOT/<subset>.csv or ROOT/annotations/<subset>.csv) with the videos under "
                 "ROOT/<subset>/.")
_KINETICS_ALIASES = {"train": ("train",), "val": ("val", "validate"), "validate": ("val", "validate"),
                     "test": ("test",)}


def _first_existing(paths) -> str | None:
    return next((path for path in paths if os.path.exists(path)), None)


def _video_files(folder: str) -> list[str]:
    return sorted(name for name in _listdir(folder)
                  if name.lower().endswith(VIDEO_EXTENSIONS) and not name.startswith("."))


def _kinetics_csv(root: str, csv_path: str, video_dir: str, classes: list[str] | None):
    """Rows of an official Kinetics CSV resolved to existing files."""
    reader = csv.DictReader(_csv_text(csv_path))
    needed = {"label", "youtube_id", "time_start", "time_end"}
    if reader.fieldnames is None or not needed <= set(reader.fieldnames):
        raise DatasetError(f"{csv_path}:1: header must contain {sorted(needed)}, got "
                           f"{reader.fieldnames}")
    rows = list(enumerate(reader, start=2))
    labels = sorted({row["label"] for _, row in rows})
    classes = classes or labels
    lookup = {name: index for index, name in enumerate(classes)}
    listing: dict[str, dict[str, str]] = {}  # folder -> {stem: file name}

    def stems(folder: str) -> dict[str, str]:
        if folder not in listing:
            names = _video_files(folder) if os.path.isdir(folder) else []
            listing[folder] = {os.path.splitext(name)[0]: name for name in names}
        return listing[folder]

    videos, missing = [], 0
    for number, row in rows:
        try:
            stem = f"{row['youtube_id']}_{int(row['time_start']):06d}_{int(row['time_end']):06d}"
        except (TypeError, ValueError):
            raise DatasetError(f"{csv_path}:{number}: malformed row {row}") from None
        if row["label"] not in lookup:
            raise DatasetError(f"{csv_path}:{number}: unknown class {row['label']!r}")
        found = None
        for sub in (row["label"], row["label"].replace(" ", "_"), ""):
            name = stems(os.path.join(video_dir, sub)).get(stem)
            if name is not None:
                found = os.path.relpath(os.path.join(video_dir, sub, name), root)
                break
        if found is None:
            missing += 1
            continue
        videos.append((found, lookup[row["label"]]))
    if missing:
        _LOG.warning("%s: %d of %d listed videos are absent under %s and were dropped",
                     csv_path, missing, len(rows), video_dir)
    return videos, classes


def _class_folders(folder: str) -> list[str]:
    return sorted(name for name in _listdir(folder)
                  if os.path.isdir(os.path.join(folder, name)) and not name.startswith("."))


def kinetics400_split(root: str, split: int = 1, subset: str = "train") -> tuple[list, list[str]]:
    """Kinetics-400 (pretraining): official CSV or class folders (see the module docstring).

    `split` must be 1 (Kinetics has one official split). Returns paths relative to ROOT.
    """
    if split != 1:
        raise DatasetError(f"Kinetics-400 has one split; got split={split}")
    if subset not in _KINETICS_ALIASES:
        raise DatasetError(f"subset must be one of {sorted(_KINETICS_ALIASES)}, got {subset!r}")
    _require_dir(root, "Kinetics-400 root", KINETICS_HINT)
    names = _KINETICS_ALIASES[subset]
    csv_path = _first_existing([os.path.join(root, d, f"{n}.csv") for n in names
                                for d in ("", "annotations")])
    video_dir = _first_existing([os.path.join(root, n) for n in names])
    if csv_path is not None:
        if video_dir is None:
            raise DatasetError(f"{csv_path} found but no video folder {os.path.join(root, names[0])}. "
                               f"{KINETICS_HINT}")
        train_csv = _first_existing([os.path.join(root, d, "train.csv") for d in ("", "annotations")])
        classes = None
        if train_csv is not None and train_csv != csv_path:
            classes = _kinetics_csv_classes(train_csv)
        return _kinetics_csv(root, csv_path, video_dir, classes)
    folder = video_dir or root
    classes = _class_folders(folder)
    if not classes:
        raise DatasetError(f"no class folders in {folder}. {KINETICS_HINT}")
    videos = [(os.path.relpath(os.path.join(folder, name, file), root), label)
              for label, name in enumerate(classes) for file in _video_files(os.path.join(folder, name))]
    return videos, classes


def _kinetics_csv_classes(csv_path: str) -> list[str]:
    reader = csv.DictReader(_csv_text(csv_path))
    if reader.fieldnames is None or "label" not in reader.fieldnames:
        raise DatasetError(f"{csv_path}:1: header has no 'label' column")
    return sorted({row["label"] for row in reader})


def _csv_text(csv_path: str) -> list[str]:
    """The lines of a CSV list (for csv.DictReader); an unreadable file is a DatasetError."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            return handle.readlines()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{csv_path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                           f"at offset {exc.start}); restore the original file") from None
    except OSError as exc:
        raise DatasetError(f"cannot read {csv_path}: {_os_reason(exc)}") from None


# ---------------------------------------------------------------------------------------- folders
FOLDER_TEST_FRACTION = 0.3


def folder_split(root: str, split: int = 1, subset: str = "all",
                 test_fraction: float = FOLDER_TEST_FRACTION) -> tuple[list, list[str]]:
    """A folder of class folders: every video ("all") or a seeded per-class train/test split.

    Within each class the sorted files are permuted with numpy's default_rng(split); the first
    round(test_fraction * n) are "test", the rest "train".
    """
    if subset not in ("all", "train", "test"):
        raise DatasetError(f"subset must be 'all', 'train' or 'test', got {subset!r}")
    _require_dir(root, "dataset root", "Expected ROOT/<class>/<video files>.")
    classes = _class_folders(root)
    if not classes:
        raise DatasetError(f"no class folders in {root}: expected ROOT/<class>/<video files>")
    videos = []
    for label, name in enumerate(classes):
        files = _video_files(os.path.join(root, name))
        if subset != "all":
            order = np.random.default_rng(split).permutation(len(files))
            cut = int(round(test_fraction * len(files)))
            chosen = sorted(order[:cut] if subset == "test" else order[cut:])
            files = [files[i] for i in chosen]
        videos.extend((f"{name}/{file}", label) for file in files)
    return videos, classes


# ---------------------------------------------------------------------------------------- registry
def _synthetic_split(root: str, split: int = 1, subset: str = "train"):
    """The synthetic dataset: UCF101 layout, or HMDB51 layout when generated with --layout hmdb51."""
    if os.path.isdir(os.path.join(root, "testTrainMulti_7030_splits")):
        return hmdb51_split(root, split, subset)
    return ucf101_split(root, split, subset)


def _synthetic_video_dir(root: str) -> str:
    ucf = os.path.join(root, "UCF-101")
    return ucf if os.path.isdir(ucf) else root


# name -> (reader(root, split, subset), video folder(root))
DATASETS = {
    "ucf101": (ucf101_split, lambda root: os.path.join(root, "UCF-101")),
    "hmdb51": (hmdb51_split, lambda root: root),
    "kinetics400": (kinetics400_split, lambda root: root),
    "folder": (folder_split, lambda root: root),
    "synthetic": (_synthetic_split, _synthetic_video_dir),
}


def build_video_list(dataset: str, root: str, split: int = 1, subset: str = "train",
                     check_files: bool = True) -> tuple[list[tuple[str, int]], list[str]]:
    """The videos of a dataset split as absolute paths.

    Args:
        dataset: a DATASETS name.
        root: the dataset root (see the module docstring for each layout).
        split, subset: as the dataset's reader takes them.
        check_files: raise DatasetError when listed files are absent (the list of the first ones and
            the count); False leaves that to the datasets' bad-video policy.
    Returns:
        ([(absolute path, 0-based label)], class names).
    """
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; known: {sorted(DATASETS)}")
    reader, video_dir = DATASETS[dataset]
    relative, classes = reader(os.path.abspath(root), split, subset)
    base = video_dir(os.path.abspath(root))
    listings: dict[str, list[str]] = {}
    videos = [(_resolve_case(base, path, listings), label) for path, label in relative]
    if check_files:
        missing = [path for path, _ in videos if not os.path.isfile(path)]
        if missing:
            shown = "\n  ".join(_why_missing(p, listings) for p in missing[:10])
            folders = sorted({os.path.dirname(p) for p in missing if not os.path.isdir(os.path.dirname(p))})
            gone = (f"{len(folders)} folder(s) are missing entirely: {', '.join(folders[:5])}\n"
                    if folders else "")
            raise DatasetError(f"{len(missing)} of {len(videos)} videos of {dataset} split {split} "
                               f"{subset} are missing under {base}, e.g.:\n  {shown}\n{gone}Run python -m "
                               f"dataloaders.check --dataset {dataset} --root {root} --split {split} "
                               "for the full report.")
    return videos, classes


def _listing(folder: str, listings: dict[str, list[str]]) -> list[str]:
    if folder not in listings:
        listings[folder] = sorted(_listdir(folder)) if os.path.isdir(folder) else []
    return listings[folder]


def _resolve_case(base: str, relative: str, listings: dict[str, list[str]]) -> str:
    """``base/relative``; when that is absent, with each folder and file name matched to the one
    entry on disk that differs only in letter case (the real UCF101 spells HandstandPushups and
    HandStandPushups both ways; class names already match case-insensitively)."""
    exact = os.path.join(base, relative)
    if os.path.exists(exact):
        return exact
    current = base
    for part in relative.split("/"):
        candidate = os.path.join(current, part)
        if not os.path.exists(candidate):
            folded = [n for n in _listing(current, listings) if n.lower() == part.lower()]
            if len(folded) != 1:
                return exact
            candidate = os.path.join(current, folded[0])
        current = candidate
    return current


def _why_missing(path: str, listings: dict[str, list[str]]) -> str:
    """A missing entry with what is there instead: a folder of that name, or the nearest names."""
    import difflib
    if os.path.isdir(path):
        return f"{path} (a directory, not a video file)"
    if os.path.islink(path):
        return f"{path} (a dangling symlink to {os.readlink(path)}, which does not exist)"
    folder, name = os.path.split(path)
    if not os.path.isdir(folder):
        parent, wanted = os.path.split(folder)
        close = difflib.get_close_matches(wanted, _listing(parent, listings), n=2, cutoff=0.6)
        return path + (f" (no folder {wanted}; near match on disk: {', '.join(close)})"
                       if close else "")
    names = _listing(folder, listings)
    stem = os.path.splitext(name)[0].lower()
    # a renamed copy ("v_x (1).avi", "v_x.avi.part") first, then names that look alike
    close = [n for n in names if n.lower().startswith(stem)][:2] or difflib.get_close_matches(
        name, names, n=2, cutoff=0.6)
    return path + (f" (near match on disk: {', '.join(close)})" if close else "")


def require_classes(train: list, test: list, what: str) -> None:
    """Refuse an evaluation on fewer than two classes: every prediction is then right (100%).

    Args:
        train, test: [(path, label)] of the train (gallery) and test (query) lists.
        what: names the split in the message.
    Raises:
        DatasetError: the train or the test list holds videos of fewer than two classes.
    """
    for name, videos in (("train", train), ("test", test)):
        labels = sorted({int(label) for _, label in videos})
        if len(labels) < 2:
            held = f"only class {labels[0]}" if labels else "no video"
            raise DatasetError(f"{what}: the {name} list holds {held}; an evaluation needs at "
                               "least two classes (with one, every prediction is right and the "
                               "result reads 100%). Add classes to the split files")


def check_split_lists(train: list, test: list, what: str) -> list[str]:
    """Refuse a video listed in both the train and the test list; describe duplicate lines.

    Args:
        train, test: [(absolute path, label)] as build_video_list returns them.
        what: names the split in messages (e.g. "ucf101 split 1 under ROOT").
    Returns:
        One warning per list with a video listed more than once (each copy is used as listed).
    Raises:
        DatasetError: a video is in both lists (an evaluation on it measures memorisation).
    """
    from collections import Counter
    # the readers already normalise their entries; a list built elsewhere may not have
    train = [(os.path.normpath(p), y) for p, y in train]
    test = [(os.path.normpath(p), y) for p, y in test]
    both = sorted({p for p, _ in train} & {p for p, _ in test})
    if both:
        raise DatasetError(f"{what}: {len(both)} videos are listed in both the train and the test "
                           f"list, e.g. {', '.join(both[:3])}; a test video seen in training "
                           "inflates every result. Fix the split files")
    notes = []
    for name, videos in (("train", train), ("test", test)):
        counts = Counter(p for p, _ in videos)
        repeated = [(p, c) for p, c in counts.items() if c > 1]
        if repeated:
            notes.append(f"{what}: the {name} list names {len(repeated)} videos more than once "
                         f"(e.g. {repeated[0][0]} {repeated[0][1]} times); each copy is used as "
                         "a separate video")
    return notes
