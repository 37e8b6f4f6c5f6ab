"""Write faults (issue 25, item 6). Policy (atomic_io): every file is written through one helper;
a failed write (full disk, permission, name too long, read-only file system) removes its temporary
file, keeps the previous file, and ends the job with one ``error:`` line naming the path and the
cause, exit status 2. The next run is not hindered by leftovers.

Full disks are real where the test can mount a small tmpfs (root on Linux); elsewhere those tests
skip with the reason. The exception torch really raises on a full disk is planted as well:
torch.save into a Python file object raises ``RuntimeError("[enforce fail at
inline_container.cc:672] . unexpected pos 768 vs 662")`` with the ENOSPC OSError only as its
context (measured with torch 2.14 on a 4 MiB tmpfs); into a path, the RuntimeError has no OSError
behind it at all.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine import checkpoint as ck
from user_errors import UserError

from .helpers import assert_clean_error, retrieval_args, run_script

FULL = "the disk is full"


# --------------------------------------------------------------------------------------------
# A real small file system
# --------------------------------------------------------------------------------------------

class SmallDisk:
    """A tmpfs of a few hundred KiB mounted at ``root``; :meth:`fill` takes all its free space."""

    def __init__(self, root: Path):
        self.root = root
        self.filler = root / "filler.bin"

    def free(self) -> int:
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Write the filler until only ``leave`` bytes (rounded to pages) are free."""
        block = b"\0" * 4096
        with open(self.filler, "ab") as handle:
            try:
                while self.free() > leave:
                    handle.write(block)
                    handle.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc

    def empty(self) -> None:
        self.filler.unlink(missing_ok=True)

    def hidden(self) -> list[str]:
        """Hidden files anywhere on the disk (temporary files of writes cut short)."""
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob(".*"))


def _mount(target: Path, options: str) -> str | None:
    """Mount a tmpfs at ``target``; the reason it could not be mounted, else None."""
    if sys.platform != "linux":
        return f"tmpfs mounts need Linux, this is {sys.platform}"
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot run mount: {exc}"
    if done.returncode != 0:
        return f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}"
    return None


@contextlib.contextmanager
def _tmpfs(root: Path, options: str):
    """A tmpfs mounted on the new folder ``root`` for the block (the test is skipped, saying why,
    where one cannot be mounted); unmounted after."""
    root.mkdir()
    why = _mount(root, options)
    if why:
        pytest.skip(why)
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path):
    with _tmpfs(tmp_path / "disk", "size=512k") as root:
        yield SmallDisk(root)


@pytest.fixture
def read_only_disk(tmp_path):
    with _tmpfs(tmp_path / "ro", "ro,size=64k") as root:
        yield root


def _ckpt(value: float, size: int = 4) -> dict:
    return {"format": ck.FORMAT, "format_version": ck.FORMAT_VERSION,
            "model": {"w": torch.full((size,), value)}}


# --------------------------------------------------------------------------------------------
# The exception torch really raises
# --------------------------------------------------------------------------------------------

def _torch_full_disk(with_context: bool):
    """torch.save as it fails on a full disk (see the module docstring)."""
    def save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04" + b"\0" * 1000)     # torch had begun writing the zip archive
        if with_context:
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos "
                                   "768 vs 662") from None
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    return save


