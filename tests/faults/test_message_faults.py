"""User mistakes that used to end in a traceback, Ctrl-C outside the training loop, and messages
that name the fix. Each runs the entry point as a user would and checks the exit status, the one
line it prints, and that nothing already saved changed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from dataloaders import check

from .helpers import (EntryPoint, assert_clean_error, copy_run, eval_args, folder_state, jsonl,
                      latest, pretrain_args, quick_eval_args, retrieval_args, run_script,
                      train_videos, wait_for)


# --------------------------------------------------------------------------------------------
# One error line instead of a traceback
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag, value, fragment", [
    ("--device", "cuda", "--device cuda: CUDA is not available on this machine"),
    ("--seed", "-1", "config key 'seed': must be >= 0, got -1"),
    ("--proj-dim", "0", "config key 'proj_dim': must be >= 1, got 0"),
])
def test_bad_setting_is_one_line(tiny_ucf, tmp_path, flag, value, fragment):
    """(The forked runs see no CUDA: helpers.EntryPoint hides it, as on a CPU-only machine.)"""
    out = tmp_path / "run"
    result = run_script("train_pretrain.py", *pretrain_args(tiny_ucf, out, f"{flag}={value}"))
    assert_clean_error(result, fragment)
    assert not out.exists()


def test_cache_dir_that_is_a_file_is_refused_before_extraction(tiny_ucf, tmp_path):
    cache = tmp_path / "cache"
    cache.write_text("a file\n")
    result = run_script("nn_retrieval.py", *retrieval_args(tiny_ucf, tmp_path / "ret",
                                                           "--cache-dir", str(cache)))
    assert_clean_error(result, f"--cache-dir {cache} is an existing file")
    assert "extracted features" not in result.output
    assert not (tmp_path / "ret").exists()


@pytest.mark.parametrize("content, fragment", [
    ('{"job": "linear", "top1": 5', "is not valid JSON"),
    ("[1, 2]", "holds a JSON list, not the object a job writes"),
])
@pytest.mark.parametrize("script", ["scripts/summarize_runs.py", "scripts/make_tables.py"])
def test_corrupt_results_json(tmp_path, script, content, fragment):
    bad = tmp_path / "runs" / "linear" / "results.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(content)
    args = [f"x={tmp_path / 'runs'}"] if "summarize" in script else [str(tmp_path / "runs")]
    assert_clean_error(run_script(script, *args), str(bad), fragment)
    assert bad.read_text() == content


def _slow_down(monkeypatch, module, name: str, seconds: float):
    """Make ``module.name`` sleep ``seconds`` before each call (in this process and the runs
    forked from it); returns the original."""
    real = getattr(module, name)

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, slow)
    return real


def _interrupt_when(proc: EntryPoint, predicate, what: str) -> str:
    """SIGINT to the whole process group (as Ctrl-C in a terminal) once ``predicate`` holds."""
    wait_for(predicate, 120, what, proc)
    os.killpg(proc.pid, signal.SIGINT)
    return proc.wait(60)


def test_ctrl_c_during_the_linear_probe(tiny_ucf, tmp_path):
    """After its first epoch's checkpoint: exit 130, one line naming what was kept."""
    out = tmp_path / "lin"
    proc = EntryPoint("train_linear.py", quick_eval_args(tiny_ucf, out, "--epochs", "50"))
    result = _interrupt_when(proc, lambda: latest(out).is_file(), "the first epoch's checkpoint")
    assert result.returncode == 130, result.output[-3000:]
    assert "Traceback" not in result.output
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("interrupted:")]
    assert f"stopped by Ctrl-C; kept in {out}:" in line and "checkpoints/latest.pth" in line
    assert "no new results.json" in line and not (out / "results.json").exists()
    assert line in (out / "log.txt").read_text()


