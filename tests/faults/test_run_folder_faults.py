"""Run-folder faults: a start that fails, a rerun without --resume, two runs into one folder, an
--out-dir that is a file or cannot be written. Policy (engine/rundir.py): nothing is written into
the run folder until start-up has succeeded, a folder holding checkpoints needs --resume or
--overwrite, and a run holds an flock on <run dir>/.run.lock for its lifetime.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest

from .helpers import (EntryPoint, assert_clean_error, copy_run, folder_state, jsonl, latest,
                      pretrain_args, run_script, wait_for)


def _mistyped_root(tiny_ucf: Path) -> tuple[list[str], tuple[str, ...]]:
    return ["--data-root", str(tiny_ucf) + "x"], ("UCF101 root", str(tiny_ucf) + "x",
                                                  "does not exist")


def _other_width(tiny_ucf: Path) -> tuple[list[str], tuple[str, ...]]:
    return ["--width", "16"], ("written with width=8", "width=16", "pass the same --width")


@pytest.mark.parametrize("mistake", [_mistyped_root, _other_width], ids=["data-root", "width"])
def test_failed_resume_leaves_the_run_folder_as_it_was(tiny_ucf, base_run, tmp_path, mistake):
    """--resume auto refused (a mistyped --data-root, another --width): exit 2, and every file of
    the folder (config.yaml, log.txt, log.jsonl, checkpoints) is byte-for-byte what it was."""
    out = copy_run(base_run, tmp_path / "run")
    before = folder_state(out)
    extra, fragments = mistake(tiny_ucf)
    result = run_script("train_pretrain.py", *pretrain_args(
        tiny_ucf, out, "--epochs", "2", "--resume", "auto", *extra))
    assert_clean_error(result, *fragments)
    assert folder_state(out) == before


def test_failed_start_leaves_no_new_folder(tiny_ucf, tmp_path):
    """A failed start into a folder that did not exist removes what it created, parents too."""
    out = tmp_path / "new" / "nested" / "run"
    extra, fragments = _mistyped_root(tiny_ucf)
    result = run_script("train_pretrain.py", *pretrain_args(tiny_ucf, out, *extra))
    assert_clean_error(result, *fragments)
    assert not (tmp_path / "new").exists()


def test_rerun_without_resume_is_refused_and_overwrite_replaces(tiny_ucf, base_run, tmp_path):
    out = copy_run(base_run, tmp_path / "run")
    before = folder_state(out)
    args = pretrain_args(tiny_ucf, out, "--max-steps-per-epoch", "1")
    assert_clean_error(run_script("train_pretrain.py", *args), str(out), "best.pth, latest.pth",
                       "--resume auto", "new --out-dir", "--overwrite true")
    assert folder_state(out) == before

    replaced = run_script("train_pretrain.py", *args, "--overwrite", "true")
    assert replaced.returncode == 0, replaced.output[-3000:]
    assert [record["epoch"] for record in jsonl(out)] == [0]      # one run's log, not two
    assert "--overwrite: moved the earlier run's checkpoints, config.yaml, log.jsonl" \
        in replaced.output
    assert "the new run saved its first result; deleted the earlier run's" in replaced.output
    assert not list(out.glob(".overwritten-*"))
    assert latest(out).read_bytes() != (base_run / "checkpoints" / "latest.pth").read_bytes()


def test_second_run_into_a_busy_folder_is_refused(tiny_ucf, tmp_path):
    """While run A holds the folder, run B exits 2 naming A (pid, host, start time) and writes
    nothing. A is then SIGKILLed: the kernel released its lock, so the lock file it left is stale
    and run C starts (and continues A's work) without any manual clean-up."""
    out = tmp_path / "run"
    holder = EntryPoint("train_pretrain.py", pretrain_args(
        tiny_ucf, out, "--epochs", "50", "--save-every-steps", "1"))
    lock = out / ".run.lock"
    try:
        wait_for(lambda: lock.is_file() and lock.read_text(), 60, "the lock's holder record",
                 holder)
        wait_for(lambda: latest(out).is_file(), 120, "checkpoint after the first step", holder)
        record = json.loads(lock.read_text())
        assert record["pid"] == holder.pid and record["host"] == socket.gethostname()
        result = run_script("train_pretrain.py", *pretrain_args(tiny_ucf, out, "--resume",
                                                                "auto"))
        assert_clean_error(result, f"--out-dir {out} is in use by another run",
                           f"pid {holder.pid} on host {socket.gethostname()}",
                           f"started {record['started']}", "another --out-dir")
    finally:
        holder.kill()
    assert holder.returncode == -signal.SIGKILL
    assert lock.is_file()                       # left behind by the killed run: stale
    resumed = run_script("train_pretrain.py", *pretrain_args(
        tiny_ucf, out, "--max-steps-per-epoch", "1", "--resume", "auto"))
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert "resumed from" in resumed.output
    assert not lock.exists()                    # a run that ends normally removes its lock file


@pytest.mark.parametrize("kind", ["file", "not_writable"])
def test_unusable_out_dir(tiny_ucf, tmp_path, monkeypatch, kind):
    """An --out-dir that is an existing file, or a folder this user cannot write to (simulated
    for root, who may write anywhere: os.access as the check asks it), ends before anything else
    with one line naming the path."""
    if kind == "file":
        out = tmp_path / "run"
        out.write_text("not a folder\n")
        fragments = (f"--out-dir {out} is an existing file, not a folder",)
    else:
        parent = tmp_path / "readonly"
        parent.mkdir()
        parent.chmod(0o555)
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False
                            if Path(p) == parent else real_access(p, mode, *a, **k))
        out = parent / "run"
        fragments = (f"--out-dir {out} is not writable by this user", str(parent))
    result = run_script("train_pretrain.py", *pretrain_args(tiny_ucf, out))
    assert_clean_error(result, *fragments)
    if kind == "not_writable":
        assert not out.exists()
