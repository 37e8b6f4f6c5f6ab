"""Faults that would put a wrong number in a table without any error: a stale feature cache,
non-finite weights or features, test videos that evaluation rejects only after training, and split
files whose train and test lists overlap. Each is refused with one line (or, for a cache, not
reused, with the reason said) and nothing already saved changes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from dataloaders import check, synthetic
from engine import checkpoint as ck
from tests.videos import make_video

from .helpers import (assert_clean_error, copy_run, folder_state, latest, pretrain_args,
                      quick_eval_args, retrieval_args, run_script)


def _copy_dataset(tiny_ucf: Path, dest: Path) -> Path:
    shutil.copytree(tiny_ucf, dest)
    return dest


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _recalls(results: dict) -> dict:
    return {k: v for k, v in results.items() if k.startswith("recall@")}


# --------------------------------------------------------------------------------------------
# Retrieval feature cache
# --------------------------------------------------------------------------------------------

def test_feature_cache_is_not_reused_after_the_dataset_is_regenerated(tiny_ucf, tmp_path):
    """Same command three times: the second reuses the cache and says why that is valid; after
    the dataset is regenerated in place (same paths, other videos) the third recomputes, and its
    Recall@k equals a fresh run's on the new videos."""
    root = _copy_dataset(tiny_ucf, tmp_path / "ucf")
    out = tmp_path / "ret"
    args = retrieval_args(root, out)
    first = run_script("nn_retrieval.py", *args)
    assert first.returncode == 0, first.output[-3000:]
    second = run_script("nn_retrieval.py", *args, "--overwrite", "true")
    assert second.returncode == 0, second.output[-3000:]
    assert "train: reusing cached features" in second.output
    assert "random initialisation, seed 0, same 16 videos (path, size and mtime of each)" \
        in second.output
    assert _results(out)["features_from_cache"] is True

    synthetic.generate(str(root), classes=4, videos_per_class=6, frames=72, width=64, height=48,
                       seed=1, layout="ucf101", progress=False, overwrite=True)
    third = run_script("nn_retrieval.py", *args, "--overwrite", "true")
    assert third.returncode == 0, third.output[-3000:]
    assert "reusing cached features" not in third.output
    assert "train: extracted features of 16 videos" in third.output
    assert _results(out)["features_from_cache"] is False
    fresh = run_script("nn_retrieval.py", *retrieval_args(root, tmp_path / "fresh"))
    assert fresh.returncode == 0, fresh.output[-3000:]
    assert _recalls(_results(out)) == _recalls(_results(tmp_path / "fresh"))


def test_feature_cache_follows_checkpoint_content(tiny_ucf, base_run, tmp_path):
    """A checkpoint rewritten in place with other weights, same size and same mtime: not the
    same checkpoint, so the cached features are not reused."""
    ckpt = tmp_path / "model.pth"
    state = ck.load_checkpoint(latest(base_run))
    torch.save(state, ckpt)
    args = retrieval_args(tiny_ucf, tmp_path / "ret", "--checkpoint", str(ckpt))
    assert run_script("nn_retrieval.py", *args).returncode == 0
    stat = ckpt.stat()
    for value in state["model"].values():
        if value.is_floating_point():
            value.mul_(2)                   # in place: the file keeps its layout and size
    torch.save(state, ckpt)
    os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert ckpt.stat().st_size == stat.st_size and ckpt.stat().st_mtime_ns == stat.st_mtime_ns
    rerun = run_script("nn_retrieval.py", *args, "--overwrite", "true")
    assert rerun.returncode == 0, rerun.output[-3000:]
    assert "reusing cached features" not in rerun.output


# --------------------------------------------------------------------------------------------
# Non-finite settings, weights, features
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("script, flag, value", [
    ("train_pretrain.py", "--lr", "inf"), ("train_pretrain.py", "--temperature", "nan"),
    ("train_linear.py", "--lr", "inf"), ("train_finetune.py", "--weight-decay", "-inf"),
])
def test_non_finite_setting_is_refused(tmp_path, script, flag, value):
    result = run_script(script, f"{flag}={value}", "--out-dir", str(tmp_path / "run"))
    key = flag[2:].replace("-", "_")
    assert_clean_error(result, f"config key '{key}': must be a finite number, got {value}")
    assert not (tmp_path / "run").exists()


def test_non_finite_weights_are_never_saved(tiny_ucf, base_run, tmp_path, monkeypatch):
    """The optimizer step leaves NaN weights (the loss itself still finite): the epoch's save is
    refused with exit 2; latest.pth and best.pth stay the previous ones; log.txt ends with the
    same error line."""
    from engine import pretrain as pre
    real_step = pre.optimizer_step

    def poisoning(total, optimizer, scaler):
        real_step(total, optimizer, scaler)
        with torch.no_grad():
            optimizer.param_groups[0]["params"][0].fill_(float("nan"))
    monkeypatch.setattr(pre, "optimizer_step", poisoning)
    out = copy_run(base_run, tmp_path / "run")
    before = {name: (out / "checkpoints" / name).read_bytes() for name in ("latest.pth",
                                                                         "best.pth")}
    result = run_script("train_pretrain.py", *pretrain_args(
        tiny_ucf, out, "--max-steps-per-epoch", "1", "--epochs", "2", "--resume", "auto"))
    message = assert_clean_error(result, "refusing to write checkpoint", "latest.pth",
                                 "hold NaN or inf values", "is intact", "lower --lr")
    for name, data in before.items():
        assert (out / "checkpoints" / name).read_bytes() == data
    assert (out / "log.txt").read_text().rstrip().endswith(message.strip().splitlines()[-1])


