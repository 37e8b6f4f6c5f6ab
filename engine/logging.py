"""Rank-aware logging: console logger, JSON-lines file, TensorBoard, start banner, throughput.

Only rank 0 writes files; other ranks log warnings and errors to the console only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from atomic_io import WriteError, append_text, write_error
from engine.distributed import get_rank

_FMT = "%(asctime)s [%(levelname)s] %(message)s"


def get_logger(name: str = "tclr", run_dir: str | os.PathLike | None = None) -> logging.Logger:
    """A console logger (INFO on rank 0, WARNING elsewhere) that also writes run_dir/log.txt."""
    logger = logging.getLogger(name)
    rank = get_rank()
    if not getattr(logger, "_tclr_configured", False):
        logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
        handler = logging.StreamHandler(sys.stdout)
        fmt = _FMT if rank == 0 else f"%(asctime)s [rank {rank} %(levelname)s] %(message)s"
        handler.setFormatter(logging.Formatter(fmt, "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
        logger._tclr_configured = True
    if run_dir is not None and rank == 0:
        path = str(Path(run_dir) / "log.txt")
        if not any(getattr(h, "baseFilename", None) == os.path.abspath(path) for h in logger.handlers):
            try:
                Path(run_dir).mkdir(parents=True, exist_ok=True)
                fh = RunLogFile(path)
            except OSError as exc:
                raise write_error(path, exc, "log", kept=False) from exc
            fh.setFormatter(logging.Formatter(_FMT))
            logger.addHandler(fh)
    return logger


class RunLogFile(logging.FileHandler):
    """log.txt: a FileHandler whose failed write (full disk, permission) ends the job with one
    WriteError naming the file and the cause, instead of logging's "--- Logging error ---"
    traceback on every later line; after that the file is left alone (the console keeps logging,
    so the final ``error:`` line still shows)."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        error = write_error(self.baseFilename, exc, "log", kept=False) if exc is not None else None
        if error is None:
            super().handleError(record)
            return
        self.failed = True
        try:
            self.close()
        except OSError:
            pass   # flushing the buffered rest fails the same way; the file is given up
        raise error from exc


class PendingRecords(logging.Handler):
    """Holds log records in memory until the run folder may be written (RunContext.commit hands
    them to log.txt; a failed start drops them, so its folder stays as it was)."""

    def __init__(self):
        super().__init__()
        self.buffer: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.buffer.append(record)


def log_to_files(message: str, level: int = logging.ERROR, name: str = "tclr") -> None:
    """Write ``message`` to the log.txt files of the logger only (the console already has it)."""
    logger = logging.getLogger(name)
    record = logger.makeRecord(name, level, __file__, 0, message, None, None)
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            try:
                handler.handle(record)
            except WriteError:
                pass   # log.txt cannot be written: the console line is the record


