"""CUDA-only paths checked on the CPU with stand-ins (issue 26).

No line of these paths can run here; each test swaps in the CUDA-side object instead: an enabled
``torch.amp.GradScaler("cpu")`` for the fp16 scaler, a stubbed ``torch.cuda`` (device count, RNG
states, set_device, synchronize) for the GPUs, a hand-built ``DistBackendError`` for NCCL. The same
paths on a real GPU are in tests/test_gpu.py (marker ``gpu``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import config as config_mod
from config import ConfigError
from engine import checkpoint as ck
from engine import distributed as dd
from engine import pretrain as pre
from engine import common
from engine.logging import Throughput


# --------------------------------------------------------------------------------------------
# Stand-ins
# --------------------------------------------------------------------------------------------

class FakeCuda:
    """``count`` visible GPUs as far as torch.cuda's device and RNG functions go.

    Setting an RNG state of a device that is not there raises IndexError, as torch does
    (``torch.cuda.default_generators[index]``). ``touched`` lists the CUDA calls made.
    """

    def __init__(self, monkeypatch, count: int):
        self.count = count
        self.states = {i: torch.full((8,), i, dtype=torch.uint8) for i in range(count)}
        self.touched: list = []
        self.current = None
        for name in ("device_count", "get_rng_state", "set_rng_state", "get_rng_state_all",
                     "set_rng_state_all", "set_device", "synchronize", "current_device"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))

        def is_available() -> bool:
            return True

        is_available.cuda_stand_in = True    # tests/faults/helpers.py keeps it in forked runs
        monkeypatch.setattr(torch.cuda, "is_available", is_available)

    def _index(self, device) -> int:
        device = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
        index = device.index if device.index is not None else 0
        if index >= self.count:
            raise IndexError(f"tuple index out of range (cuda:{index} of {self.count} GPUs)")
        return index

    def device_count(self) -> int:
        return self.count

    def current_device(self) -> int:
        return 0

    def get_rng_state(self, device="cuda") -> torch.Tensor:
        self.touched.append(("get_rng_state", device))
        return self.states[self._index(device)].clone()

    def set_rng_state(self, state: torch.Tensor, device="cuda") -> None:
        self.touched.append(("set_rng_state", device))
        self.states[self._index(device)] = state.clone()

    def get_rng_state_all(self) -> list:
        self.touched.append(("get_rng_state_all",))
        return [self.states[i].clone() for i in range(self.count)]

    def set_rng_state_all(self, states: list) -> None:
        self.touched.append(("set_rng_state_all",))
        for i, state in enumerate(states):
            self.set_rng_state(state, i)

    def set_device(self, device) -> None:
        self.touched.append(("set_device", torch.device(device)))
        self.current = torch.device(device)

    def synchronize(self, device=None) -> None:
        self.touched.append(("synchronize", device))


def tiny_pretrain_config(tmp_path, *extra: str):
    cfg, _ = config_mod.parse_config("pretrain", [
        "--backbone", "r3d18", "--width", "8", "--batch-size", "4", "--device", "cpu",
        "--out-dir", str(tmp_path / "run"), *extra])
    return cfg


def saved_checkpoint(tmp_path, scaler, rng: dict | None = None):
    """A pretraining checkpoint of a width-8 R3D-18 written with ``scaler``; (path, cfg)."""
    cfg = tiny_pretrain_config(tmp_path)
    model = pre.build_model(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    ckpt = pre.make_checkpoint(model, optimizer, scaler, pre.TrainState(), cfg,
                               [rng or ck.rng_state()])
    path = ck.atomic_save(ckpt, tmp_path / "latest.pth")
    return path, cfg


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


# --------------------------------------------------------------------------------------------
# 1. resuming across precisions
# --------------------------------------------------------------------------------------------

def test_resume_disabled_scaler_checkpoint_into_fp16_run(tmp_path):
    """A CPU / bf16 / float32 checkpoint stores the disabled scaler's {}; an fp16 run (enabled
    scaler) resumes it with a fresh scale and says so, instead of raising 'source state dict is
    empty'."""
    path, cfg = saved_checkpoint(tmp_path, torch.amp.GradScaler("cpu", enabled=False))
    assert ck.load_checkpoint(path)["scaler"] == {}
    model = pre.build_model(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)          # stands in for CUDA fp16
    log = Lines()
    logger = logging.getLogger("test_cuda_ready.scaler")
    logger.addHandler(log)
    pre.restore(path, model, optimizer, scaler, cfg, 0, logger)
    assert scaler.is_enabled() and scaler.get_scale() == 2.0 ** 16
    assert any("precision change" in line and "fp16 (grad scaler on)" in line
               for line in log.lines), log.lines


