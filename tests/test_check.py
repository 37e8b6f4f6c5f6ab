"""The preflight tool on a UCF101-layout dataset with planted bad files."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dataloaders import check
from tests.videos import make_video, write_bytes, write_truncated

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8))


def build_ucf(root, entries, files, test_entries=()):
    """entries: (class, file name) in the train list; test_entries: those of the test list;
    files: {(class, name): writer(path)}."""
    classes = sorted({cls for cls, _ in entries})
    os.makedirs(os.path.join(root, "ucfTrainTestlist"))
    with open(os.path.join(root, "ucfTrainTestlist", "classInd.txt"), "w") as handle:
        handle.writelines(f"{i + 1} {c}\n" for i, c in enumerate(classes))
    with open(os.path.join(root, "ucfTrainTestlist", "trainlist01.txt"), "w") as handle:
        handle.writelines(f"{c}/{n} {classes.index(c) + 1}\n" for c, n in entries)
    with open(os.path.join(root, "ucfTrainTestlist", "testlist01.txt"), "w") as handle:
        handle.writelines(f"{c}/{n}\n" for c, n in test_entries)
    for (cls, name), writer in files.items():
        os.makedirs(os.path.join(root, "UCF-101", cls), exist_ok=True)
        writer(os.path.join(root, "UCF-101", cls, name))
    return str(root)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    base = tmp_path_factory.mktemp("check")
    source = make_video(str(base / "source.avi"), 120, fourcc="XVID")
    files = {
        ("A", "good1.avi"): lambda p: make_video(p, 70, fourcc="MJPG"),
        ("A", "good2.avi"): lambda p: make_video(p, 90, fourcc="XVID"),
        ("A", "short.avi"): lambda p: make_video(p, 40, fourcc="MJPG"),
        ("B", "empty.avi"): lambda p: write_bytes(p, b""),
        ("B", "noise.avi"): lambda p: write_bytes(p, NOISE),
        ("B", "text.avi"): lambda p: write_bytes(p, b"hello\n" * 100),
        ("B", "truncated.avi"): lambda p: write_truncated(source, p, 0.5),
    }
    entries = list(files) + [("B", "absent.avi")]
    return build_ucf(base / "ucf", entries, files)


def test_planted_faults_are_reported(planted, capsys, tmp_path):
    report = tmp_path / "report.json"
    status = check.main(["--dataset", "ucf101", "--root", planted, "--split", "1", "--workers", "2",
                         "--subset", "train", "--no-progress", "--json", str(report)])
    out = capsys.readouterr().out
    assert status == 1 and "FAILED: 4 listed videos are missing or unreadable" in out
    summary = json.loads(report.read_text())
    assert summary["listed"] == 8 and summary["decodable"] == 4
    assert [os.path.basename(p) for p in summary["missing"]] == ["absent.avi"]
    unreadable = {os.path.basename(p): reason for p, reason in summary["unreadable"]}
    assert set(unreadable) == {"empty.avi", "noise.avi", "text.avi"}
    assert "empty file" in unreadable["empty.avi"] and "looks like text" in unreadable["text.avi"]
    too_short = {os.path.basename(p): n for p, n in summary["too_short"]}
    assert too_short["short.avi"] == 40 and "truncated.avi" in too_short
    overstated = [os.path.basename(p) for p, _, _ in summary["header_overstates"]]
    assert overstated == ["truncated.avi"]
    assert (summary["frames_min"], summary["frames_max"]) == (40, 90)
    assert "real frame counts: min 40" in out and "too short for TCLR sampling (< 57 frames): 2" in out


def test_clean_dataset_exits_zero_via_module(tmp_path):
    files = {("A", "v1.avi"): lambda p: make_video(p, 60, fourcc="MJPG"),
             ("B", "v2.avi"): lambda p: make_video(p, 30, fourcc="MJPG"),
             ("A", "t1.avi"): lambda p: make_video(p, 20, fourcc="MJPG")}
    root = build_ucf(tmp_path / "ucf", list(files)[:2], files, test_entries=[("A", "t1.avi")])
    result = subprocess.run([sys.executable, "-m", "dataloaders.check", "--dataset", "ucf101",
                             "--root", root, "--subset", "all", "--workers", "1", "--no-progress"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # "all": the train list judged against TCLR sampling, the test list against evaluation clips
    assert "listed videos: 2" in result.stdout and "listed videos: 1" in result.stdout
    assert "too short for TCLR sampling (< 57 frames): 1" in result.stdout
    assert "too short for evaluation clips (< 17 frames): 0" in result.stdout


def test_broken_layout_exits_two(tmp_path, capsys):
    assert check.main(["--dataset", "ucf101", "--root", str(tmp_path / "none"), "--no-progress"]) == 2
    assert "prepare_ucf101.sh" in capsys.readouterr().err
