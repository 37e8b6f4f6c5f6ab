"""Shared tools of the fault-injection suite: running the scripts as separate processes, planting
bad files, reading run folders.

Running an entry point. A fresh interpreter spends 5-12 s importing torch and torchvision before a
script reads its first flag, which would make this suite take many minutes. `EntryPoint` therefore
forks this test process (torch already imported) and runs the script file as `__main__` in the child
(`runpy.run_path`, the same code path as `python train_pretrain.py ...`), then the exit handlers a
fresh interpreter would have: the child has its own pid, process group, signals, exit status and
stdout/stderr files, and it inherits monkeypatches (the way faults are planted inside a run).
Where the interpreter itself matters (torchrun; what happens at interpreter exit), the tests use a
real `subprocess` instead.
"""

from __future__ import annotations

import atexit
import faulthandler
import json
import os
import runpy
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from tests.test_pretrain import tiny_args

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------
# Entry points in a separate process
# --------------------------------------------------------------------------------------------

@dataclass
class Finished:
    """What a finished process left: exit status (negative = killed by that signal) and streams."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class EntryPoint:
    """``python SCRIPT ARGS...`` run in a forked child of this process (see the module docstring).

    Args:
        script: path relative to the repository root (e.g. "train_pretrain.py").
        args: command-line arguments.
        env: extra environment variables for the child.
    The child leads its own process group, so ``os.killpg(ep.pid, sig)`` reaches it and its
    DataLoader workers, as a cluster scheduler's signal would.
    """

    def __init__(self, script: str, args: list[str], env: dict[str, str] | None = None):
        self.script = script
        self._files = [tempfile.TemporaryFile(mode="w+b") for _ in range(2)]
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child never returns from here
            self._child(script, [str(a) for a in args], env or {})
        try:
            os.setpgid(pid, pid)  # also here, so that a killpg right after the fork finds the group
        except OSError:
            pass                  # the child got there first, or has already exited
        self.pid = pid
        self.returncode: int | None = None

    def _child(self, script: str, args: list[str], env: dict[str, str]) -> None:
        code = 1
        try:
            os.setpgid(0, 0)
            os.dup2(self._files[0].fileno(), 1)
            os.dup2(self._files[1].fileno(), 2)
            sys.stdout = open(1, "w", buffering=1, closefd=False)
            sys.stderr = open(2, "w", buffering=1, closefd=False)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            # A hung child writes every thread's stack to its stderr on SIGUSR1 (see wait).
            faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
            os.environ.update(env)
            os.chdir(ROOT)
            _fresh_logger()
            # The runs are on the CPU (--device cpu), and a child forked from a process that used
            # CUDA cannot use it: keep code that asks (--device auto) off the GPU, unless a test
            # planted stand-in GPUs (tests/test_cuda_ready.FakeCuda).
            if not getattr(torch.cuda.is_available, "cuda_stand_in", False):
                torch.cuda.is_available = lambda: False
            sys.argv = [script, *args]
            _fresh_exit_handlers()
            code = _run_as_main(str(ROOT / script))
            atexit._run_exitfuncs()  # interpreter exit: may wait for child processes
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def poll(self) -> int | None:
        """The exit status once the child ended, else None."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> Finished:
        """Wait up to ``timeout`` s; on expiry SIGKILL the child's group and fail the test."""
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                self._dump_stacks()
                self.kill()
                raise AssertionError(f"{self.script} (pid {self.pid}) still running after "
                                     f"{timeout:.0f} s (killed). Its stdout:\n"
                                     f"{self._read(0)[-2000:]}\nIts stderr, ending with every "
                                     f"thread's stack:\n{self._read(1)[-6000:]}")
            time.sleep(0.05)
        return Finished(self.returncode, self._read(0), self._read(1))

    def _dump_stacks(self) -> None:
        """Ask a hung child for every thread's Python stack (faulthandler, set up in _child)."""
        try:
            os.kill(self.pid, signal.SIGUSR1)
        except ProcessLookupError:
            return
        time.sleep(1.0)

    def kill(self) -> None:
        """SIGKILL the child's process group and wait until every process of it has ended: a
        member that outlives the leader (a subprocess the child had just forked) still holds
        what the child opened, such as the run folder's lock, which the next job would find
        held (seen once in the suite)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        deadline = time.monotonic() + 30
        while (left := _living_members(self.pid)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not left, f"processes {left} of {self.script}'s group outlived SIGKILL for 30 s"

    def _read(self, index: int) -> str:
        handle = self._files[index]
        handle.seek(0)
        return handle.read().decode("utf-8", errors="replace")


def _living_members(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that have not exited (zombies have: they hold no files)."""
    living = []
    if not Path("/proc/self/stat").exists():
        return living                                 # no /proc (macOS): nothing to wait on
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue                                  # exited while we looked
        state, _ppid, group = stat[stat.rindex(")") + 2:].split()[:3]
        if int(group) == pgid and state not in "ZX":
            living.append(int(entry.name))
    return living


def _fresh_logger() -> None:
    """Forget the parent's run logger set-up (its handlers point at the parent's run folders)."""
    import logging
    logger = logging.getLogger("tclr")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger._tclr_configured = False


def _fresh_exit_handlers() -> None:
    """The exit handlers a fresh interpreter running the scripts has, instead of this process's:
    multiprocessing's (terminates, then joins, daemonic children such as DataLoader workers) and
    the DataLoader's exit flag; the script adds its own while it runs."""
    import multiprocessing.util
    from torch.utils.data import _utils as data_utils
    atexit._clear()
    atexit.register(multiprocessing.util._exit_function)
    atexit.register(data_utils._set_python_exit_flag)


