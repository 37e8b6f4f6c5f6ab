"""Tests of the synthetic dataset generator (the dataloaders/synthetic package).

The split files are read with a tiny parser written here from the official formats (TCLR_SPEC
section 8), independent of dataloaders.splits.
"""

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dataloaders import synthetic
from dataloaders.synthetic import SyntheticDatasetError, generate, main

TINY = dict(classes=5, videos_per_class=4, frames=24, width=64, height=48, seed=0, progress=False)
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------
# A small reader of the official formats.


def read_lines(path: Path, eol: str) -> list[str]:
    """Lines of a split file, checking that every line ends with `eol`."""
    text = path.read_bytes().decode("ascii")
    assert text.endswith(eol), f"{path} does not end with {eol!r}"
    lines = text.split(eol)[:-1]
    assert all("\n" not in line and "\r" not in line for line in lines), f"{path}: mixed line ends"
    return lines


def parse_ucf(root: Path) -> tuple[list[str], dict[int, dict[str, list[tuple[str, int]]]]]:
    """(class names in classInd order, {split: {"train"/"test": [(rel path, 0-based label)]}})."""
    lists = root / "ucfTrainTestlist"
    names = []
    for number, line in enumerate(read_lines(lists / "classInd.txt", "\r\n"), start=1):
        index, name = line.split(" ")
        assert int(index) == number and re.fullmatch(r"[A-Z][A-Za-z]+", name), line
        names.append(name)
    splits = {}
    for k in (1, 2, 3):
        train = []
        for line in read_lines(lists / f"trainlist0{k}.txt", "\r\n"):
            match = re.fullmatch(r"([A-Za-z]+)/v_\1_g\d\d_c\d\d\.avi (\d+)", line)
            assert match, f"trainlist0{k}: bad line {line!r}"
            assert names[int(match.group(2)) - 1] == match.group(1), line
            train.append((line.split(" ")[0], int(match.group(2)) - 1))
        test = []
        for line in read_lines(lists / f"testlist0{k}.txt", "\r\n"):
            match = re.fullmatch(r"([A-Za-z]+)/v_\1_g\d\d_c\d\d\.avi", line)
            assert match, f"testlist0{k}: bad line {line!r}"
            test.append((line, names.index(line.split("/")[0])))
        splits[k] = {"train": train, "test": test}
    return names, splits


def decode(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    frames = []
    ok, frame = capture.read()
    while ok:
        frames.append(frame)
        ok, frame = capture.read()
    capture.release()
    return np.stack(frames)


@pytest.fixture(scope="module")
def ucf_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ucf")
    generate(root, **TINY)
    return root


# ---------------------------------------------------------------------------------------------------
# Layout, files and splits.


def test_videos_decode_with_requested_frame_count_and_size(ucf_root):
    videos = sorted((ucf_root / "UCF-101").glob("*/*.avi"))
    assert len(videos) == TINY["classes"] * TINY["videos_per_class"]
    for path in videos:
        frames = decode(path)
        assert frames.shape == (TINY["frames"], TINY["height"], TINY["width"], 3), path
        assert frames.std() > 1.0, f"{path} decodes to a blank video"


def test_ucf_split_files_follow_official_formats(ucf_root):
    names, splits = parse_ucf(ucf_root)
    assert names == sorted(names) == sorted(c.name for c in synthetic.TEMPORAL_CLASSES[:TINY["classes"]])
    for k, split in splits.items():
        train, test = split["train"], split["test"]
        assert not {p for p, _ in train} & {p for p, _ in test}
        assert len(train) + len(test) == TINY["classes"] * TINY["videos_per_class"]
        for subset in (train, test):
            assert {label for _, label in subset} == set(range(len(names))), f"split {k}: class missing"
            for rel, label in subset:
                assert (ucf_root / "UCF-101" / rel).is_file(), rel
                assert rel.startswith(names[label] + "/")
        groups = lambda rows: {re.search(r"_(g\d\d)_", p).group(1) for p, _ in rows}  # noqa: E731
        assert not groups(train) & groups(test), f"split {k} is not group-wise"
    assert len({tuple(s["test"]) for s in splits.values()}) == 3, "the three splits must differ"


@pytest.mark.parametrize("videos, groups, test_band", [(4, 4, 1), (12, 4, 1), (30, 7, 2), (100, 25, 7)])
def test_groups_and_test_bands_like_ucf101(videos, groups, test_band):
    sizes = synthetic.group_layout(videos)
    assert len(sizes) == groups and sum(sizes) == videos and max(sizes) - min(sizes) <= 1
    roles = [synthetic.ucf_roles(g, groups) for g in range(1, groups + 1)]
    for k in (1, 2, 3):
        tested = [g for g, r in enumerate(roles, start=1) if r[k] == "test"]
        assert tested == list(range((k - 1) * test_band + 1, k * test_band + 1))


def test_official_ucf_bands_for_25_groups():
    roles = [synthetic.ucf_roles(g, 25) for g in range(1, 26)]
    assert [g for g, r in enumerate(roles, 1) if r[1] == "test"] == list(range(1, 8))
    assert [g for g, r in enumerate(roles, 1) if r[3] == "test"] == list(range(15, 22))
    assert all(r[k] == "train" for r in roles[21:] for k in (1, 2, 3))


def test_hmdb51_layout(tmp_path):
    summary = generate(tmp_path, **{**TINY, "videos_per_class": 10, "layout": "hmdb51"})
    splits_dir = tmp_path / "testTrainMulti_7030_splits"
    folders = sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and p != splits_dir)
    assert folders == sorted(summary.class_names) and all(re.fullmatch(r"[a-z_]+", f) for f in folders)
    for name in folders:
        for k in (1, 2, 3):
            path = splits_dir / f"{name}_test_split{k}.txt"
            ids = {}
            for line in read_lines(path, " \n"):
                file_name, video_id = line.split(" ")
                assert (tmp_path / name / file_name).is_file() and video_id in ("0", "1", "2"), line
                ids[file_name] = int(video_id)
            assert len(ids) == 10 and sorted(ids.values()).count(2) == 3 and 1 in ids.values(), ids
            assert list(ids.values()).count(0) == 1  # 10 % unused, as the official files have some


