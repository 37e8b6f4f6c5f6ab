"""demo.sh and mini_ablation.sh: dry runs print the expected steps; the summary table is exact."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_script(name: str):
    """A scripts/ file imported as a module."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(Path(name).stem, ROOT / "scripts" / name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def dry_run(script: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / script), "--dry-run", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": os.pathsep.join(
                              [str(Path(sys.executable).parent), os.environ.get("PATH", "")])})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_demo_dry_run(tmp_path):
    out = dry_run("demo.sh", "--out", "d", "--epochs", "3", cwd=tmp_path)
    commands = [line for line in out.splitlines() if line.startswith("+ ")]
    assert "train_pretrain.py --preset demo --device cpu --epochs 3 --out-dir d/pretrain" in commands[0]
    assert sum("nn_retrieval.py" in c for c in commands) == 2
    assert sum("train_linear.py" in c for c in commands) == 2
    assert all("--bn-mode train" in c for c in commands if "train_linear.py" in c)
    assert sum("--checkpoint d/pretrain/checkpoints/latest.pth" in c for c in commands) == 2
    assert "summarize_runs.py" in commands[-1]
    assert not list(tmp_path.iterdir())          # a dry run creates nothing


def test_mini_ablation_dry_run_sets_the_loss_weights(tmp_path):
    out = dry_run("mini_ablation.sh", "--out", "a", cwd=tmp_path)
    pretrain = [line for line in out.splitlines() if "train_pretrain.py" in line]
    weights = [line.split("--w-ic-global")[1].split("--out-dir")[0].split() for line in pretrain]
    assert weights == [
        ["1", "--w-ic-local", "1", "--w-local-local", "0", "--w-global-local", "0"],
        ["1", "--w-ic-local", "1", "--w-local-local", "1", "--w-global-local", "0"],
        ["1", "--w-ic-local", "1", "--w-local-local", "0", "--w-global-local", "1"],
        ["1", "--w-ic-local", "1", "--w-local-local", "1", "--w-global-local", "1"]]
    assert out.count("nn_retrieval.py") == 5 and "train_linear.py" not in out
    assert "train_linear.py" in dry_run("mini_ablation.sh", "--linear", cwd=tmp_path)