def test_ctrl_c_during_retrieval(tiny_ucf, tmp_path, monkeypatch):
    """Between the gallery's and the queries' extraction (slowed down here): the gallery's cached
    features are kept and named; a rerun reuses them."""
    from engine import features
    real = _slow_down(monkeypatch, features, "video_features", 0.5)
    out = tmp_path / "ret"
    args = retrieval_args(tiny_ucf, out)
    proc = EntryPoint("nn_retrieval.py", args)
    result = _interrupt_when(proc, lambda: list((out / "features").glob("train-*.pt")),
                             "the gallery's feature cache")
    assert result.returncode == 130, result.output[-3000:]
    assert "Traceback" not in result.output
    (cached,) = (out / "features").glob("train-*.pt")
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("interrupted:")]
    assert f"kept in {out}:" in line and f"features/{cached.name}" in line
    assert "rerun the same command with --overwrite true" in line
    monkeypatch.setattr(features, "video_features", real)
    rerun = run_script("nn_retrieval.py", *args, "--overwrite", "true")
    assert rerun.returncode == 0 and "train: reusing cached features" in rerun.output


def test_second_ctrl_c_during_pretraining_says_it_is_still_saving(tiny_ucf, tmp_path,
                                                                   monkeypatch):
    """Ctrl-C, then Ctrl-C again while the (slowed) save runs: the run says it is still saving,
    finishes the save and exits 0 with a loadable latest.pth."""
    from engine import checkpoint as ck
    _slow_down(monkeypatch, ck, "atomic_save", 2)
    out = tmp_path / "run"
    proc = EntryPoint("train_pretrain.py", pretrain_args(tiny_ucf, out, "--epochs", "5"))
    log = out / "log.txt"
    wait_for(lambda: log.is_file() and "steps per epoch" in log.read_text(), 120,
             "the training loop", proc)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGINT)
    result = proc.wait(90)
    assert result.returncode == 0, result.output[-3000:]
    assert "Traceback" not in result.output
    assert "Ctrl-C again: still saving" in result.stderr
    assert f"stopped by signal {int(signal.SIGINT)}" in log.read_text()
    assert ck.load_checkpoint(latest(out))["train_state"]["step_in_epoch"] >= 1


def test_amp_on_the_cpu_says_float32(tiny_ucf, tmp_path):
    out = tmp_path / "ret"
    result = run_script("nn_retrieval.py", *retrieval_args(tiny_ucf, out, "--amp", "bf16"))
    assert result.returncode == 0, result.output[-3000:]
    warning = "--amp bf16 has no effect on the CPU: this run computes in float32"
    assert warning in result.output and warning in (out / "log.txt").read_text()


# --------------------------------------------------------------------------------------------
# Messages that name the fix
# --------------------------------------------------------------------------------------------

