"""Training faults: preemption, a kill during a checkpoint write, a full disk, a non-finite loss,
and a lost peer process of a multi-process job. In every case the completed work is kept and the
run ends (never hangs) with a clear message.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from engine import checkpoint as ck
from tests.ports import free_port, torchrun_argv

from .helpers import (ROOT, EntryPoint, assert_clean_error, copy_run, finite_weights, jsonl,
                      latest, pretrain_args, run_script, wait_for)


# --------------------------------------------------------------------------------------------
# SIGTERM (preemption)
# --------------------------------------------------------------------------------------------

def test_sigterm_mid_epoch_saves_and_resume_finishes(tiny_ucf, tmp_path):
    """SIGTERM to the whole process group (as a scheduler sends it; DataLoader workers included)
    after the first step: exit 0 with latest.pth holding the partial epoch; --resume auto
    continues from there and finishes both epochs (8 steps in all)."""
    out = tmp_path / "run"
    args = pretrain_args(tiny_ucf, out, "--epochs", "2", "--save-every-steps", "1",
                         "--num-workers", "2")
    proc = EntryPoint("train_pretrain.py", args)
    wait_for(lambda: latest(out).is_file(), 120, "checkpoint after the first step", proc)
    os.killpg(proc.pid, signal.SIGTERM)
    result = proc.wait(60)
    assert result.returncode == 0, result.output[-3000:]
    assert "Traceback" not in result.output
    state = ck.load_checkpoint(latest(out))["train_state"]
    assert state["step_in_epoch"] > 0, state
    log = (out / "log.txt").read_text()
    assert f"stopped by signal {int(signal.SIGTERM)}" in log and "--resume auto" in log

    resumed = run_script("train_pretrain.py", *args, "--resume", "auto")
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert (f"{state['step_in_epoch']} steps of epoch {state['epoch'] + 1} done"
            in (out / "log.txt").read_text())
    assert [record["epoch"] for record in jsonl(out)] == [0, 1]
    final = ck.load_checkpoint(latest(out))
    assert final["train_state"]["epoch"] == 2 and final["step"] == 8


# --------------------------------------------------------------------------------------------
# SIGKILL during a checkpoint write
# --------------------------------------------------------------------------------------------

WRITER = '''
import sys
import torch
from engine.checkpoint import FORMAT, FORMAT_VERSION, atomic_save

path, step = sys.argv[1], int(sys.argv[2])
while True:  # 32 MB checkpoints, each filled with its step number
    atomic_save({"format": FORMAT, "format_version": FORMAT_VERSION, "step": step,
                 "model": {"w": torch.full((8_000_000,), float(step))}}, path)
    step += 1
'''


def _kill_writer(script: Path, path: Path, step: int, during_write: bool, rng) -> bool:
    """Start a writer from ``step``; SIGKILL it while it writes (or at a random moment).

    Returns:
        whether the kill left the writer's temporary file behind (it landed inside a write).
    """
    proc = EntryPoint(str(script), [str(path), str(step)])
    temp = path.with_name(f".{path.name}.tmp-{proc.pid}")
    try:
        if during_write:
            wait_for(temp.exists, 60, f"temporary file {temp.name}", proc, interval=0.001)
            time.sleep(rng.uniform(0.0, 0.005))
        else:
            time.sleep(rng.uniform(0.05, 1.5))
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30).returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:   # a wait above failed: never leave the writer running
            proc.kill()
    return temp.exists()


@pytest.mark.parametrize("rounds", [pytest.param(4, id="4-kills"),
                                    pytest.param(20, id="20-kills", marks=pytest.mark.slow)])
def test_sigkill_during_checkpoint_write_keeps_previous_latest(tmp_path, rounds):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    path = tmp_path / "checkpoints" / "latest.pth"
    ck.atomic_save({"format": ck.FORMAT, "format_version": ck.FORMAT_VERSION, "step": 0,
                    "model": {"w": torch.zeros(8)}}, path)
    rng = random.Random(0)
    step, mid_write = 0, 0
    for round_ in range(rounds):
        mid_write += _kill_writer(script, path, step + 1, during_write=round_ % 2 == 0, rng=rng)
        ckpt = ck.load_checkpoint(path)               # never torn: the old or a complete new one
        assert ckpt["step"] >= step
        assert bool((ckpt["model"]["w"] == ckpt["step"]).all())
        step = ckpt["step"]
    assert mid_write >= 1                            # kills did land inside writes
    ck.atomic_save(ck.load_checkpoint(path), path)   # the next good write clears them away
    assert [p.name for p in path.parent.iterdir()] == ["latest.pth"]


# --------------------------------------------------------------------------------------------
# Full disk
# --------------------------------------------------------------------------------------------

def test_full_disk_while_saving_keeps_previous_checkpoint(tiny_ucf, base_run, tmp_path,
                                                          monkeypatch):
    """torch.save runs out of space half-way: exit 2 with a message saying the disk is full;
    latest.pth is byte-for-byte the previous one and no partial file is left beside it."""
    out = copy_run(base_run, tmp_path / "run")
    before = latest(out).read_bytes()

    def no_space(obj, handle, *args, **kwargs):
        handle.write(b"\0" * 4096)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", no_space)       # inherited by the forked run
    result = run_script("train_pretrain.py",
                        *pretrain_args(tiny_ucf, out, "--max-steps-per-epoch", "1",
                                       "--epochs", "2", "--resume", "auto"))
    assert_clean_error(result, "the disk is full", "latest.pth", "intact")
    assert latest(out).read_bytes() == before
    # best.json: which rule chose best.pth (engine.monitor.write_best_note)
    assert sorted(p.name for p in latest(out).parent.iterdir()) == ["best.json", "best.pth",
                                                                     "latest.pth"]



# --------------------------------------------------------------------------------------------
# Non-finite loss (the in-process variant is tests/test_pretrain.py::
# test_nonfinite_loss_stops_without_saving; this one goes through the script's exit path)
# --------------------------------------------------------------------------------------------

def test_nan_loss_mid_epoch_stops_with_step_and_terms(tiny_ucf, tmp_path, monkeypatch):
    """NaN in local_local at the third step, checkpoints every step: exit 2 naming the step and the
    term; latest.pth is the one after step 2, finite, not the poisoned step's."""
    import losses
    real = losses.tclr_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            terms["local_local"] = terms["local_local"] * float("nan")
            terms["total"] = terms["total"] + terms["local_local"]
        return terms
    monkeypatch.setattr(losses, "tclr_loss", poisoned)
    out = tmp_path / "run"
    result = run_script("train_pretrain.py",
                        *pretrain_args(tiny_ucf, out, "--save-every-steps", "1"))
    assert_clean_error(result, "non-finite loss at epoch 1, step 3", "'local_local': nan",
                       "last good checkpoint is intact")
    ckpt = ck.load_checkpoint(latest(out))
    assert ckpt["step"] == 2 and finite_weights(latest(out))
    assert jsonl(out) == []


