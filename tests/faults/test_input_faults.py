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


# --------------------------------------------------------------------------------------------
# Issue 25, "also found": each one error line, exit 2, nothing written
# --------------------------------------------------------------------------------------------

def refuse_reading(monkeypatch, *targets: Path) -> None:
    """Make ``open`` of ``targets`` fail as the OS refuses a file this user may not read (chmod
    does not stop root, so the refusal is planted; children forked by run_script inherit it)."""
    import builtins
    import io
    real_open = builtins.open
    refused = {str(t) for t in targets}

    def refusing_open(file, *args, **kwargs):
        if str(file) in refused:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", refusing_open)
    monkeypatch.setattr(io, "open", refusing_open)


def test_config_file_not_utf8(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_bytes("seed: 1\n# r\u00e9sum\u00e9 of the run\n".encode("latin-1"))
    result = run_script("train_pretrain.py", "--config", str(config),
                        "--out-dir", str(tmp_path / "out"))
    assert_clean_error(result, str(config), "is not UTF-8 text", "save it as UTF-8")
    assert not (tmp_path / "out").exists()


def test_unreadable_config_file(tmp_path, monkeypatch):
    config = tmp_path / "run.yaml"
    config.write_text("seed: 1\n")
    refuse_reading(monkeypatch, config)
    result = run_script("train_linear.py", "--config", str(config),
                        "--out-dir", str(tmp_path / "out"))
    assert_clean_error(result, f"cannot read config file {config}", "Permission denied")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, fragments", [
    ("lr: 0.001\nseed: 1\nlr: 0.1\n", ("key 'lr' is set twice", "run.yaml:3", "line 1")),
    ("data:\n  split: 2\n  lr: 0.1\n", ("config key 'lr' is under 'data:'", "at the top level")),
    ("seed: 1\ndata:\n  split: 2\n  split: 3\n", ("key 'split' is set twice",)),
], ids=["duplicate-key", "key-in-wrong-section", "duplicate-in-section"])
def test_config_file_structure(tmp_path, text, fragments):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    result = run_script("train_pretrain.py", "--config", str(config),
                        "--out-dir", str(tmp_path / "out"))
    assert_clean_error(result, *fragments)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script, args, fragments", [
    ("train_pretrain.py", ["--seed", str(2 ** 64)], ("'seed': must be below 2**63",)),
    ("train_pretrain.py", ["--weight-decay=-0.1"], ("'weight_decay': must be >= 0",)),
    ("train_linear.py", ["--weight-decay=-1e-4"], ("'weight_decay': must be >= 0",)),
    ("nn_retrieval.py", ["--eval-crop", "0.01"], ("'eval_crop': must be within [0.1, 1]",)),
    ("train_linear.py", ["--epochs", "0"], ("'epochs': must be >= 1 for linear evaluation",)),
    ("train_pretrain.py", ["--clip-len", "4"], ("'clip_len': 4 gives one local clip",
                                                "exactly 0", "--w-local-local 0")),
], ids=["seed-65-bits", "negative-wd-pretrain", "negative-wd-linear", "tiny-eval-crop",
        "linear-zero-epochs", "clip-len-4"])
def test_refused_at_config_validation(tiny_ucf, tmp_path, script, args, fragments):
    """Refused before start-up: no banner, no run folder, no picture of an untrained model."""
    out = tmp_path / "out"
    result = run_script(script, *eval_args(tiny_ucf, out, *args))
    assert_clean_error(result, *fragments)
    assert "===" not in result.output and not out.exists()


def test_clip_len_4_without_the_local_terms_is_accepted(tmp_path):
    import config
    cfg, _ = config.parse_config("pretrain", ["--clip-len", "4", "--w-local-local", "0",
                                              "--w-global-local", "0"])
    assert cfg.data.num_local == 1


def test_one_class_dataset_in_an_evaluation(tiny_ucf, tmp_path):
    import shutil
    root = tmp_path / "one_class"
    shutil.copytree(tiny_ucf, root)
    lists = root / "ucfTrainTestlist"
    for name in ("trainlist01.txt", "testlist01.txt"):
        keep = [line for line in (lists / name).read_text().splitlines()
                if line.startswith("Expand/")]
        (lists / name).write_text("\n".join(keep) + "\n")
    for script, args in (("train_linear.py", ["--epochs", "1", "--batch-size", "2",
                                              "--select", "last"]),
                         ("nn_retrieval.py", [])):
        out = tmp_path / script
        result = run_script(script, *eval_args(root, out, *args))
        assert_clean_error(result, "the train list holds only class", "at least two classes")
        assert not out.exists()


