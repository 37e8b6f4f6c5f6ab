"""Shared test set-up: markers (slow, gpu), thread limits, a tiny synthetic dataset fixture."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# Tiny convolutions run fastest on one thread, and subprocesses inherit the limit.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _one_thread() -> None:
    import torch
    torch.set_num_threads(1)


_one_thread()


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked slow (minutes each)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes minutes; skipped unless --run-slow")
    config.addinivalue_line("markers", "gpu: needs CUDA; skipped without it")


def pytest_collection_modifyitems(config, items):
    run_slow = config.getoption("--run-slow") or os.environ.get("RUN_SLOW") == "1"
    skip_slow = pytest.mark.skip(reason="slow: run with --run-slow")
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_ucf(tmp_path_factory) -> Path:
    """A 4-class synthetic dataset in the UCF101 layout: 6 videos/class, 72 frames of 64x48."""
    from dataloaders import synthetic
    root = tmp_path_factory.mktemp("tiny_ucf")
    synthetic.generate(str(root), classes=4, videos_per_class=6, frames=72, width=64, height=48,
                       seed=0, layout="ucf101", progress=False)
    return root
