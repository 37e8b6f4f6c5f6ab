"""End-to-end pretraining on a tiny synthetic dataset: files, resume exactness, torchrun, signals."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train_pretrain
from engine import checkpoint as ck
from engine import pretrain as pre
from tests.pictures import assert_picture
from tests.ports import torchrun

ROOT = Path(__file__).resolve().parent.parent


def tiny_args(data_root: Path, out: Path, *extra: str) -> list[str]:
    return ["--dataset", "synthetic", "--data-root", str(data_root), "--out-dir", str(out),
            "--backbone", "r3d18", "--width", "8", "--resolution", "32", "--batch-size", "4",
            "--num-workers", "0", "--epochs", "1", "--max-steps-per-epoch", "2", "--device", "cpu",
            "--progress", "false", "--seed", "3", *extra]


def epoch_losses(run_dir: Path) -> list[dict]:
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_two_steps_write_checkpoint_and_logs(tiny_ucf, tmp_path):
    out = tmp_path / "run"
    assert train_pretrain.main(tiny_args(tiny_ucf, out)) == 0
    ckpt = ck.load_checkpoint(out / "checkpoints" / "latest.pth")
    assert ckpt["meta"] == {"backbone": "r3d18", "width": 8, "color": "bgr", "kind": "pretrain",
                            "clip_len": 16}
    assert ckpt["train_state"]["epoch"] == 1 and ckpt["step"] == 2
    assert any(k.startswith("backbone.") for k in ckpt["model"])
    assert any(k.startswith("head.") for k in ckpt["model"])
    (record,) = epoch_losses(out)
    for key in ("loss_total", "loss_ic_global", "loss_ic_local", "loss_local_local",
                "loss_global_local", "lr", "samples_per_s", "data_wait_fraction",
                "skipped_videos"):
        assert key in record
    assert record["lr"] == pytest.approx(1e-3 * 0.01)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "config.yaml").is_file() and (out / "checkpoints" / "best.pth").is_file()
    # TensorBoard: step scalars from the first step (log_every_steps is 10), and the epoch's lr
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(out / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("train/total")] == [1]
    assert [e.value for e in events.Scalars("epoch/lr")] == pytest.approx([1e-3 * 0.01])
    # the log counts epochs as the checkpoint names do (epoch N ends in epoch_000N.pth) and
    # states the steps an epoch really runs
    log = (out / "log.txt").read_text()
    assert "2 steps per epoch (--max-steps-per-epoch 2; a full epoch has" in log
    assert "epoch 1/1: loss" in log and "epoch time" in log and "done" in log
    assert_picture(out / "training_curves.png", 300, 400)
    # the backbone loads into a fresh model for evaluation
    from models import build_backbone, load_backbone_weights
    report = load_backbone_weights(build_backbone("r3d18", width=8),
                                   out / "checkpoints" / "latest.pth")
    assert report.color == "bgr" and not report.missing


def test_zero_epochs_announce_no_checkpoint(tiny_ucf, tmp_path):
    out = tmp_path / "zero"
    assert train_pretrain.main(tiny_args(tiny_ucf, out, "--epochs", "0")) == 0
    log = (out / "log.txt").read_text()
    assert "no epoch to run (0 done of --epochs 0); no checkpoint written" in log
    assert "checkpoints in" not in log and not (out / "checkpoints").exists()
    assert not (out / "training_curves.png").exists()


def test_resume_after_epoch_gives_same_losses(tiny_ucf, tmp_path):
    full = tmp_path / "full"
    train_pretrain.main(tiny_args(tiny_ucf, full, "--epochs", "2"))
    part = tmp_path / "part"
    train_pretrain.main(tiny_args(tiny_ucf, part, "--epochs", "1"))
    train_pretrain.main(tiny_args(tiny_ucf, part, "--epochs", "2", "--resume", "auto"))
    a, b = epoch_losses(full), epoch_losses(part)
    assert [r["epoch"] for r in b] == [0, 1]
    # whole-run ETA after epoch 1 of 2: one epoch left at the measured epoch time
    assert re.search(r"epoch 1/2: loss .* \| epoch time [0-9hmins ]+, ETA [0-9hmins ]+\n",
                     (full / "log.txt").read_text())
    assert "epoch 2/2: loss" in (full / "log.txt").read_text()
    assert "resumed from" in (part / "log.txt").read_text()
    for key in ("loss_total", "loss_local_local", "lr"):
        assert [r[key] for r in a] == [r[key] for r in b]


def test_resume_mid_epoch_after_stop_signal(tiny_ucf, tmp_path, monkeypatch):
    args = ("--epochs", "2", "--max-steps-per-epoch", "3")
    full = tmp_path / "full"
    train_pretrain.main(tiny_args(tiny_ucf, full, *args))

    # stop request arrives during global step 5 (epoch 1, step 1): saved after that step
    calls = {"n": 0}

    def requested(self):
        calls["n"] += 1
        return calls["n"] >= 5
    monkeypatch.setattr(pre.StopFlag, "requested", property(requested))
    part = tmp_path / "part"
    train_pretrain.main(tiny_args(tiny_ucf, part, *args))
    state = ck.load_checkpoint(part / "checkpoints" / "latest.pth")["train_state"]
    assert (state["epoch"], state["step_in_epoch"]) == (1, 2)
    monkeypatch.undo()
    train_pretrain.main(tiny_args(tiny_ucf, part, *args, "--resume", "auto"))
    a, b = epoch_losses(full), epoch_losses(part)
    assert [r["loss_total"] for r in a] == [r["loss_total"] for r in b]


def test_nonfinite_loss_stops_without_saving(tiny_ucf, tmp_path, monkeypatch):
    out = tmp_path / "nan"
    train_pretrain.main(tiny_args(tiny_ucf, out))
    before = (out / "checkpoints" / "latest.pth").read_bytes()
    import losses

    real = losses.tclr_loss

    def poisoned(*a, **k):
        terms = real(*a, **k)
        terms["local_local"] = terms["local_local"] * float("nan")
        terms["total"] = terms["total"] + terms["local_local"]
        return terms
    monkeypatch.setattr(losses, "tclr_loss", poisoned)
    from engine.errors import NonFiniteLossError
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 1 .*local_local"):
        train_pretrain.main(tiny_args(tiny_ucf, out, "--epochs", "2", "--resume", "auto"))
    assert (out / "checkpoints" / "latest.pth").read_bytes() == before


def test_resume_refuses_other_backbone(tiny_ucf, tmp_path):
    out = tmp_path / "r"
    train_pretrain.main(tiny_args(tiny_ucf, out))
    with pytest.raises(ck.CheckpointError, match="width"):
        train_pretrain.main(tiny_args(tiny_ucf, out, "--width", "16", "--resume", "auto",
                                      "--epochs", "2"))


def test_missing_dataset_root_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "train_pretrain.py", "--dataset", "ucf101",
                           "--data-root", str(tmp_path / "nowhere"), "--device", "cpu",
                           "--out-dir", str(tmp_path / "o")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "nowhere" in proc.stderr and "Traceback" not in proc.stderr


def test_torchrun_two_processes(tiny_ucf, tmp_path):
    out = tmp_path / "ddp"
    proc = torchrun("train_pretrain.py", *tiny_args(tiny_ucf, out), timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(epoch_losses(out)) == 1
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    ckpt = ck.load_checkpoint(out / "checkpoints" / "latest.pth")
    assert len(ckpt["rng"]) == 2 and ckpt["config"]["per_device_batch"] == 2
    assert torch.isfinite(torch.tensor(epoch_losses(out)[0]["loss_total"]))