def test_summarize_runs_table(tmp_path, capsys):
    mod = load_script("summarize_runs.py")
    for init, top1, r1 in (("a", 40.0, 30.0), ("b", 50.0, 35.0)):
        (tmp_path / init / "linear").mkdir(parents=True)
        (tmp_path / init / "retrieval").mkdir(parents=True)
        (tmp_path / init / "linear" / "results.json").write_text(
            json.dumps({"job": "linear", "top1": top1, "top5": 90.0, "seed": 0}))
        (tmp_path / init / "retrieval" / "results.json").write_text(
            json.dumps({"job": "retrieval", "recall@1": r1, "recall@5": 60.0, "seed": 0}))
    assert mod.main([f"random init={tmp_path / 'a'}", f"TCLR={tmp_path / 'b'}"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "| init | linear top-1 % | R@1 % | R@5 % |",
        "| --- | ---: | ---: | ---: |",
        "| random init | 40.0 | 30.0 | 60.0 |",
        "| TCLR | 50.0 | 35.0 | 60.0 |"]


# --------------------------------------------------------------------------------------------------
# retrieval_curve.sh and temporal_signal_check.py (the crossing diagnostics of the README)


def test_retrieval_curve_dry_run_evaluates_random_and_every_epoch_checkpoint(tmp_path):
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    for name in ("epoch_0003.pth", "epoch_0006.pth", "latest.pth", "best.pth"):
        (ckpts / name).write_bytes(b"")
    out = dry_run("retrieval_curve.sh", "run", "--preset", "demo", cwd=tmp_path)
    commands = [line for line in out.splitlines() if line.startswith("+ ")]
    assert [c.split("--checkpoint ")[1].split()[0] if "--checkpoint" in c else None
            for c in commands if "nn_retrieval.py" in c] == [
        None, "run/checkpoints/epoch_0003.pth", "run/checkpoints/epoch_0006.pth"]
    assert all("--preset demo" in c and "--out-dir run/curve/" in c for c in commands[:3])
    assert "summarize_runs.py" in commands[-1] and "epoch_0006=run/curve/epoch_0006" in commands[-1]


def test_retrieval_curve_without_epoch_checkpoints_says_how_to_get_them(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "retrieval_curve.sh"), "run"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "no run/checkpoints/epoch_*.pth" in proc.stderr and "--save-every-epochs" in proc.stderr


def test_collapse_values_are_the_losses_of_collapsed_representations():
    import torch

    from losses.tclr import global_local, local_local
    mod = load_script("temporal_signal_check.py")
    batch, k, dim = 5, 4, 16
    per_video = torch.nn.functional.normalize(torch.randn(batch, 1, dim, dtype=torch.float64), dim=-1)
    same = per_video.expand(batch, k, dim)  # every clip of a video has the same representation
    expected = mod.collapse_values(batch, k)
    assert local_local(same, same).item() == pytest.approx(expected["local_local"], rel=1e-9)
    gl = sum(global_local(same, same) for _ in range(4))  # the 4 augmentation pairs
    assert gl.item() == pytest.approx(expected["global_local"], rel=1e-9)


def test_temporal_signal_check_memorises_a_fixed_batch(tiny_ucf, capsys):
    mod = load_script("temporal_signal_check.py")
    args = ["--dataset", "synthetic", "--data-root", str(tiny_ucf), "--backbone", "r3d18",
            "--width", "8", "--resolution", "32", "--batch-size", "4", "--device", "cpu",
            "--progress", "false", "--steps", "12", "--log-every", "20"]
    assert mod.main(args) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| local_local")]
    collapse, fixed, fresh = (float(cell) for cell in table[0].strip("|").split("|")[1:])
    assert collapse == pytest.approx(4 * math.log(7), abs=0.01)
    assert fixed < 0.5 * collapse  # the plumbing check: one batch is learnt quickly
    assert math.isfinite(fresh)


# --------------------------------------------------------------------------------------------------
# learning_demo.sh (the 3-seed random init / IC only / TCLR comparison): its pieces, at a tiny size


def test_learning_demo_dry_run_pretrains_both_variants_per_seed(tmp_path):
    out = dry_run("learning_demo.sh", "--out", "L", "--seeds", "3 4", "--epochs", "2", cwd=tmp_path)
    commands = [line for line in out.splitlines() if line.startswith("+ ")]
    assert "--design trajectory" in commands[0] and "--videos-per-class 180" in commands[0]
    pretrain = [c for c in commands if "train_pretrain.py" in c]
    assert [c.split("--out-dir ")[1].split()[0] for c in pretrain] == [
        "L/pretrain/ic_only_seed3", "L/pretrain/tclr_seed3", "L/pretrain/ic_only_seed4",
        "L/pretrain/tclr_seed4"]
    assert all("--preset learning" in c and "--epochs 2" in c for c in pretrain)
    assert ["--w-local-local 0 --w-global-local 0" in c for c in pretrain] == [True, False, True, False]
    for tool, per_seed in (("nn_retrieval.py", 3), ("train_linear.py", 3), ("temporal_diversity.py", 3)):
        assert sum(tool in c for c in commands) == 2 * per_seed + (tool == "temporal_diversity.py")
    linear = [c for c in commands if "train_linear.py" in c]
    assert all("--bn-mode train" in c for c in linear)
    assert [("--checkpoint" in c, c.split("--seed ")[1].split()[0]) for c in linear] == [
        (False, "3"), (True, "3"), (True, "3"), (False, "4"), (True, "4"), (True, "4")]
    assert "summarize_runs.py" in commands[-1] and r"IC\ only=L/ic_only" in commands[-1]
    assert not list(tmp_path.iterdir())          # a dry run creates nothing


def test_learning_demo_rejects_a_bad_size(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "learning_demo.sh"), "--epochs", "x"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "got 'x'" in proc.stderr


@pytest.mark.slow
def test_learning_demo_runs_end_to_end_at_a_tiny_size(tmp_path):
    """Every stage runs and the table has a mean +- std row per initialisation (values not judged)."""
    env = {**os.environ, "PYTHON": sys.executable, "VIDEOS_PER_CLASS": "4", "STEPS_PER_EPOCH": "1",
           "BATCH": "4", "LINEAR_EPOCHS": "1", "DIVERSITY_VIDEOS": "3", "DATA": str(tmp_path / "data")}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "learning_demo.sh"), "--out", "L",
                           "--seeds", "0 1", "--epochs", "1", "--width", "4", "--resolution", "16"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert table[0] == ("| init | linear top-1 % | R@1 % | R@5 % | timestep similarity |")
    assert [row.split(" | ")[0] for row in table[2:]] == ["| random init", "| IC only", "| TCLR"]
    assert all(row.count("\u00b1") == 4 for row in table[2:])  # two seeds: mean +- std everywhere
    assert (tmp_path / "L" / "diversity_seed0" / "similarity_all.png").is_file()
    assert "finished diversity-figure (23 of 23 commands)" in proc.stdout
