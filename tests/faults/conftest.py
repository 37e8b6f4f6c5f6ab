"""Fixtures of the fault-injection suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .helpers import latest, pretrain_args, run_script

if not hasattr(os, "fork"):  # helpers.EntryPoint forks this process to run the scripts
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def base_run(tiny_ucf, tmp_path_factory) -> Path:
    """A finished one-epoch, one-step pretraining run (width-8 R3D-18, 16 px) on tiny_ucf.

    Tests copy it (helpers.copy_run) before resuming or damaging anything.
    """
    out = tmp_path_factory.mktemp("base_run") / "run"
    result = run_script("train_pretrain.py", *pretrain_args(tiny_ucf, out,
                                                            "--max-steps-per-epoch", "1"))
    assert result.returncode == 0, result.output[-3000:]
    assert latest(out).is_file()
    return out