# ---------------------------------------------------------------------------------------------------
# Determinism and output-folder handling.


def test_deterministic_by_seed(ucf_root, tmp_path):
    again = tmp_path / "again"
    generate(again, **TINY)
    for path in (ucf_root / "ucfTrainTestlist").iterdir():
        assert path.read_bytes() == (again / "ucfTrainTestlist" / path.name).read_bytes(), path.name
    some = ["Expand/v_Expand_g01_c01.avi", "Shrink/v_Shrink_g04_c01.avi"]
    for rel in some:
        assert np.array_equal(decode(ucf_root / "UCF-101" / rel), decode(again / "UCF-101" / rel)), rel
    other = tmp_path / "other"
    generate(other, **{**TINY, "seed": 1})
    for rel in some:
        assert not np.array_equal(decode(ucf_root / "UCF-101" / rel), decode(other / "UCF-101" / rel))


def test_workers_give_the_same_videos(ucf_root, tmp_path):
    generate(tmp_path, **{**TINY, "classes": 2, "workers": 2})
    rel = "Shrink/v_Shrink_g02_c01.avi"
    assert np.array_equal(decode(ucf_root / "UCF-101" / rel), decode(tmp_path / "UCF-101" / rel))


def test_existing_dataset_is_skipped_and_others_are_protected(ucf_root, tmp_path):
    assert generate(ucf_root, **TINY).skipped
    with pytest.raises(SyntheticDatasetError, match="different synthetic dataset.*--overwrite"):
        generate(ucf_root, **{**TINY, "frames": 20})
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SyntheticDatasetError, match="not a synthetic dataset"):
        generate(tmp_path, **TINY)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_only_what_it_wrote(tmp_path):
    generate(tmp_path, **{**TINY, "classes": 3})
    (tmp_path / "keep.txt").write_text("user file")
    summary = generate(tmp_path, **{**TINY, "classes": 2, "frames": 20}, overwrite=True)
    assert not summary.skipped and summary.frames == 20
    assert sorted(p.name for p in (tmp_path / "UCF-101").iterdir()) == ["Expand", "Shrink"]
    assert (tmp_path / "keep.txt").read_text() == "user file"
    assert decode(next((tmp_path / "UCF-101" / "Expand").glob("*.avi"))).shape[0] == 20


@pytest.mark.parametrize("change, message", [
    ({"classes": synthetic.MAX_CLASSES + 1}, f"2 to {synthetic.MAX_CLASSES} classes"),
    ({"videos_per_class": 3}, "at least 4"),
    ({"width": 63}, "even"),
    ({"layout": "kinetics"}, "ucf101"),
])
def test_bad_arguments_are_named(tmp_path, change, message):
    with pytest.raises(SyntheticDatasetError, match=message):
        generate(tmp_path, **{**TINY, **change})