def test_torch_full_disk_runtime_error_is_a_clean_write_error(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "latest.pth"
    ck.atomic_save(_ckpt(1.0), path)
    monkeypatch.setattr(torch, "save", _torch_full_disk(with_context=True))
    with pytest.raises(UserError) as raised:
        ck.atomic_save(_ckpt(2.0), path)
    message = str(raised.value)
    assert str(path) in message and FULL in message and "is intact" in message, message
    assert isinstance(raised.value, RuntimeError)          # CheckpointWriteError keeps its base
    monkeypatch.undo()
    assert torch.equal(ck.load_checkpoint(path)["model"]["w"], torch.ones(4))
    assert [p.name for p in path.parent.iterdir()] == ["latest.pth"]   # no temp file left


def test_torch_error_without_oserror_on_a_full_disk(tmp_path, monkeypatch):
    """No OSError behind torch's RuntimeError: the folder's free space names the cause."""
    import atomic_io
    path = tmp_path / "best.pth"
    monkeypatch.setattr(torch, "save", _torch_full_disk(with_context=False))
    monkeypatch.setattr(atomic_io, "disk_full", lambda _path: True)
    with pytest.raises(UserError, match=f"could not write checkpoint {path}: {FULL}"):
        ck.atomic_save(_ckpt(2.0), path)
    assert list(tmp_path.iterdir()) == []


def test_torch_error_on_a_disk_with_room_names_torch_message(tmp_path, monkeypatch):
    path = tmp_path / "best.pth"
    monkeypatch.setattr(torch, "save", _torch_full_disk(with_context=False))
    with pytest.raises(UserError, match="PytorchStreamWriter failed writing file data/0"):
        ck.atomic_save(_ckpt(2.0), path)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Every writer on a real full disk
# --------------------------------------------------------------------------------------------

def _save_figure(path: Path, version: int) -> None:
    from matplotlib.figure import Figure

    from engine.visualize import save_figure
    fig = Figure(figsize=(2 + version, 2))
    fig.add_subplot().plot(range(10 * version))
    save_figure(fig, path)


def _save_config(path: Path, version: int) -> None:
    import config
    cfg = config.finalize(config.LinearConfig())
    cfg.seed = version
    config.save_config(cfg, path.parent)


def _results(path: Path, version: int) -> None:
    from engine import metrics
    names = [f"class_{i}_{'x' * 40 * version}" for i in range(20)]
    metrics.write_per_class_csv(path, names, torch.zeros(20).numpy(), torch.ones(20).numpy())


WHOLE_FILES = {   # what -> (file name, writer(path, version)); version 2 is the bigger file
    "checkpoint": ("latest.pth",
                   lambda p, v: ck.atomic_save(_ckpt(float(v), 20_000 * v), p)),
    "feature cache": ("train-0123.pt",
                      lambda p, v: ck.atomic_save({"features": torch.ones(5000 * v)}, p,
                                                  "feature cache")),
    "picture": ("confusion_matrix.png", _save_figure),
    "config": ("config.yaml", _save_config),
    "table": ("per_class_accuracy.csv", _results),
}


@pytest.mark.parametrize("what", list(WHOLE_FILES))
def test_full_disk_keeps_previous_file_and_leaves_no_temp(small_disk, what):
    name, write = WHOLE_FILES[what]
    path = small_disk.root / "run" / name
    write(path, 1)
    before = path.read_bytes()
    small_disk.fill()
    with pytest.raises(UserError) as raised:
        write(path, 2)
    message = str(raised.value)
    assert f"could not write {what} {path}: {FULL}" in message, message
    assert path.read_bytes() == before
    assert small_disk.hidden() == []
    small_disk.empty()                   # space again: the next write succeeds, nothing in its way
    write(path, 2)
    assert path.read_bytes() != before and small_disk.hidden() == []


def test_full_disk_log_line_leaves_no_cut_line(small_disk):
    from engine.logging import JsonlLog
    log = JsonlLog(small_disk.root / "run" / "log.jsonl")
    log.write({"epoch": 0})
    small_disk.fill()
    with pytest.raises(UserError, match=f"could not write log {log.path}: {FULL}"):
        log.write({"epoch": 1, "note": "x" * 20_000})
    assert log.path.read_text() == '{"epoch": 0}\n'


def test_full_disk_log_txt_ends_with_one_write_error(small_disk, capsys):
    from engine.logging import get_logger
    logger = logging.getLogger("tclr.write_fault_test")
    run = small_disk.root / "run"
    try:
        get_logger("tclr.write_fault_test", run)
        logger.info("first line")
        small_disk.fill()
        with pytest.raises(UserError, match=f"could not write log {run / 'log.txt'}: {FULL}"):
            logger.info("y" * 20_000)
        logger.info("later lines go to the console only")   # no second error, no traceback
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
    assert "Logging error" not in capsys.readouterr().err


def test_check_json_report_on_a_full_disk(small_disk, tiny_ucf, capsys):
    from dataloaders import check
    small_disk.fill()
    report = small_disk.root / "report.json"
    code = check.main(["--dataset", "ucf101", "--root", str(tiny_ucf), "--workers", "1",
                       "--no-progress", "--json", str(report)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: could not write report {report}: {FULL}"), err
    assert not report.exists() and small_disk.hidden() == []


# --------------------------------------------------------------------------------------------
# Other causes: read-only file system, permission, name too long
# --------------------------------------------------------------------------------------------

def test_read_only_file_system(read_only_disk):
    path = read_only_disk / "run" / "checkpoints" / "latest.pth"
    with pytest.raises(UserError, match=f"could not write checkpoint {path}: the file system is "
                                        "read-only"):
        ck.atomic_save(_ckpt(1.0), path)


def test_log_and_tensorboard_on_read_only_file_system(read_only_disk):
    from engine.logging import TensorBoard, get_logger
    run = read_only_disk / "run"
    with pytest.raises(UserError, match=f"could not write log {run / 'log.txt'}: the file system "
                                        "is read-only"):
        get_logger("tclr.read_only_test", run)
    with pytest.raises(UserError, match="could not write TensorBoard events .*read-only"):
        TensorBoard(run / "tensorboard")


def test_name_too_long(tmp_path):
    path = tmp_path / ("r" * 300 + ".json")
    with pytest.raises(UserError, match="the file name is too long"):
        ck.atomic_save(_ckpt(1.0), path)
    assert list(tmp_path.iterdir()) == []


def test_permission_denied(tmp_path, monkeypatch):
    """chmod does not stop root, so the refusal is planted where the helper opens the file."""
    import builtins
    real_open = builtins.open
    target = tmp_path / "results"

    def refusing_open(file, *args, **kwargs):
        if str(file).startswith(str(target)):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", refusing_open)
    with pytest.raises(UserError, match=f"could not write checkpoint {target / 'x.pth'}: "
                                        "permission denied"):
        ck.atomic_save(_ckpt(1.0), target / "x.pth")


# --------------------------------------------------------------------------------------------
# A whole job on a full disk
# --------------------------------------------------------------------------------------------

def test_retrieval_on_a_full_disk_ends_with_one_error_line(small_disk, tiny_ucf):
    """Room for the start-up files and the feature caches, not for the picture: one error line,
    exit 2, no temporary file; with the space back, the next run completes."""
    small_disk.fill(leave=64 * 1024)
    out = small_disk.root / "retrieval"
    result = run_script("nn_retrieval.py", *retrieval_args(tiny_ucf, out))
    message = assert_clean_error(result, FULL, str(out))
    assert "could not write" in message, message
    assert small_disk.hidden() == [], small_disk.hidden()
    small_disk.empty()
    again = small_disk.root / "retrieval_again"
    result = run_script("nn_retrieval.py", *retrieval_args(tiny_ucf, again))
    assert result.returncode == 0, result.output[-3000:]
    assert json.loads((again / "results.json").read_text())["recall@1"] >= 0