def test_unreadable_split_file_to_retrieval(tiny_ucf, tmp_path, monkeypatch):
    split = tiny_ucf / "ucfTrainTestlist" / "testlist01.txt"
    refuse_reading(monkeypatch, split)
    result = run_script("nn_retrieval.py", *eval_args(tiny_ucf, tmp_path / "ret"))
    assert_clean_error(result, f"cannot read split file {split}", "permission denied")
    assert not (tmp_path / "ret").exists()


def test_unreadable_class_folder_to_retrieval(tiny_ucf, tmp_path, monkeypatch):
    """As for a chmod 000 folder: its files cannot be stat'ed, the folder cannot be listed."""
    import os
    import shutil
    root = tmp_path / "ucf"
    shutil.copytree(tiny_ucf, root)
    folder = str(root / "UCF-101" / "Shrink")
    real_stat, real_listdir = os.stat, os.listdir

    def stat(path, *args, **kwargs):
        if str(path).startswith(folder + os.sep):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    def listdir(path="."):
        if str(path) == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real_listdir(path)
    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "listdir", listdir)
    result = run_script("nn_retrieval.py", *eval_args(root, tmp_path / "ret"))
    assert_clean_error(result, f"cannot read folder {folder}", "permission denied")
    assert not (tmp_path / "ret").exists()


def test_unreadable_checkpoint_to_retrieval(tiny_ucf, base_run, tmp_path, monkeypatch):
    path = copy_run(base_run, tmp_path / "copy") / "checkpoints" / "best.pth"
    refuse_reading(monkeypatch, path)
    result = run_script("nn_retrieval.py", *eval_args(tiny_ucf, tmp_path / "ret",
                                                      "--checkpoint", str(path)))
    message = assert_clean_error(result, f"cannot read checkpoint {path}", "permission denied")
    assert "truncated or corrupt" not in message
    assert not (tmp_path / "ret").exists()


@pytest.mark.parametrize("text, kind", [('{"top1": 61.2}\n', "a JSON file"),
                                        ("epoch,loss\n1,3.2\n", "a text file")])
def test_json_or_text_file_as_checkpoint(tiny_ucf, tmp_path, text, kind):
    path = tmp_path / "results.pth"
    path.write_text(text)
    result = run_script("train_linear.py", *eval_args(tiny_ucf, tmp_path / "lin",
                                                      "--checkpoint", str(path)))
    message = assert_clean_error(result, f"{path} is not a checkpoint: {kind}")
    assert "truncated or corrupt" not in message


def test_dangling_video_symlink(tiny_ucf, tmp_path):
    import shutil
    root = tmp_path / "ucf"
    shutil.copytree(tiny_ucf, root)
    video = root / "UCF-101" / (root / "ucfTrainTestlist" / "trainlist01.txt").read_text().split()[0]
    target = tmp_path / "moved" / video.name
    video.unlink()
    video.symlink_to(target)
    result = run_script("train_linear.py", *eval_args(root, tmp_path / "lin"))
    message = assert_clean_error(result, f"{video} (a dangling symlink to {target}")
    assert "near match" not in message


def test_synthetic_generator_into_unwritable_folder(tmp_path, monkeypatch, capsys):
    """The generator refuses as the OS does for a folder this user may not write into."""
    import os
    from dataloaders.synthetic import generator
    parent = tmp_path / "locked"
    parent.mkdir()
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if str(path).startswith(str(parent) + os.sep):
            raise PermissionError(13, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)
    monkeypatch.setattr(os, "mkdir", mkdir)
    out = parent / "synthetic"
    assert generator.main(["--out", str(out), "--classes", "2", "--videos-per-class", "4",
                           "--frames", "8", "--width", "16", "--height", "16", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: could not write synthetic dataset {out}: permission denied"), err
    assert list(parent.iterdir()) == []
