"""Resume exactness that depends on the saved RNG state.

The pretraining loop itself draws nothing from the global generators (items are seeded per
(seed, epoch, video)), so the plain resume tests pass even when a checkpoint holds no RNG state.
Here a stand-in for any main-process consumer of randomness (dropout, a random augmentation in the
training step) scales the loss by draws from Python's, NumPy's and torch's global generators: a
resumed run reproduces the uninterrupted run's losses only when every one of them is restored, and
resuming from the same checkpoint without its "rng" entry gives other losses.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import losses
import train_pretrain
from engine import checkpoint as ck
from tests.test_pretrain import epoch_losses, tiny_args


@pytest.fixture
def random_loss(monkeypatch):
    """tclr_loss whose total is scaled by 1 + 0.01 * (random + numpy + torch draws)."""
    original = losses.tclr_loss

    def noisy(*args, **kwargs):
        terms = original(*args, **kwargs)
        draw = random.random() + float(np.random.rand()) + float(torch.rand(()))
        return {**terms, "total": terms["total"] * (1.0 + 0.01 * draw)}

    monkeypatch.setattr(losses, "tclr_loss", noisy)


def args(root, out, *extra: str) -> list[str]:
    return tiny_args(root, out, "--max-steps-per-epoch", "1", "--resolution", "16", *extra)


def totals(run_dir) -> list[float]:
    return [r["loss_total"] for r in epoch_losses(run_dir)]


def test_resume_restores_every_generator(tiny_ucf, tmp_path, random_loss):
    full = tmp_path / "full"
    assert train_pretrain.main(args(tiny_ucf, full, "--epochs", "2")) == 0
    part = tmp_path / "part"
    assert train_pretrain.main(args(tiny_ucf, part, "--epochs", "1")) == 0
    latest = part / "checkpoints" / "latest.pth"
    saved = ck.load_checkpoint(latest)
    assert saved["step"] == 1                         # one step per epoch (the flags above)
    assert len(saved["rng"]) == 1 and {"python", "numpy", "torch"} <= set(saved["rng"][0])
    # the same checkpoint without its RNG state, resumed into another folder
    bare = tmp_path / "bare"
    (bare / "checkpoints").mkdir(parents=True)
    ck.atomic_save({**saved, "rng": []}, bare / "checkpoints" / "latest.pth")
    assert train_pretrain.main(args(tiny_ucf, part, "--epochs", "2", "--resume", "auto")) == 0
    assert train_pretrain.main(args(tiny_ucf, bare, "--epochs", "2", "--resume", "auto")) == 0
    expected = totals(full)
    assert len(expected) == 2 and totals(part) == expected
    # without the saved state the second epoch's draws, hence its loss, differ
    (without,) = totals(bare)
    assert without != expected[1]