@pytest.fixture
def nan_checkpoint(base_run, tmp_path) -> Path:
    """base_run's checkpoint with one backbone tensor set to NaN, saved without the guard."""
    state = ck.load_checkpoint(latest(base_run))
    name = next(k for k, v in state["model"].items()
                if k.startswith("backbone.") and v.is_floating_point())
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    path = tmp_path / "diverged.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize("script", ["train_linear.py", "nn_retrieval.py"])
def test_evaluation_refuses_non_finite_weights(tiny_ucf, tmp_path, nan_checkpoint, script):
    out = tmp_path / "eval"
    args = (quick_eval_args if script == "train_linear.py" else retrieval_args)(
        tiny_ucf, out, "--checkpoint", str(nan_checkpoint))
    assert_clean_error(run_script(script, *args), str(nan_checkpoint), "backbone weights",
                       "hold NaN or inf values", "cannot be evaluated")
    assert not out.exists()


def test_retrieval_refuses_non_finite_features(tiny_ucf, tmp_path, monkeypatch):
    """Finite weights whose features overflow (planted): no Recall@k is reported."""
    from engine import features
    real = features.video_features
    monkeypatch.setattr(features, "video_features",
                        lambda *args, **kwargs: real(*args, **kwargs) * float("inf"))
    out = tmp_path / "ret"
    result = run_script("nn_retrieval.py", *retrieval_args(tiny_ucf, out))
    assert_clean_error(result, "train features: 16 of 16 videos have NaN or inf features",
                       "random initialisation (seed 0)", "nothing was reported")
    assert not (out / "results.json").exists() and not list(out.rglob("*.pt"))


# --------------------------------------------------------------------------------------------
# Test videos too short for evaluation
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def short_test_videos(tiny_ucf, tmp_path_factory) -> tuple[Path, list[str]]:
    """tiny_ucf with its first two test videos replaced by 1- and 5-frame videos."""
    root = _copy_dataset(tiny_ucf, tmp_path_factory.mktemp("short") / "ucf")
    names = (root / "ucfTrainTestlist" / "testlist01.txt").read_text().split()[:2]
    paths = [str(root / "UCF-101" / name) for name in names]
    for path, frames in zip(paths, (1, 5)):
        make_video(path, frames)
    return root, paths


def test_preflight_check_judges_test_videos_by_evaluation_length(short_test_videos, capsys):
    root, paths = short_test_videos
    status = check.main(["--dataset", "ucf101", "--root", str(root), "--workers", "1",
                         "--no-progress"])
    out = capsys.readouterr().out
    assert status == 1
    assert "too short for evaluation clips (< 17 frames): 2" in out
    assert f"{paths[0]} (1 frames)" in out and f"{paths[1]} (5 frames)" in out
    assert "FAILED: 2 test/val videos are too short for the evaluation clips" in out


@pytest.mark.parametrize("script", ["train_linear.py", "train_finetune.py", "nn_retrieval.py"])
def test_short_test_videos_stop_evaluation_before_training(short_test_videos, tmp_path, script):
    root, paths = short_test_videos
    out = tmp_path / "eval"
    args = (retrieval_args if script == "nn_retrieval.py" else quick_eval_args)(root, out)
    message = assert_clean_error(run_script(script, *args), "2 of 8", "cannot be evaluated",
                                 f"{paths[0]}: 1 frames, 17 needed",
                                 f"{paths[1]}: 5 frames, 17 needed", "before training")
    assert "dataloaders.check" in message
    assert not out.exists()                 # nothing trained, nothing written


# --------------------------------------------------------------------------------------------
# Split files: overlap and duplicate lines
# --------------------------------------------------------------------------------------------

def _append(path: Path, line: str) -> None:
    with open(path, "a") as handle:
        handle.write(line + "\n")


def test_train_test_overlap_is_refused(tiny_ucf, tmp_path, capsys):
    root = _copy_dataset(tiny_ucf, tmp_path / "ucf")
    lists = root / "ucfTrainTestlist"
    leaked = (lists / "trainlist01.txt").read_text().split()[0]
    _append(lists / "testlist01.txt", leaked)
    for script in ("train_linear.py", "nn_retrieval.py"):
        out = tmp_path / script
        args = (retrieval_args if script == "nn_retrieval.py" else quick_eval_args)(root, out)
        assert_clean_error(run_script(script, *args), "1 videos are listed in both the train and "
                           "the test list", leaked, "Fix the split files")
        assert not out.exists()
    assert check.main(["--dataset", "ucf101", "--root", str(root), "--no-progress"]) == 2
    assert "listed in both" in capsys.readouterr().err


def test_duplicate_split_lines_are_reported(tiny_ucf, tmp_path, capsys):
    root = _copy_dataset(tiny_ucf, tmp_path / "ucf")
    lists = root / "ucfTrainTestlist"
    repeated = (lists / "trainlist01.txt").read_text().splitlines()[0]
    _append(lists / "trainlist01.txt", repeated)
    out = tmp_path / "ret"
    result = run_script("nn_retrieval.py", *retrieval_args(root, out))
    assert result.returncode == 0, result.output[-3000:]
    note = f"the train list names 1 videos more than once (e.g. {root / 'UCF-101'}/" \
           f"{repeated.split()[0]} 2 times)"
    assert note in result.output
    assert note in (out / "log.txt").read_text()
    check.main(["--dataset", "ucf101", "--root", str(root), "--workers", "1", "--no-progress"])
    assert note in capsys.readouterr().out
