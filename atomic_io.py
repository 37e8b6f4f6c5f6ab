"""Every file this project writes goes through here, so every write fails the same clean way.

A whole-file write (checkpoint, results.json, feature cache, picture, config.yaml, split list,
report) goes to a hidden temporary file in the target's folder, is flushed and fsync'ed, then
renamed over the target: a kill at any moment leaves the old file or the new one, never a torn one.
When the write fails for any reason the temporary file is removed (a full disk is not kept full by
our own leftovers) and the previous file stays as it was; a failure the user can fix (full disk,
permission, name too long, read-only file system) raises :class:`WriteError`, whose message names
the path and the cause, printed by the entry points as one ``error:`` line with exit status 2.
Appended lines (log.jsonl) and files written by other libraries (videos, TensorBoard, log.txt) are
not atomic, but their failures are described by the same :func:`write_error`.

This module imports nothing from the project but user_errors, so every layer can use it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from user_errors import UserError

TEMP_MARK = ".tmp-"
_NAME_KEEP = 200   # temp names keep this much of the target's name: NAME_MAX is 255 on most systems
_FULL_BELOW = 1 << 20   # a folder with less free space than this (bytes) counts as a full disk

_REASONS = {
    errno.ENOSPC: "the disk is full (no space left on device); free space or write elsewhere",
    errno.EDQUOT: "the disk quota is exceeded; free space or write elsewhere",
    errno.EACCES: "permission denied; fix the permissions or write elsewhere",
    errno.EPERM: "permission denied (operation not permitted); fix the permissions or write "
                 "elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.ENAMETOOLONG: "the file name is too long for the file system; use a shorter path",
    errno.EISDIR: "a folder of that name is in the way; move it or write elsewhere",
    errno.ENOTDIR: "a file stands where a folder of the path should be; write elsewhere",
}


class WriteError(UserError):
    """Writing a file failed; the message names the path and the cause, and the previous file at
    that path (if any) is untouched."""


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def disk_full(path: str | os.PathLike) -> bool:
    """Whether the file system that holds (or would hold) ``path`` has under 1 MiB free."""
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free < _FULL_BELOW
    except OSError:
        return False


def reason(exc: BaseException, path: str | os.PathLike) -> str | None:
    """The cause of a failed write of ``path`` in words, or None when ``exc`` is not a write failure
    (a bug, which keeps its traceback).

    torch.save raises RuntimeError on a full disk ("[enforce fail at inline_container.cc:672] .
    unexpected pos 768 vs 662", or "PytorchStreamWriter failed writing file data/0: file write
    failed"), with the OSError(ENOSPC) only as its context when it wrote to a Python file object
    and none at all when it wrote to a path: the free space of the folder then tells.
    """
    for link in _chain(exc):
        if isinstance(link, OSError) and link.errno:
            return _REASONS.get(link.errno, link.strerror or str(link))
    if not isinstance(exc, (OSError, RuntimeError)):
        return None
    if disk_full(path):
        return _REASONS[errno.ENOSPC]
    return f"{type(exc).__name__}: {exc}"


def write_error(path: str | os.PathLike, exc: BaseException, what: str = "file",
                kept: bool = True) -> WriteError | None:
    """The WriteError for a failed write of ``path`` (None when ``exc`` is not a write failure).

    Args:
        what: names the file in the message ("checkpoint", "results", "picture", ...).
        kept: the write was atomic, so the previous file is intact (the message says so).
    """
    why = reason(exc, path)
    if why is None:
        return None
    intact = f" The previous {Path(path).name}, if any, is intact." if kept else ""
    return WriteError(f"could not write {what} {path}: {why}.{intact}")


def temp_path(path: Path) -> Path:
    """The hidden temporary file of ``path`` for this process."""
    return path.with_name(f".{path.name[:_NAME_KEEP]}{TEMP_MARK}{os.getpid()}")


def remove_stale_temps(path: Path) -> None:
    """Delete temporary files of ``path`` left by writers killed mid-write (each as big as the
    file: a job preempted often would otherwise fill the disk with them). Called after our own
    write succeeded: only one process writes a given file of a run folder."""
    for stale in path.parent.glob(f".{path.name[:_NAME_KEEP]}{TEMP_MARK}*"):
        stale.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None],
                 what: str = "file") -> Path:
    """Write ``path`` atomically: ``write(handle)`` fills a temporary file opened "wb" in the same
    folder, which is flushed, fsync'ed and renamed over ``path``.

    Raises:
        WriteError: the write failed (full disk, permission, name too long, ...); the temporary
            file is gone and the previous file untouched. Other exceptions (bugs) propagate
            unchanged, also after removing the temporary file.
        KeyboardInterrupt: Ctrl-C or SIGTERM (engine.preemption.Terminated) during the write,
            also where the writer turned it into another error (see :func:`interruption`).
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        _unlink_quietly(tmp)
        stopped = interruption(exc)
        if stopped is not None and stopped is not exc:
            raise stopped from None
        error = write_error(path, exc, what) if isinstance(exc, Exception) else None
        if error is None:
            raise
        raise error from exc
    _fsync_dir(path.parent)
    remove_stale_temps(path)
    return path


def interruption(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C (or SIGTERM) behind ``exc``, if any.

    ``torch.save`` into a file object calls its ``write`` from C++: a KeyboardInterrupt raised there
    by the signal handler comes back as ``RuntimeError: ... unexpected pos``, with the interrupt
    only as its ``__context__``. Reported as a write error, a Ctrl-C during a checkpoint save read
    "could not write checkpoint" with exit status 2 (seen in the fault suite)."""
    return next((e for e in _chain(exc) if isinstance(e, KeyboardInterrupt)), None)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass   # the folder itself is gone or unwritable: there is no temp file to remove then


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some filesystems do not allow opening folders; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass  # fsync on a directory is unsupported on some filesystems; best effort only
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike, text: str, what: str = "file",
               encoding: str = "utf-8") -> Path:
    """``text`` into ``path`` atomically (see :func:`atomic_write`)."""
    data = text.encode(encoding)
    return atomic_write(path, lambda handle: handle.write(data), what)


def write_json(path: str | os.PathLike, obj: Any, what: str = "results", indent: int = 2,
               **dumps: Any) -> Path:
    """``obj`` as indented JSON plus a newline into ``path`` atomically (serialised first, so an
    object JSON cannot hold fails as the bug it is, before anything is written)."""
    return write_text(path, json.dumps(obj, indent=indent, **dumps) + "\n", what)


def append_text(path: str | os.PathLike, text: str, what: str = "log") -> None:
    """Append ``text`` to ``path`` (not atomic: a log grows line by line); a failed append is
    cut off again, so the file ends with its last complete line.

    Raises:
        WriteError: naming the path and the cause.
    """
    size = None
    try:
        size = os.path.getsize(path) if os.path.exists(path) else 0
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        if size is not None:   # no cut line left behind for the readers to trip over
            try:
                os.truncate(path, size)
            except OSError:
                pass           # the file could not be opened at all: nothing was appended
        raise write_error(path, exc, what, kept=False) from exc