# --------------------------------------------------------------------------------------------
# A lost peer in a two-process job
# --------------------------------------------------------------------------------------------

def _start_pair(data_root: Path, out: Path, timeout_s: int) -> list[EntryPoint]:
    """Two training processes joined as torchrun would join them (env:// rendezvous)."""
    port = str(free_port())
    args = pretrain_args(data_root, out, "--epochs", "50", "--save-every-steps", "1",
                         "--dist-timeout-s", str(timeout_s))
    return [EntryPoint("train_pretrain.py", args,
                       env={"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
            for rank in (0, 1)]


@pytest.mark.parametrize("fault, detail", [
    (signal.SIGKILL, "Connection"),      # the peer is gone: its sockets close
    (signal.SIGSTOP, "Timed out"),       # the peer hangs: --dist-timeout-s ends the wait
], ids=["killed", "hung"])
def test_lost_peer_ends_the_other_process(tiny_ucf, tmp_path, fault, detail):
    """Rank 1 killed (or frozen) after the first step: rank 0 ends within --dist-timeout-s plus a
    margin with one clear line (status 1), instead of hanging; the last checkpoint loads."""
    out = tmp_path / "run"
    timeout_s = 5
    ranks = _start_pair(tiny_ucf, out, timeout_s)
    try:
        wait_for(lambda: latest(out).is_file(), 150, "checkpoint after the first step", ranks[0])
        os.kill(ranks[1].pid, fault)
        started = time.monotonic()
        result = ranks[0].wait(timeout_s + 60)
        elapsed = time.monotonic() - started
    finally:
        for proc in ranks:
            proc.kill()
    message = assert_clean_error(result, "process 0 of 2 lost contact with another process",
                                 detail, "--resume auto", status=1)
    assert "\n" not in message.strip(), message
    assert elapsed < timeout_s + 45, elapsed
    assert ck.load_checkpoint(latest(out))["step"] >= 1


def _children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (from /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _rank_of(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    values = dict(item.split(b"=", 1) for item in environ if b"=" in item)
    return int(values[b"RANK"]) if b"RANK" in values else None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_torchrun_worker_killed_other_exits(tiny_ucf, tmp_path):
    """The same under a real torchrun: SIGKILL to rank 1; torchrun and rank 0 end within 90 s,
    rank 0 with the clear line instead of a traceback."""
    out = tmp_path / "run"
    args = pretrain_args(tiny_ucf, out, "--epochs", "50", "--save-every-steps", "1",
                         "--dist-timeout-s", "10")
    launcher = subprocess.Popen(
        torchrun_argv("train_pretrain.py", *args),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 240
        while not latest(out).is_file():
            assert launcher.poll() is None and time.monotonic() < deadline, "no first checkpoint"
            time.sleep(0.05)
        victim = next(pid for pid in _children(launcher.pid) if _rank_of(pid) == 1)
        os.kill(victim, signal.SIGKILL)
        started = time.monotonic()
        output, _ = launcher.communicate(timeout=90)
        elapsed = time.monotonic() - started
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    assert launcher.returncode != 0 and elapsed < 90
    assert "error: process 0 of 2 lost contact with another process" in output, output[-3000:]
    assert "[rank0]: Traceback" not in output
