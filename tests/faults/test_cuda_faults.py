"""GPU-side faults planted on the CPU (docs/faults.md, Training): the whole entry point runs with a
stubbed torch.cuda or a hand-built NCCL error, and what the user sees is one line.

The stand-ins are tests/test_cuda_ready.py's; the forked run inherits them (helpers.EntryPoint).
"""

from __future__ import annotations

import torch.distributed as dist

import engine.pretrain as pre
from tests.test_cuda_ready import DUPLICATE_GPU, FakeCuda

from .helpers import assert_clean_error, pretrain_args, run_script


def test_device_cuda_n_under_torchrun_stops_before_the_process_group(tmp_path, monkeypatch):
    FakeCuda(monkeypatch, count=2)
    result = run_script("train_pretrain.py", "--device", "cuda:0", "--out-dir", str(tmp_path),
                        env={"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1",
                             "LOCAL_WORLD_SIZE": "2"})
    assert_clean_error(result, "--device cuda:0 with 2 processes on this machine",
                       "CUDA_VISIBLE_DEVICES")


def test_nccl_configuration_error_is_one_line_naming_it(tiny_ucf, tmp_path, monkeypatch):
    def duplicate_gpu(*args, **kwargs):
        raise dist.DistBackendError(DUPLICATE_GPU)

    monkeypatch.setattr(pre, "forward_loss", duplicate_gpu)
    result = run_script("train_pretrain.py", *pretrain_args(tiny_ucf, tmp_path / "run"))
    message = assert_clean_error(result, "the NCCL backend failed because two processes of the "
                                 "job use the same GPU", "--nproc_per_node", status=1)
    assert "lost contact" not in message