class JsonlLog:
    """Appends one JSON object per line to ``path`` (rank 0 only)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.enabled = get_rank() == 0
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        append_text(self.path, json.dumps(record, default=_json_default) + "\n", "log")

    def truncate(self, keep=lambda record: True) -> str:
        """Before a resumed run appends: cut the file to its complete records that ``keep``
        accepts (a last line cut by a kill, the records of epochs after the resumed checkpoint
        are dropped). Returns what was dropped, in words ("" when nothing)."""
        if not self.enabled or not self.path.is_file():
            return ""
        records, cut = read_jsonl(self.path, warn=None)
        kept = [r for r in records if keep(r)]
        parts = ([f"a cut last line ({cut})"] if cut else []) + (
            [f"{len(records) - len(kept)} record(s) of later epochs"]
            if len(kept) < len(records) else [])
        if parts:
            text = "".join(json.dumps(r, default=_json_default) + "\n" for r in kept)
            tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
            tmp.write_text(text)
            os.replace(tmp, self.path)
        return " and ".join(parts)


class JsonlError(ValueError):
    """A log.jsonl line other than the last is not JSON (the file was edited or damaged)."""


def read_jsonl(path: str | os.PathLike, warn=print) -> tuple[list[dict], str]:
    """The records of a JSON-lines log, tolerating a cut last line (a run killed mid-write).

    Args:
        warn: called with one sentence when the last line is cut and ignored (None: silent).
    Returns:
        (records, the cut line shortened, "" when none).
    Raises:
        JsonlError: a line before the last is not a JSON object (names the file and line).
    """
    path = Path(path)
    lines = path.read_text(errors="replace").split("\n")
    records: list[dict] = []
    cut = ""
    numbered = [(i, line) for i, line in enumerate(lines, 1) if line.strip()]
    for position, (number, line) in enumerate(numbered):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            if position == len(numbered) - 1:
                cut = line[:60] + ("..." if len(line) > 60 else "")
                if warn is not None:
                    warn(f"warning: {path}: the last line ({number}) is cut (a run killed while "
                         "writing it?); ignored")
                break
            raise JsonlError(f"{path} line {number} is not a JSON record: {line[:80]!r}; fix or "
                             "delete that line") from None
        records.append(record)
    return records, cut


def _json_default(obj: Any):
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


class TensorBoard:
    """A SummaryWriter on rank 0; silent elsewhere."""

    def __init__(self, log_dir: str | os.PathLike, enabled: bool = True):
        self.writer = None
        if enabled and get_rank() == 0:
            from torch.utils.tensorboard import SummaryWriter
            try:
                self.writer = SummaryWriter(log_dir=str(log_dir))
            except OSError as exc:
                raise write_error(log_dir, exc, "TensorBoard events", kept=False) from exc

    def scalars(self, values: dict[str, float], step: int, prefix: str = "") -> None:
        if self.writer is None:
            return
        with self.failing_writes():
            for key, value in values.items():
                self.writer.add_scalar(prefix + key, float(value), step)

    @contextlib.contextmanager
    def failing_writes(self):
        """Turn the event writer's failure (its thread's OSError, raised on the next call) into a
        WriteError naming the TensorBoard folder and the cause."""
        try:
            yield
        except (OSError, RuntimeError) as exc:
            error = write_error(self.writer.log_dir, exc, "TensorBoard events", kept=False)
            if error is None:
                raise
            self.writer = None   # the events are given up; the other outputs stay as they are
            raise error from exc

    def close(self) -> None:
        if self.writer is not None:
            with self.failing_writes():
                self.writer.flush()
                self.writer.close()


def git_revision() -> str:
    """Short git revision of the code (with '+dirty' for uncommitted changes), or 'unknown'."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def banner(logger: logging.Logger, job: str, cfg_text: str, device: torch.device, world_size: int,
           extra: dict[str, Any] | None = None) -> None:
    """Log the start-of-run banner: code revision, versions, devices, world size, resolved config."""
    lines = [f"=== {job} === {time.strftime('%Y-%m-%d %H:%M:%S')}",
             f"git {git_revision()} | python {platform.python_version()} | torch {torch.__version__}",
             f"device {device}" + (f" ({torch.cuda.get_device_name(device)})"
                                  if device.type == "cuda" else "")
             + f" | world size {world_size}"]
    for key, value in (extra or {}).items():
        lines.append(f"{key}: {value}")
    lines.append("config:\n" + cfg_text)
    logger.info("\n".join(lines))


def format_duration(seconds: float) -> str:
    """'45 s', '12 min 05 s' or '3 h 07 min': a wall time for log lines."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def eta_text(epochs_done: int, epochs_total: int, epoch_seconds: float) -> str:
    """'epoch time 1 min 05 s, ETA 3 h 07 min' for the epoch line: epochs left x the measured
    time of the last epoch (an estimate; a plateau stop or min-lr stop can end the run earlier)."""
    left = max(0, epochs_total - epochs_done)
    eta = "done" if left == 0 else f"ETA {format_duration(left * epoch_seconds)}"
    return f"epoch time {format_duration(epoch_seconds)}, {eta}"


def steps_text(loader_steps: int, max_steps: int) -> str:
    """'12 steps per epoch', or '3 steps per epoch (--max-steps-per-epoch 3; a full epoch has
    12)': the steps an epoch really runs."""
    if max_steps and max_steps < loader_steps:
        return (f"{max_steps} steps per epoch (--max-steps-per-epoch {max_steps}; a full epoch "
                f"has {loader_steps})")
    return f"{loader_steps} steps per epoch"


class Throughput:
    """Samples per second and the share of the time spent waiting for data, over an epoch.

    On a CUDA ``device`` each step's end waits for the device (``torch.cuda.synchronize``):
    kernels run asynchronously, and without a grad scaler (bf16, float32) nothing in the step
    waits for the backward pass, so the wait for the next batch would otherwise count time in
    which the GPU was still busy with the previous step. The figure is then the share of wall time
    in which the device had finished its step and the next batch had not arrived. One
    synchronisation per step costs little: the next step's loss check waits for the device anyway.
    """

    def __init__(self, device: torch.device | None = None):
        self.wait_s = self.busy_s = 0.0
        self.samples = 0
        self.sync = device is not None and device.type == "cuda"
        self.device = device
        self.t_start = self.t_last = self.t_data = time.perf_counter()

    def data_ready(self) -> None:
        """The next batch has arrived: the wait for it ends, its step begins."""
        self.t_data = time.perf_counter()

    def step_done(self, samples: int) -> None:
        """The step's work is queued: wait for the device to finish it, then count it."""
        if self.sync:
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.samples += samples
        self.wait_s += self.t_data - self.t_last
        self.busy_s += now - self.t_data
        self.t_last = now

    @property
    def samples_per_s(self) -> float:
        return self.samples / max(1e-9, self.wait_s + self.busy_s)

    @property
    def data_wait(self) -> float:
        return self.wait_s / max(1e-9, self.wait_s + self.busy_s)