def _dataset(tiny_ucf: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ucf"
    shutil.copytree(tiny_ucf, root)
    return root


def test_class_folder_spelled_in_another_case_is_found(tiny_ucf, tmp_path, capsys):
    """The split says Expand/..., the disk has EXPAND/ (UCF101 mixes HandstandPushups and
    HandStandPushups): folders match case-insensitively, as class names do."""
    root = _dataset(tiny_ucf, tmp_path)
    (root / "UCF-101" / "Expand").rename(root / "UCF-101" / "EXPAND")
    assert check.main(["--dataset", "ucf101", "--root", str(root), "--workers", "1",
                       "--no-progress"]) == 0
    assert "OK" in capsys.readouterr().out
    result = run_script("nn_retrieval.py", *retrieval_args(root, tmp_path / "ret"))
    assert result.returncode == 0, result.output[-3000:]
    assert json.loads((tmp_path / "ret" / "results.json").read_text())["num_gallery"] == 16


def test_missing_video_names_the_near_match(tiny_ucf, tmp_path):
    root = _dataset(tiny_ucf, tmp_path)
    video = train_videos(root)[4]
    video.rename(video.with_name(video.stem + " (1).avi"))
    result = run_script("train_pretrain.py", *pretrain_args(root, tmp_path / "run"))
    assert_clean_error(result, f"{video} (near match on disk: {video.stem} (1).avi)")


def test_directory_named_like_a_video(tiny_ucf, tmp_path, capsys):
    root = _dataset(tiny_ucf, tmp_path)
    video = train_videos(root)[2]
    video.unlink()
    video.mkdir()
    result = run_script("train_pretrain.py", *pretrain_args(root, tmp_path / "run"))
    assert_clean_error(result, f"{video} (a directory, not a video file)")
    assert check.main(["--dataset", "ucf101", "--root", str(root), "--workers", "1",
                       "--no-progress"]) == 1
    assert f"{video}: a directory, not a video file" in capsys.readouterr().out


def test_yaml_number_without_a_dot(tmp_path):
    """PyYAML reads 1e-3 (no dot) as a string; accepted as the command line accepts it."""
    config = tmp_path / "run.yaml"
    config.write_text("lr: 1e-3\nweight_decay: 5e-4\n")
    result = run_script("train_pretrain.py", "--config", str(config), "--print-config")
    assert result.returncode == 0, result.output[-3000:]
    assert "lr                           0.001" in result.stdout
    assert "weight_decay                 0.0005" in result.stdout


def test_config_or_checkpoint_that_is_a_directory(tiny_ucf, base_run, tmp_path):
    assert_clean_error(run_script("train_pretrain.py", "--config", str(base_run)),
                       f"--config {base_run} is a directory, not a config file",
                       str(base_run / "config.yaml"))
    out = tmp_path / "lin"
    result = run_script("train_linear.py", *quick_eval_args(tiny_ucf, out, "--checkpoint",
                                                            str(base_run / "checkpoints")))
    assert_clean_error(result, f"checkpoint {base_run / 'checkpoints'} is a directory")
    assert not out.exists()


def test_config_of_another_job(tiny_ucf, base_run, tmp_path):
    result = run_script("train_linear.py", "--config", str(base_run / "config.yaml"),
                        "--out-dir", str(tmp_path / "lin"))
    assert_clean_error(result, f"--config {base_run / 'config.yaml'} was written by a pretrain "
                       "job", "this is the linear job")


def test_too_few_videos_names_val_fraction(tiny_ucf, tmp_path):
    """16 train videos, batch 16: the default --val-fraction holds out one video per class, and
    that (not --label-fraction) leaves 12 < 16."""
    result = run_script("train_linear.py", *eval_args(tiny_ucf, tmp_path / "lin", "--batch-size",
                                                      "16", "--epochs", "1"))
    message = assert_clean_error(result, "12 labelled training videos, fewer than one batch (16)",
                                 "--val-fraction 0.1 holds out 4", "--select last")
    assert "--label-fraction" not in message


def test_resume_on_other_data_says_so(tiny_ucf, base_run, tmp_path):
    other = _dataset(tiny_ucf, tmp_path)
    out = copy_run(base_run, tmp_path / "run")
    result = run_script("train_pretrain.py", *pretrain_args(
        other, out, "--max-steps-per-epoch", "1", "--epochs", "2", "--resume", "auto"))
    assert result.returncode == 0, result.output[-3000:]
    assert (f"was trained on {tiny_ucf.resolve()} split 1, this run reads {other.resolve()} "
            "split 1: the resumed run is not the exact continuation") in result.output
    assert [record["epoch"] for record in jsonl(out)] == [0, 1]


def test_tilde_in_a_config_file_is_expanded(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("out_dir: ~/runs/pretrain\ndata:\n  data_root: ~/data/ucf101\n")
    result = run_script("train_pretrain.py", "--config", str(config), "--print-config",
                        env={"HOME": str(tmp_path)})
    assert result.returncode == 0, result.output[-3000:]
    assert f"out_dir                      '{tmp_path}/runs/pretrain'" in result.stdout
    assert f"data_root                    '{tmp_path}/data/ucf101'" in result.stdout
    assert "~" not in result.stdout
