"""Dataset faults. Policy (dataloaders/datasets.py): a video that cannot give a TCLR sample is
skipped, counted and named in the epoch report, and the next listed video takes its place, so a
batch never shrinks; more than --max-bad-fraction of one batch failing stops the run. A broken
layout or split (missing file or class folder, malformed line, wrong root) stops the run before
training with one clear error. `python -m dataloaders.check` lists every one of them beforehand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dataloaders import check
from engine import pretrain as pre
from tests.videos import make_video, write_bytes, write_truncated

from .helpers import (ROOT, Finished, assert_clean_error, jsonl, latest, lock_file,
                      pretrain_args, run_script, train_videos, write_overstated_header)

NOISE = bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8))
# Planted at odd positions of the 16-video train list: each bad video's substitute (the next
# listed one) is good, and every batch of 4 keeps 4 real samples.
SKIPPED = {
    "zero_byte": (1, "empty file"),
    "truncated": (3, "too short for TCLR sampling"),
    "noise": (5, "cannot open"),
    "text": (7, "looks like text"),
    "short": (9, "too short for TCLR sampling"),
    "unreadable": (13, "permission denied"),
}
OVERSTATED = 11  # header claims 300 frames, 72 decode: used, with clips drawn for the real length


@pytest.fixture(scope="module")
def planted(tiny_ucf, tmp_path_factory) -> dict:
    """A copy of tiny_ucf with every bad-video fault planted in its train list.

    Returns:
        {"root": dataset root, "skipped": {fault: path}, "overstated": path}; the "unreadable"
        file is only chmod 000 here: tests call helpers.lock_file to make it unreadable for root.
    """
    root = tmp_path_factory.mktemp("planted") / "ucf"
    shutil.copytree(tiny_ucf, root)
    videos = train_videos(root)
    assert len(videos) == 16, "the planted positions and batch counts assume 16 train videos"
    original = tmp_path_factory.mktemp("originals")
    for index in (3, OVERSTATED):
        shutil.copy(videos[index], original / f"{index}.avi")
    writers = {
        "zero_byte": lambda p: write_bytes(p, b""),
        "truncated": lambda p: write_truncated(str(original / "3.avi"), p, 0.5),
        "noise": lambda p: write_bytes(p, NOISE),
        "text": lambda p: write_bytes(p, b"This is an HTML error page, not a video.\n" * 40),
        "short": lambda p: make_video(p, 40),
        "unreadable": lambda p: None,
    }
    skipped = {}
    for fault, (index, _reason) in SKIPPED.items():
        writers[fault](str(videos[index]))
        skipped[fault] = str(videos[index])
    write_overstated_header(original / f"{OVERSTATED}.avi", videos[OVERSTATED], claimed=300)
    return {"root": root, "skipped": skipped, "overstated": str(videos[OVERSTATED])}


@pytest.fixture
def locked(planted, monkeypatch) -> str:
    """Makes the planted "unreadable" video unreadable (also for root; see lock_file)."""
    return lock_file(Path(planted["skipped"]["unreadable"]), monkeypatch)


def test_bad_videos_are_skipped_counted_and_reported(planted, locked, tmp_path, monkeypatch):
    """One full epoch with two DataLoader workers: completes, every bad video named with its reason
    in log.jsonl and log.txt, every step trains on the full batch, no traceback from a worker."""
    shapes = tmp_path / "batch_shapes.txt"
    real_batch_clips = pre.batch_clips

    def recording(batch, device, cfg):  # inherited by the forked run
        clips = real_batch_clips(batch, device, cfg)
        with open(shapes, "a") as handle:
            handle.write(json.dumps(list(clips.shape)) + "\n")
        return clips
    monkeypatch.setattr(pre, "batch_clips", recording)
    out = tmp_path / "run"
    result = run_script("train_pretrain.py", *pretrain_args(
        planted["root"], out, "--num-workers", "2", "--max-bad-fraction", "1"))

    assert result.returncode == 0, result.output[-3000:]
    assert "Traceback" not in result.output
    steps = [json.loads(line) for line in shapes.read_text().splitlines()]
    assert len(steps) == 4 and all(shape[0] == 4 for shape in steps), steps
    (record,) = jsonl(out)
    reasons = {path: reason for path, reason in record["skipped"]}
    assert record["skipped_videos"] == len(record["skipped"]) == len(SKIPPED)
    for fault, (_index, reason) in SKIPPED.items():
        assert reason in reasons[planted["skipped"][fault]], (fault, reasons)
    assert planted["overstated"] not in reasons
    log = (out / "log.txt").read_text()
    assert f"{len(SKIPPED)} videos failed to decode" in log and planted["skipped"]["noise"] in log
    assert torch.isfinite(torch.tensor(record["loss_total"]))
    assert latest(out).is_file()


def test_too_many_bad_videos_in_one_batch_stop_the_run(planted, locked, tmp_path):
    """7 of 16 videos bad, at most 25% of a batch of 4 may fail: the run stops, naming the files
    (and exits: the DataLoader workers kept alive by the error do not hold it up)."""
    out = tmp_path / "run"
    result = run_script("train_pretrain.py", *pretrain_args(planted["root"], out,
                                                            "--num-workers", "2"), timeout=90)
    message = assert_clean_error(result, "failed to decode", "python -m dataloaders.check")
    assert any(path in message for path in planted["skipped"].values())
    assert jsonl(out) == []


def test_more_bad_videos_in_a_row_than_retries(tiny_ucf, tmp_path):
    """Every video empty: the substitutes run out inside a DataLoader worker. The error names the
    files, without the worker's traceback, and the interpreter exits although the error kept the
    workers alive (a real interpreter: its exit handlers are what is tested)."""
    root = tmp_path / "ucf"
    shutil.copytree(tiny_ucf, root)
    for video in train_videos(root):
        write_bytes(str(video), b"")
    proc = subprocess.run(
        [sys.executable, "train_pretrain.py",
         *pretrain_args(root, tmp_path / "run", "--num-workers", "2")],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    message = assert_clean_error(Finished(proc.returncode, proc.stdout, proc.stderr),
                                 "11 consecutive videos", "empty file (0 bytes)",
                                 "dataloaders.check")
    assert "worker" not in message


def test_preflight_check_lists_every_planted_fault(planted, locked, tmp_path, capsys):
    report = tmp_path / "report.json"
    status = check.main(["--dataset", "ucf101", "--root", str(planted["root"]), "--workers", "1",
                         "--subset", "train", "--no-progress", "--json", str(report)])
    out = capsys.readouterr().out
    assert status == 1 and "FAILED: 4 listed videos are missing or unreadable" in out
    summary = json.loads(report.read_text())
    skipped = planted["skipped"]
    unreadable = {path: reason for path, reason in summary["unreadable"]}
    assert set(unreadable) == {skipped[f] for f in ("zero_byte", "noise", "text", "unreadable")}
    assert "permission denied" in unreadable[skipped["unreadable"]]
    too_short = {path for path, _frames in summary["too_short"]}
    assert too_short == {skipped["truncated"], skipped["short"]}
    overstated = {path: (header, real) for path, header, real in summary["header_overstates"]}
    assert overstated[planted["overstated"]] == (300, 72)
    assert overstated[skipped["truncated"]][0] == 72
    assert summary["listed"] == 16 and summary["missing"] == []


def _missing_entry(root: Path) -> str:
    with open(root / "ucfTrainTestlist" / "trainlist01.txt", "a") as handle:
        handle.write("Expand/v_Expand_g99_c01.avi 3\n")
    return "v_Expand_g99_c01.avi"


def _missing_class_folder(root: Path) -> str:
    shutil.rmtree(root / "UCF-101" / "Shrink")
    return "Shrink"


def _malformed_line(root: Path) -> str:
    path = root / "ucfTrainTestlist" / "trainlist01.txt"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(" ", "")  # "<Class>/<file>.avi<index>": the label is gone
    path.write_text("\n".join(lines) + "\n")
    return "trainlist01.txt:3"


def _wrong_root(root: Path) -> str:
    return "ucfTrainTestlist"  # the test passes ROOT/UCF-101 as --data-root, a common slip


@pytest.mark.parametrize("plant, check_status", [
    (_missing_entry, 1), (_missing_class_folder, 1), (_malformed_line, 2), (_wrong_root, 2),
])
def test_broken_layout_stops_before_training(tiny_ucf, tmp_path, plant, check_status, capsys):
    """Exit 2, one error line naming the problem, nothing trained or saved; the preflight tool
    reports the same problem (status 1: files missing, 2: layout or split file broken)."""
    root = tmp_path / "ucf"
    shutil.copytree(tiny_ucf, root)
    named = plant(root)
    if plant is _wrong_root:
        root = root / "UCF-101"
    out = tmp_path / "run"
    result = run_script("train_pretrain.py", *pretrain_args(root, out))
    message = assert_clean_error(result, named)
    if plant is _missing_class_folder:
        assert "1 folder(s) are missing entirely" in message
    assert not (out / "checkpoints").exists() and jsonl(out) == []

    status = check.main(["--dataset", "ucf101", "--root", str(root), "--workers", "1",
                         "--no-progress"])
    captured = capsys.readouterr()
    assert status == check_status and named in captured.out + captured.err