def _run_as_main(path: str) -> int:
    """Run a script file as ``__main__`` the way the interpreter does; return its exit status."""
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:  # what the interpreter does with an uncaught exception
        traceback.print_exc()
        return 1
    return 0


def run_script(script: str, *args, env: dict[str, str] | None = None,
               timeout: float = 180) -> Finished:
    """Run an entry point to its end in a separate process (see EntryPoint)."""
    return EntryPoint(script, list(args), env).wait(timeout)


def wait_for(predicate, timeout: float, what: str, proc: EntryPoint | None = None,
             interval: float = 0.02) -> None:
    """Poll ``predicate`` every ``interval`` s; fail naming ``what`` after ``timeout`` s or when
    ``proc`` ended first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (status {proc.returncode}) before {what}:\n"
                                 + proc.wait(1).output[-3000:])
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f} s")
        time.sleep(interval)


def assert_clean_error(result: Finished, *fragments: str, status: int = 2) -> str:
    """The process ended with ``status``, one ``error:`` line on stderr holding every fragment
    (the message may continue on indented lines), and no traceback anywhere. Returns the message."""
    assert result.returncode == status, (result.returncode, result.output[-3000:])
    assert "Traceback" not in result.output, result.output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    message = result.stderr[result.stderr.index(errors[0]):]
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------

def pretrain_args(data_root: Path, out: Path, *extra: str) -> list[str]:
    """tests/test_pretrain.py's tiny run on a UCF101-layout folder, at 16 px, one 4-step epoch."""
    return tiny_args(data_root, out, "--dataset", "ucf101", "--resolution", "16",
                     "--max-steps-per-epoch", "0", *extra)


def eval_args(data_root: Path, out: Path, *extra: str) -> list[str]:
    """A one-step linear/finetune/retrieval run on tiny_ucf, model as in the base_run fixture."""
    return ["--dataset", "ucf101", "--data-root", str(data_root), "--out-dir", str(out),
            "--backbone", "r3d18", "--width", "8", "--resolution", "16", "--batch-size", "4",
            "--num-workers", "0", "--device", "cpu", "--progress", "false", *extra]


def quick_eval_args(data_root: Path, out: Path, *extra: str) -> list[str]:
    """eval_args cut to the fewest clips and steps: one epoch of one step, one clip per video."""
    return eval_args(data_root, out, "--epochs", "1", "--max-steps-per-epoch", "1",
                     "--num-test-clips", "1", "--select", "last", *extra)


def retrieval_args(data_root: Path, out: Path, *extra: str) -> list[str]:
    """eval_args for nn_retrieval.py with one clip per video and no picture grid."""
    return eval_args(data_root, out, "--num-clips", "1", "--num-grid-queries", "0",
                     "--embedding-points", "0", *extra)


def folder_state(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``folder`` ("<dir>" for each folder): equal
    before and after a command means the command changed nothing there."""
    import hashlib
    state = {}
    for path in sorted(Path(folder).rglob("*")):
        rel = str(path.relative_to(folder))
        state[rel] = ("<dir>" if path.is_dir()
                      else hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def jsonl(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def latest(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / "latest.pth"


def copy_run(source: Path, dest: Path) -> Path:
    """A copy of a run folder (the copy's config.yaml and logs still name the source; harmless)."""
    shutil.copytree(source, dest)
    return dest


# --------------------------------------------------------------------------------------------
# Bad files
# --------------------------------------------------------------------------------------------

def train_videos(root: Path) -> list[Path]:
    """The videos of a UCF101-layout folder's trainlist01.txt, in list order."""
    lines = (root / "ucfTrainTestlist" / "trainlist01.txt").read_text().split()
    return [root / "UCF-101" / name for name in lines[::2]]


def write_overstated_header(source: str | Path, path: str | Path, claimed: int) -> Path:
    """A copy of the AVI ``source`` whose header claims ``claimed`` frames (main header's
    dwTotalFrames and the video stream header's dwLength); the frames themselves are unchanged."""
    data = bytearray(Path(source).read_bytes())
    avih = data.find(b"avih")
    strh = data.find(b"strh")
    if avih < 0 or strh < 0 or data[strh + 8:strh + 12] != b"vids":
        raise ValueError(f"{source}: not an AVI with a video stream header")
    data[avih + 24:avih + 28] = struct.pack("<I", claimed)   # chunk id, size, then 4 fields
    data[strh + 40:strh + 44] = struct.pack("<I", claimed)   # id, size, fccType..dwStart, dwLength
    Path(path).write_bytes(bytes(data))
    return Path(path)


def lock_file(path: Path, monkeypatch) -> str:
    """Make ``path`` unreadable: chmod 000, and where that does not stop this user (root reads
    anything), simulate the OS refusing to open it for OpenCV (and os.access, which the reader asks
    for the reason). The simulation lives in this process and in children forked from it.

    Returns:
        "chmod" or "simulated".
    """
    path.chmod(0)
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        return "chmod"
    import cv2
    locked = str(path)
    real_capture, real_access = cv2.VideoCapture, os.access

    def capture(*args, **kwargs):
        if args and str(args[0]) == locked:
            return real_capture()          # never opened, as for a file the OS refuses
        return real_capture(*args, **kwargs)

    def access(target, mode, *args, **kwargs):
        if str(target) == locked and mode & os.R_OK:
            return False
        return real_access(target, mode, *args, **kwargs)

    monkeypatch.setattr(cv2, "VideoCapture", capture)
    monkeypatch.setattr(os, "access", access)
    return "simulated"


def finite_weights(path: Path) -> bool:
    from engine import checkpoint as ck
    model = ck.load_checkpoint(path)["model"]
    return all(torch.isfinite(t).all() for t in model.values() if t.is_floating_point())
