"""Run-folder ownership: what is checked before a job writes anything, the lock that keeps a second
job out of a folder in use, and the files a job writes only once its start-up has succeeded.

A job's start-up (configuration, dataset lists, checkpoints to load or resume) can fail on a user
mistake. Until it has succeeded the job writes nothing into its run folder: a failed start leaves an
existing folder exactly as it was and removes a folder it created. The lock is ``flock`` on
``<run dir>/.run.lock``, held for the job's lifetime. The kernel releases it whenever the process
ends (also on SIGKILL or a crash), so a lock file left by a killed job is stale by construction: the
next job simply acquires it. The file holds the holder's pid, host and start time for the message a
second job prints; a job that ends normally deletes it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from atomic_io import write_error
from engine.errors import RunFolderError

LOCK_NAME = ".run.lock"
# What --overwrite removes: everything a pretraining run writes besides its log.txt.
RUN_OUTPUTS = ("checkpoints", "log.jsonl", "tensorboard", "config.yaml")


def check_out_dir(out_dir: str | os.PathLike) -> None:
    """Refuse an --out-dir that is a file or cannot be written, before anything is created.

    Raises:
        RunFolderError: naming the path and the reason.
    """
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"--out-dir {path} is an existing file, not a folder; pass a folder "
                             "path (it is created if absent)")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunFolderError(f"--out-dir {path}: {existing} is a file, so the folder cannot be "
                             "created; pass another --out-dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" ({existing}, where it would be created)"
        raise RunFolderError(f"--out-dir {path} is not writable by this user{where}; pass a "
                             "folder you can write to, or fix its permissions")


def check_writable_dir(folder: str | os.PathLike, flag: str) -> None:
    """The same check for another output folder (e.g. --cache-dir)."""
    try:
        check_out_dir(folder)
    except RunFolderError as exc:
        raise RunFolderError(str(exc).replace("--out-dir", flag)) from None


def refuse_earlier_run(run_dir: Path, resume: str, overwrite: bool) -> None:
    """A pretraining run into a folder that holds checkpoints needs --resume or --overwrite.

    Raises:
        RunFolderError: the folder holds checkpoints and neither was given.
    """
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("*.pth"))
    if ckpts and not resume and not overwrite:
        raise RunFolderError(
            f"--out-dir {run_dir} already holds the checkpoints of an earlier run "
            f"({', '.join(ckpts[:4])}{' ...' if len(ckpts) > 4 else ''}); continue it with "
            "--resume auto, write to a new --out-dir, or pass --overwrite true to replace it")


def clear_outputs(run_dir: Path) -> list[str]:
    """Delete an earlier run's outputs (RUN_OUTPUTS) for --overwrite; returns what was removed."""
    removed = []
    for name in RUN_OUTPUTS:
        target = run_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        else:
            continue
        removed.append(name)
    return removed


def _holder_text(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "a job that is still starting (no details written yet)"
    return (f"pid {info.get('pid')} on host {info.get('host')}, started "
            f"{info.get('started')} ({info.get('command', '?')})")


class RunLock:
    """An exclusive flock on ``<run_dir>/.run.lock`` held until :meth:`release` or process exit.

    Args:
        run_dir: the run folder; created (with missing parents) if absent.
    Raises:
        RunFolderError: another live process holds the lock (the message names it).
    """

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.created: Path | None = None    # topmost folder this lock created, removed on abandon
        top = self.run_dir
        while not top.parent.exists():
            top = top.parent
        if not self.run_dir.exists():
            self.created = top
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.fd = self._acquire()
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                  "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]}
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, json.dumps(record).encode(), 0)
        except OSError as exc:   # a full disk refuses even these few bytes
            self.release(abandon=True)
            raise write_error(self.path, exc, "run lock", kept=False) from exc

    def _acquire(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise RunFolderError(
                    f"--out-dir {self.run_dir} is in use by another run: "
                    f"{_holder_text(self.path)}. Wait for it to end, or pass another --out-dir "
                    f"(the lock {self.path} is released when that process exits, however it "
                    "ends)") from None
            # the holder we waited on may have deleted the file it locked: lock the current one
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def release(self, abandon: bool = False) -> None:
        """Unlock and delete the lock file; with ``abandon``, also remove the folders this lock
        created when nothing else was written into them (a failed start)."""
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)   # before unlocking: see _acquire's inode check
        os.close(self.fd)
        self.fd = None
        if abandon and self.created is not None:
            folder = self.run_dir
            while True:
                try:
                    folder.rmdir()
                except OSError:
                    break                    # not empty: something else lives there
                if folder == self.created:
                    break
                folder = folder.parent


def files_written_since(run_dir: Path, since: float) -> list[str]:
    """Files under ``run_dir`` modified at or after ``since`` (a time.time()), relative, sorted;
    TensorBoard event files and hidden files (the lock, a write cut short) left out."""
    out = []
    for path in run_dir.rglob("*"):
        rel = path.relative_to(run_dir)
        if (path.is_file() and rel.parts[0] != "tensorboard" and not path.name.startswith(".")
                and path.stat().st_mtime >= since):
            out.append(str(rel))
    return sorted(out)