def test_class_registry():
    names = [c.name for c in synthetic.TEMPORAL_CLASSES]
    assert len(names) == len(set(names)) >= 10
    assert all(re.fullmatch(r"(?:[A-Z][a-z]+)+", n) for n in names)
    assert synthetic.hmdb_class_name("SwingVertical") == "swing_vertical"


# ---------------------------------------------------------------------------------------------------
# Command line.


def test_main_flags(tmp_path, capsys):
    argv = ["--out", str(tmp_path / "cli"), "--classes", "2", "--videos-per-class", "4", "--frames", "12",
            "--width", "32", "--height", "32", "--seed", "3", "--layout", "hmdb51", "--quiet"]
    assert main(argv) == 0
    assert "2 classes, 8 videos of 12 frames at 32x32" in capsys.readouterr().out
    assert decode(next((tmp_path / "cli" / "expand").glob("*.avi"))).shape == (12, 32, 32, 3)
    assert main(argv) == 0 and "already present, skipped" in capsys.readouterr().out
    assert main(argv[:2] + ["--classes", "99"]) == 2
    assert "error: classes=99" in capsys.readouterr().err


def test_module_runs_as_script(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dataloaders.synthetic", "--out", str(tmp_path / "s"), "--classes", "2",
         "--videos-per-class", "4", "--frames", "8", "--width", "32", "--height", "24", "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    names, splits = parse_ucf(tmp_path / "s")
    assert names == ["Expand", "Shrink"] and len(splits[1]["train"]) == 6


# ---------------------------------------------------------------------------------------------------
# Classes need time: single frames are at chance, clips are not (TCLR_SPEC section 11).


def test_single_frames_are_ambiguous_but_clips_are_not(tmp_path):
    generate(tmp_path, classes=6, videos_per_class=12, frames=48, width=64, height=48, seed=0,
             progress=False)
    report = synthetic.separability_check(tmp_path, samples_per_video=3, seed=0)
    assert report.chance == pytest.approx(1 / 6) and report.test_videos == 18
    assert report.frame_accuracy < report.chance + 0.15, report
    assert report.clip_accuracy > max(0.45, report.frame_accuracy + 0.3), report


@pytest.mark.slow
def test_separability_all_classes(tmp_path):
    generate(tmp_path, classes=synthetic.MAX_CLASSES, videos_per_class=40, frames=96, width=64,
             height=48, seed=0, progress=False, workers=2)
    report = synthetic.separability_check(tmp_path, seed=0)
    assert report.frame_accuracy < 2 * report.chance, report
    assert report.clip_accuracy > 0.6, report


# ---------------------------------------------------------------------------------------------------
# The "trajectory" design: one kind of look, classes that differ only in the square's path.

STAGE = synthetic.Stage(64, 48, 96)
ACTOR = synthetic.Actor((0.0, 64.0), 8.0)


def trajectory_track(name: str, seed: int):
    cls = next(c for c in synthetic.TRAJECTORY_CLASSES if c.name == name)
    return cls.make_track(np.random.default_rng(seed), ACTOR, STAGE)


def test_trajectory_class_set_and_its_limits():
    assert synthetic.class_names(6, "trajectory") == [
        "Static", "SwingHorizontal", "SwingVertical", "SwingDiagonal", "Circle", "Drift"]
    with pytest.raises(SyntheticDatasetError, match="'trajectory' synthetic design has 2 to 6 classes"):
        synthetic.class_names(7, "trajectory")
    with pytest.raises(SyntheticDatasetError, match="design='wavy': choose one of varied, trajectory"):
        synthetic.class_names(2, "wavy")


@pytest.mark.parametrize("seed", range(5))
def test_trajectory_paths(seed):
    # middle 30 % of a 64 x 48 frame: x in [22.4, 41.6], y in [16.8, 31.2]; amplitude 12-20 % of 48 px
    static = trajectory_track("Static", seed)
    assert np.ptp(static.x) == np.ptp(static.y) == 0.0
    assert 22.4 <= static.x[0] <= 41.6 and 16.8 <= static.y[0] <= 31.2
    swing = trajectory_track("SwingHorizontal", seed)
    assert np.ptp(swing.y) == 0.0 and 2 * 0.9 * 5.76 <= np.ptp(swing.x) <= 2 * 9.6 + 1e-9
    vertical = trajectory_track("SwingVertical", seed)
    assert np.ptp(vertical.x) == 0.0 and 2 * 0.9 * 5.76 <= np.ptp(vertical.y) <= 2 * 9.6 + 1e-9
    diagonal = trajectory_track("SwingDiagonal", seed)
    dx = diagonal.x - (diagonal.x.max() + diagonal.x.min()) / 2
    dy = diagonal.y - (diagonal.y.max() + diagonal.y.min()) / 2
    assert np.allclose(np.abs(dx), np.abs(dy))  # along one diagonal
    circle = trajectory_track("Circle", seed)
    middle = ((circle.x.max() + circle.x.min()) / 2, (circle.y.max() + circle.y.min()) / 2)
    radius = np.hypot(circle.x - middle[0], circle.y - middle[1])
    assert 5.76 * 0.95 <= radius.min() and radius.max() <= 9.6 * 1.05 and np.ptp(radius) < 0.05 * radius.mean()
    drift = trajectory_track("Drift", seed)
    assert drift.x.min() >= 12.8 and drift.x.max() <= 51.2 and drift.y.min() >= 9.6 and drift.y.max() <= 38.4
    steps = np.hypot(np.diff(drift.x), np.diff(drift.y))
    assert np.median(steps) == pytest.approx(np.max(steps)) and 1.15 <= np.max(steps) <= 1.92
    for track in (static, swing, circle, drift):  # no size, rotation or opacity change
        assert set(track.scale) == {1.0} and set(track.angle) == {0.0} and set(track.alpha) == {1.0}


def test_trajectory_videos_share_one_kind_of_look(tmp_path):
    generate(tmp_path, classes=6, videos_per_class=4, frames=24, width=64, height=48, seed=1,
             progress=False, design="trajectory")
    manifest = synthetic.read_manifest(tmp_path)
    assert manifest["arguments"]["design"] == "trajectory"
    for entry in manifest["videos"][::4]:
        video = decode(tmp_path / entry["path"]).astype(np.float64)  # [T, H, W, 3]
        assert np.ptp(video.mean(axis=(1, 2)), axis=1).max() < 4  # grey: the three channels agree
        first = video[0].mean(axis=-1)
        corner = np.median(first[:4, :4])  # the square never reaches a corner (middle of the frame)
        assert 75 <= corner <= 135  # background 80-130 before codec and noise
        assert np.percentile(first, 95) >= 180  # the square, 190-240, covers over 5 % of the frame
    with pytest.raises(SyntheticDatasetError, match="changed old -> new"):
        generate(tmp_path, classes=6, videos_per_class=4, frames=24, width=64, height=48, seed=1,
                 progress=False)  # the varied design is another dataset


# ---------------------------------------------------------------------------------------------------
# The "switch" design: two trajectory motions one after the other; the class is the pair.

def switch_track(name: str, seed: int):
    cls = next(c for c in synthetic.SWITCH_CLASSES if c.name == name)
    return cls.make_track(np.random.default_rng(seed), ACTOR, STAGE)


def test_switch_class_set_is_the_six_pairs_of_four_motions():
    assert synthetic.class_names(6, "switch") == [
        "HorizontalAndVertical", "HorizontalAndCircle", "HorizontalAndDrift", "VerticalAndCircle",
        "VerticalAndDrift", "CircleAndDrift"]
    with pytest.raises(SyntheticDatasetError, match="'switch' synthetic design has 2 to 6 classes"):
        synthetic.class_names(7, "switch")


@pytest.mark.parametrize("seed", range(8))
def test_switch_holds_both_motions_cut_in_the_middle_half(seed):
    track = switch_track("HorizontalAndVertical", seed)
    # horizontal part: y constant; vertical part: x constant; the cut lies in frames 24..72 of 96
    dx, dy = np.abs(np.diff(track.x)) > 0, np.abs(np.diff(track.y)) > 0
    horizontal, vertical = dx & ~dy, dy & ~dx
    assert horizontal.sum() >= 20 and vertical.sum() >= 20  # both motions, each over 24+ frames
    moving_x_first = horizontal[:20].all()
    first, second = (horizontal, vertical) if moving_x_first else (vertical, horizontal)
    cut = int(np.argmax(second))  # the cut frame: from it on, the second motion's track
    assert 24 <= cut <= 72 and not second[:cut].any() and not first[cut:].any()
    assert set(track.scale) == {1.0} and set(track.angle) == {0.0} and set(track.alpha) == {1.0}


def test_switch_order_varies_between_videos():
    firsts = set()
    for seed in range(16):
        track = switch_track("HorizontalAndVertical", seed)
        firsts.add("horizontal" if np.ptp(track.y[:20]) == 0.0 else "vertical")
    assert firsts == {"horizontal", "vertical"}