def test_resume_fp16_checkpoint_into_bf16_run_and_fp16_into_fp16(tmp_path):
    fp16 = torch.amp.GradScaler("cpu", init_scale=1024.0)
    fp16.scale(torch.ones((), requires_grad=True))   # the first use makes its state concrete
    path, cfg = saved_checkpoint(tmp_path, fp16)
    model = pre.build_model(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    # into a disabled scaler (bf16 / off): nothing to load, a note in the log
    note = pre.load_scaler_state(torch.amp.GradScaler("cpu", enabled=False),
                                 ck.load_checkpoint(path)["scaler"], path)
    assert note is not None and "precision change" in note
    # fp16 to fp16: the scale carries over
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    pre.restore(path, model, optimizer, scaler, cfg, 0)
    assert scaler.get_scale() == 1024.0


# --------------------------------------------------------------------------------------------
# 2 and 7. RNG states per process, and no CUDA for a CPU run
# --------------------------------------------------------------------------------------------

def test_rng_state_of_a_cpu_run_does_not_touch_cuda(monkeypatch):
    cuda = FakeCuda(monkeypatch, count=2)
    state = ck.rng_state(torch.device("cpu"))
    assert "cuda" not in state and "cuda_device" not in state
    assert cuda.touched == []
    ck.set_rng_state(state, torch.device("cpu"))
    assert cuda.touched == []


def test_rng_state_saves_only_this_process_device(monkeypatch):
    cuda = FakeCuda(monkeypatch, count=4)
    state = ck.rng_state(torch.device("cuda", 2))
    assert torch.equal(state["cuda_device"], cuda.states[2])
    assert ("get_rng_state_all",) not in cuda.touched


def test_resume_on_fewer_gpus_than_at_save_time(monkeypatch, tmp_path):
    """Saved by a process of a 4-GPU job (the earlier format: one state per visible GPU), resumed
    on a machine with one GPU: the state of the process's device index is restored, no
    IndexError."""
    cuda = FakeCuda(monkeypatch, count=4)
    old_format = {**ck.rng_state(), "cuda": cuda.get_rng_state_all()}   # as a455dad saved it
    path, cfg = saved_checkpoint(tmp_path, torch.amp.GradScaler("cpu", enabled=False), old_format)
    one = FakeCuda(monkeypatch, count=1)
    model = pre.build_model(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    monkeypatch.setattr(ck, "rng_state", lambda device=None: old_format)  # keep the saved one
    pre.restore(path, model, optimizer, torch.amp.GradScaler("cpu", enabled=False), cfg, 0,
                None, torch.device("cuda", 0))
    assert torch.equal(one.states[0], cuda.states[0])


def test_new_format_round_trip_across_gpu_counts(monkeypatch):
    four = FakeCuda(monkeypatch, count=4)
    four.states[3] = torch.arange(8, dtype=torch.uint8)
    saved = ck.rng_state(torch.device("cuda", 3))
    one = FakeCuda(monkeypatch, count=1)
    assert ck.set_rng_state(saved, torch.device("cuda", 0)) is None
    assert torch.equal(one.states[0], torch.arange(8, dtype=torch.uint8))


def test_cpu_checkpoint_resumed_on_gpu_says_cuda_rng_is_fresh(monkeypatch):
    FakeCuda(monkeypatch, count=1)
    note = ck.set_rng_state(ck.rng_state(torch.device("cpu")), torch.device("cuda", 0))
    assert note is not None and "cuda:0" in note and "bit-identical" in note


# --------------------------------------------------------------------------------------------
# 3. NCCL errors and two processes on one GPU
# --------------------------------------------------------------------------------------------

DUPLICATE_GPU = ("NCCL error in: /opt/pytorch/torch/csrc/distributed/c10d/NCCLUtils.hpp:275, "
                 "invalid usage (run with NCCL_DEBUG=WARN for details), NCCL version 2.20.5\n"
                 "ncclInvalidUsage: This usually reflects invalid usage of NCCL library.\n"
                 "Last error:\nDuplicate GPU detected : rank 1 and rank 0 both on CUDA device "
                 "1a000")
WATCHDOG_TIMEOUT = ("[Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7, "
                    "OpType=ALLREDUCE, NumelIn=6, NumelOut=6, Timeout(ms)=600000) ran for 600004 "
                    "milliseconds before timing out.")


@pytest.fixture
def torchrun_env(monkeypatch):
    """Process 1 of a two-process torchrun job on one machine."""
    for key, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1",
                       "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)


def test_duplicate_gpu_is_reported_as_its_cause_not_a_lost_peer(torchrun_env):
    from engine.cli import final_line
    exc = dist.DistBackendError(DUPLICATE_GPU)
    line = final_line(exc)
    assert line is not None and line.startswith("error: process 1: the NCCL backend failed")
    assert "same GPU" in line and "CUDA_VISIBLE_DEVICES" in line and "--nproc_per_node" in line
    assert "lost contact" not in line and "\n" not in line


def test_nccl_backend_error_ends_with_one_line_and_status_1(torchrun_env, capsys):
    from engine.cli import run_main

    def main(argv):
        raise dist.DistBackendError("NCCL error in: x.cpp:1, unhandled system error (run with "
                                    "NCCL_DEBUG=INFO for details), NCCL version 2.20.5")

    with pytest.raises(SystemExit) as info:
        run_main(main, [])
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "transport" in err[0] and "NCCL_DEBUG=INFO" in err[0], err


def test_nccl_watchdog_timeout_is_a_lost_peer(torchrun_env):
    exc = dist.DistBackendError(WATCHDOG_TIMEOUT)
    assert dd.is_peer_failure(exc) and not dd.is_backend_failure(exc)
    assert "lost contact" in dd.peer_failure_message(exc)


def test_backend_error_without_nccl_is_not_called_nccl(torchrun_env):
    """gloo raises DistBackendError too: its lost-pair text is a lost peer; another text is a
    backend error that does not blame NCCL."""
    closed = dist.DistBackendError("[gloo/transport/tcp/pair.cc:534] Connection closed by peer")
    assert dd.is_peer_failure(closed)
    other = dist.DistBackendError("[enforce fail at gloo/allreduce.cc:12] unknown")
    assert dd.is_backend_failure(other)
    line = dd.backend_failure_message(other)
    assert "process-group backend failed" in line and "NCCL backend" not in line


class NoProcessGroup:
    """init_process_group stand-in: records its arguments, never connects."""

    def __init__(self, monkeypatch):
        self.calls: list = []
        monkeypatch.setattr(dist, "init_process_group", self)

    def __call__(self, **kwargs):
        self.calls.append(kwargs)


def test_device_cuda_n_under_torchrun_is_refused(monkeypatch, torchrun_env):
    FakeCuda(monkeypatch, count=2)
    group = NoProcessGroup(monkeypatch)
    with pytest.raises(ConfigError,
                       match=r"--device cuda:0 with 2 processes.*CUDA_VISIBLE_DEVICES"):
        dd.init_distributed("cuda:0")
    assert group.calls == []


def test_more_processes_than_gpus_is_refused(monkeypatch, torchrun_env):
    FakeCuda(monkeypatch, count=1)
    group = NoProcessGroup(monkeypatch)
    with pytest.raises(ConfigError, match=r"2 processes on this machine .* but 1 visible GPU"):
        dd.init_distributed("auto")
    assert group.calls == []


def test_gloo_may_share_a_gpu_and_nccl_settings_are_deliberate(monkeypatch, torchrun_env):
    cuda = FakeCuda(monkeypatch, count=1)
    group = NoProcessGroup(monkeypatch)
    info = dd.init_distributed("auto", timeout_s=30, backend="gloo")
    assert info.device == torch.device("cuda", 0) and group.calls[0]["backend"] == "gloo"
    # NCCL with one GPU per process: the watchdog policy is set, the timeout passed on
    cuda.count = 2
    monkeypatch.delenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", raising=False)
    info = dd.init_distributed("auto", timeout_s=30)
    assert info.device == torch.device("cuda", 1) and cuda.current == torch.device("cuda", 1)
    assert group.calls[1]["backend"] == "nccl"
    assert group.calls[1]["timeout"].total_seconds() == 30
    assert os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == dd.NCCL_ENV[
        "TORCH_NCCL_ASYNC_ERROR_HANDLING"]


def test_one_process_on_cuda_n_selects_that_gpu(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    cuda = FakeCuda(monkeypatch, count=2)
    info = dd.init_distributed("cuda:1")
    assert info.device == torch.device("cuda", 1)
    assert cuda.current == torch.device("cuda", 1)


# --------------------------------------------------------------------------------------------
# 6. data_wait under bf16 / float32
# --------------------------------------------------------------------------------------------

def test_throughput_waits_for_the_device_on_cuda(monkeypatch):
    """Without a grad scaler nothing in the step waits for the backward; the meter does, so the
    device's remaining work counts as busy time, not as waiting for data."""
    calls = []

    def slow_sync(device=None):     # the GPU still has 50 ms of backward queued
        calls.append(device)
        time.sleep(0.05)

    monkeypatch.setattr(torch.cuda, "synchronize", slow_sync)
    meter = Throughput(torch.device("cuda", 0))
    meter.data_ready()
    meter.step_done(4)
    assert calls == [torch.device("cuda", 0)]
    assert meter.busy_s >= 0.05
    meter.data_ready()              # the next batch was already there
    assert meter.t_data - meter.t_last < 0.04

    calls.clear()
    cpu = Throughput(torch.device("cpu"))
    cpu.data_ready()
    cpu.step_done(4)
    assert calls == []


# --------------------------------------------------------------------------------------------
# 7. TF32 policy
# --------------------------------------------------------------------------------------------

@pytest.fixture
def tf32_flags():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("policy, matmul, conv", [("release", True, True),
                                                  ("torch_default", False, True),
                                                  ("off", False, False)])
def test_tf32_policy_sets_torch_flags(tf32_flags, policy, matmul, conv):
    torch.backends.cuda.matmul.allow_tf32 = not matmul
    torch.backends.cudnn.allow_tf32 = not conv
    text = common.apply_tf32(policy)
    assert torch.backends.cuda.matmul.allow_tf32 is matmul
    assert torch.backends.cudnn.allow_tf32 is conv
    assert text.startswith(policy)


def test_every_job_applies_tf32_and_names_it_in_the_banner(tf32_flags, tmp_path, monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert config_mod.PretrainConfig().tf32 == "release"     # the release's torch 1.9
    torch.backends.cuda.matmul.allow_tf32 = False
    cfg, _ = config_mod.parse_config("retrieval", ["--device", "cpu", "--out-dir",
                                                   str(tmp_path / "r")])
    log = Lines()
    logger = logging.getLogger("tclr")
    logger.addHandler(log)
    try:
        ctx = common.setup_run(cfg, "test job", defer_writes=True)
        ctx.close("failed")
    finally:
        logger.removeHandler(log)
    assert torch.backends.cuda.matmul.allow_tf32 is True
    assert any("tf32: release (TF32 in matmuls and convolutions)" in line for line in log.lines)


def test_sync_bn_on_the_cpu_is_a_config_error():
    """SyncBatchNorm runs on GPUs only: a CPU job with --sync-bn stops with one line before DDP
    (a455dad failed in the first forward pass with a ValueError traceback)."""
    from engine.steps import wrap_ddp
    with pytest.raises(ConfigError, match="--sync-bn true needs CUDA"):
        wrap_ddp(torch.nn.Sequential(torch.nn.BatchNorm1d(3)), torch.device("cpu"), sync_bn=True)


# --------------------------------------------------------------------------------------------
# 8. scripts/gpu_check.sh
# --------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_smoke_on_cpu(tmp_path):
    """SMOKE=1 DEVICE=cpu runs every step at tiny sizes; all pass, OUT holds three files, the
    summary lists every step and the numbers' lines, WORK is removed."""
    out = tmp_path / "check"
    env = {**os.environ, "SMOKE": "1", "DEVICE": "cpu", "OUT": str(out),
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.log", "steps.jsonl",
                                                     "summary.txt"]
    assert not Path(f"{out}.work").exists()
    summary = (out / "summary.txt").read_text()
    from scripts.gpu_check import STEPS
    for spec in STEPS:
        assert re.search(rf"^{spec.name}\s+ok\s", summary, re.MULTILINE), summary
    assert "numbers for docs/performance.md" in summary and "step best:" in summary
    records = [json.loads(x) for x in (out / "steps.jsonl").read_text().splitlines()[1:]]
    by_name = {r["name"]: r for r in records}
    assert by_name["bench"]["metrics"]["best"]["samples_per_s"] > 0
    assert by_name["pretrain_release"]["metrics"]["samples_per_s"] > 0
    assert "top1" in by_name["linear"]["metrics"] and "recall@1" in by_name["retrieval"]["metrics"]
    assert all(v == "ok" for v in by_name["nccl_probe"]["metrics"]["ops"].values())


def test_gpu_check_skips_what_the_budget_cannot_fit_and_goes_on_after_a_failure(tmp_path):
    """The step runner: a failing step is recorded and the summary exits 1; a step whose
    estimate exceeds the budget left is skipped; a step past its timeout is killed."""
    from scripts import gpu_check as gc
    out, work = tmp_path / "out", tmp_path / "work"
    assert gc.main(["init", "--out", str(out), "--work", str(work), "--budget-s", "100"]) == 0
    assert gc.main(["step", "--out", str(out), "env", "--metrics", "json", "--",
                    sys.executable, "-c", "print('{\"gpu\": \"X\"}')"]) == 0
    assert gc.main(["step", "--out", str(out), "data", "--", sys.executable, "-c",
                    "raise SystemExit(3)"]) == 0
    assert gc.main(["step", "--out", str(out), "bench", "--", sys.executable, "-c", "pass"]) == 0
    records = [json.loads(x) for x in (out / "steps.jsonl").read_text().splitlines()[1:]]
    assert [r["status"] for r in records] == ["ok", "failed (exit 3)", "skipped"]
    assert records[0]["metrics"] == {"gpu": "X"}
    assert gc.main(["summary", "--out", str(out)]) == 1
    text = (out / "summary.txt").read_text()
    assert "compile_ckpt" in text and "not run" in text and "machine: X" in text
    code, _ = gc._run_with_timeout([sys.executable, "-c", "import time; time.sleep(60)"], 1, out)
    assert code is None
