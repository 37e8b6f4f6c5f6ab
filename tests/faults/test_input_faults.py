"""Input faults, each through a script's real entry point in its own process: bad configuration
(unknown key, wrong type, impossible values) and bad checkpoints (another backbone, truncated, the
release's pickled files without --trust-checkpoint). Each ends with exit status 2 and one
``error:`` line saying what is wrong, where, and what to do; never a traceback.

tests/test_config.py checks the same configuration errors in-process, over more values.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from .helpers import (assert_clean_error, copy_run, eval_args, latest, pretrain_args,
                      run_script)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

def test_unknown_config_key(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("lr: 0.001\ndata:\n  splt: 2\n")
    result = run_script("train_pretrain.py", "--config", str(config))
    assert_clean_error(result, str(config), "unknown config key 'splt'", "did you mean: split")


def test_wrong_type(tmp_path):
    result = run_script("train_linear.py", "--epochs", "two", "--out-dir", str(tmp_path))
    assert_clean_error(result, "'epochs': expected an integer, got 'two'")


def test_clip_len_not_a_multiple_of_4(tmp_path):
    result = run_script("train_finetune.py", "--clip-len", "10", "--out-dir", str(tmp_path))
    assert_clean_error(result, "'clip_len': 10 must be a positive multiple of 4")


def test_resolution_below_the_minimum(tmp_path):
    result = run_script("train_pretrain.py", "--resolution", "8", "--out-dir", str(tmp_path))
    assert_clean_error(result, "'resolution': 8 is too small: the minimum is 16 pixels")


def test_batch_smaller_than_world_size(tmp_path):
    """Checked before joining the process group (no peer needed to see the error)."""
    result = run_script("nn_retrieval.py", "--batch-size", "1", "--out-dir", str(tmp_path),
                        env={"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    assert_clean_error(result, "global batch 1 is smaller than the 2 processes")


def test_zero_dist_timeout(tmp_path):
    result = run_script("train_pretrain.py", "--dist-timeout-s", "0", "--out-dir", str(tmp_path))
    assert_clean_error(result, "'dist_timeout_s': must be > 0")


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------

def test_checkpoint_of_another_backbone_to_linear(tiny_ucf, base_run, tmp_path):
    result = run_script("train_linear.py", *eval_args(
        tiny_ucf, tmp_path / "lin", "--backbone", "c3d", "--checkpoint", str(latest(base_run))))
    assert_clean_error(result, str(latest(base_run)), "r3d18 backbone of width 8",
                       "the model is c3d of width 8", "--backbone r3d18 --width 8")


def test_bare_state_dict_of_another_backbone_to_linear(tiny_ucf, tmp_path):
    """No metadata to compare: the first mismatching key, both shapes and a guess at the file's
    architecture."""
    from models import build_backbone
    path = tmp_path / "r2plus1d.pth"
    torch.save(build_backbone("r2plus1d18", width=8).state_dict(), path)
    result = run_script("train_linear.py", *eval_args(tiny_ucf, tmp_path / "lin",
                                                      "--checkpoint", str(path)))
    assert_clean_error(result, str(path), "shape mismatch at backbone key 'stem.0.weight'",
                       "seems to hold an r2plus1d18 backbone of width 8")


def test_resume_with_another_backbone(tiny_ucf, base_run, tmp_path):
    out = tmp_path / "run"
    result = run_script("train_pretrain.py", *pretrain_args(
        tiny_ucf, out, "--backbone", "r2plus1d18", "--resume", str(latest(base_run))))
    assert_clean_error(result, "written with backbone='r3d18'", "backbone='r2plus1d18'",
                       "pass the same --backbone")
    assert not latest(out).exists()


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_truncated_checkpoint_to_linear(tiny_ucf, base_run, tmp_path):
    path = _truncate(copy_run(base_run, tmp_path / "copy") / "checkpoints" / "latest.pth")
    result = run_script("train_linear.py", *eval_args(tiny_ucf, tmp_path / "lin",
                                                      "--checkpoint", str(path)))
    assert_clean_error(result, str(path), "truncated or corrupt", "download it again")


def test_truncated_latest_to_resume_auto(tiny_ucf, base_run, tmp_path):
    """The run folder's own latest.pth damaged (e.g. copied while being written by hand):
    --resume auto refuses it rather than starting over or crashing; best.pth is left alone."""
    out = copy_run(base_run, tmp_path / "run")
    _truncate(latest(out))
    best = (out / "checkpoints" / "best.pth").read_bytes()
    result = run_script("train_pretrain.py", *pretrain_args(
        tiny_ucf, out, "--epochs", "2", "--resume", "auto"))
    assert_clean_error(result, str(latest(out)), "truncated or corrupt", "--resume")
    assert (out / "checkpoints" / "best.pth").read_bytes() == best


def test_missing_checkpoint_to_retrieval(tiny_ucf, tmp_path):
    result = run_script("nn_retrieval.py", *eval_args(
        tiny_ucf, tmp_path / "ret", "--checkpoint", str(tmp_path / "absent.pth")))
    assert_clean_error(result, "absent.pth", "no such file")


class _ReleaseHead(nn.Module):
    """The release's projection head parameter names (fc1, bn1, fc2, bn2), width-8 sized."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1, self.bn1 = nn.Linear(dim, dim), nn.BatchNorm1d(dim)
        self.fc2, self.bn2 = nn.Linear(dim, 128, bias=False), nn.BatchNorm1d(128)


@pytest.fixture
def release_checkpoint(tmp_path) -> Path:
    """A file in the release's layout: DataParallel(Sequential(backbone, head)) state dict plus a
    pickled GradScaler object, as the authors' checkpoints hold (TCLR_SPEC section 10)."""
    from models import build_backbone
    backbone = build_backbone("r3d18", width=8)
    state = nn.Sequential(backbone, _ReleaseHead(backbone.out_channels)).state_dict()
    path = tmp_path / "model_best_e151_loss_9.770.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 151,
                "amp_scaler": torch.amp.GradScaler("cpu")}, path)
    return path


def test_release_checkpoint_needs_trust_flag(tiny_ucf, tmp_path, release_checkpoint):
    """Refused with the reason and the exact flag to pass; with that flag the run loads it."""
    out = tmp_path / "lin"
    args = eval_args(tiny_ucf, out, "--checkpoint", str(release_checkpoint), "--epochs", "1",
                     "--max-steps-per-epoch", "1", "--num-test-clips", "1", "--select", "last")
    message = assert_clean_error(run_script("train_linear.py", *args), str(release_checkpoint),
                                 "GradScaler", "arbitrary code", "--trust-checkpoint true")
    flag = re.search(r"pass (--trust-checkpoint \w+)", message).group(1).split()
    trusted = run_script("train_linear.py", *args, *flag)
    assert trusted.returncode == 0, trusted.output[-3000:]
    assert json.loads((out / "results.json").read_text())["init_source"] == "release"
