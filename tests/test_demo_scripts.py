"""demo.sh, learning_demo.sh and mini_ablation.sh: dry runs print the expected steps, tiny runs run
end to end; the summary table is exact."""

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


def script_env() -> dict[str, str]:
    """The scripts' interpreter is this one (PYTHON, and its folder first on PATH): the suite
    passes without an activated environment."""
    return {**os.environ, "PYTHON": sys.executable, "PATH": os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


def dry_run(script: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / script), "--dry-run", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60, env=script_env())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_demo_dry_run_is_one_seed_of_the_learning_demo_without_ic_only(tmp_path):
    out = dry_run("demo.sh", "--out", "d", "--epochs", "3", cwd=tmp_path)
    commands = [line for line in out.splitlines() if line.startswith("+ ")]
    assert "--design switch" in commands[0] and "--seed 0 " in commands[0]
    pretrain = [c for c in commands if "train_pretrain.py" in c]
    assert len(pretrain) == 1 and "--w-local-local" not in pretrain[0]
    assert "--preset learning" in pretrain[0] and "--epochs 3" in pretrain[0]
    assert pretrain[0].split("--out-dir ")[1].split()[0] == "d/pretrain/tclr_seed0"
    for tool in ("nn_retrieval.py", "train_linear.py"):
        mine = [c for c in commands if tool in c]
        folders = [c.split("--out-dir ")[1].split()[0] for c in mine]
        assert [folder.split("/")[1] for folder in folders] == ["random", "tclr"]
        assert "--checkpoint d/pretrain/tclr_seed0/checkpoints/latest.pth" in mine[1]
    assert sum("temporal_diversity.py" in c for c in commands) == 3   # random, TCLR, the figure
    assert commands[-1].endswith(r"summarize_runs.py random\ init=d/random TCLR=d/tclr")
    assert "reading:" in out
    assert not list(tmp_path.iterdir())          # a dry run creates nothing


def test_demo_ic_only_adds_the_third_row(tmp_path):
    commands = [line for line in dry_run("demo.sh", "--ic-only", cwd=tmp_path).splitlines()
                if line.startswith("+ ")]
    assert sum("train_pretrain.py" in c for c in commands) == 2
    assert r"IC\ only=runs/demo/ic_only" in commands[-1]


def demo_env(tmp_path: Path) -> dict[str, str]:
    """A tiny size for the demos' end-to-end runs: 4 videos per class (18 labelled videos per
    split)."""
    return {**script_env(), "VIDEOS_PER_CLASS": "4", "STEPS_PER_EPOCH": "1", "BATCH": "4",
            "LINEAR_EPOCHS": "1", "DIVERSITY_VIDEOS": "3", "DATA": str(tmp_path / "data")}


TINY = ["--epochs", "1", "--width", "4", "--resolution", "16", "--batch-size", "4"]


@pytest.mark.slow
def test_demo_runs_end_to_end_at_a_tiny_size_and_stays_quiet(tmp_path):
    """Every stage runs; the console holds one line per command, the table (one seed: no +-), the
    reading and the picture's path; the commands and their output are in the logs."""
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), "--out", "d", *TINY],
                          cwd=tmp_path, env=demo_env(tmp_path), capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    table = [line for line in lines if line.startswith("| ")]
    assert table[0] == "| init | linear top-1 % | R@1 % | R@5 % | timestep similarity |"
    assert [row.split(" | ")[0] for row in table[2:]] == ["| random init", "| TCLR"]
    assert all(len(row.split(" | ")) == 5 and "\u00b1" not in row for row in table[2:])
    finished = [line for line in lines if " finished " in line]
    assert len(finished) == 10 and finished[-1].startswith("== [") and "10/10 finished" in finished[-1]
    assert not any(line.startswith("+ ") for line in lines)      # commands only in the logs
    assert len(lines) <= len(finished) + len(table) + 7  # phases, results, pictures, reading
    assert "(generator seed 0), seed 0 (" in proc.stdout
    assert lines[-1].startswith("== reading: TCLR learnt if")
    assert (tmp_path / "d" / "diversity_seed0" / "similarity_all.png").is_file()
    assert "d/diversity_seed0/similarity_all.png" in proc.stdout
    log = (tmp_path / "d" / "logs" / "tclr-seed0-pretrain.log").read_text()
    assert log.startswith("+ ") and "train_pretrain.py" in log.splitlines()[0]
    assert (tmp_path / "d" / "pretrain" / "tclr_seed0" / "log.txt").is_file()


def test_demo_failure_prints_the_log_tail_and_its_path(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), "--out", "d", *TINY,
                           "--no-such-flag", "1"], cwd=tmp_path, env=demo_env(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert "no-such-flag" in proc.stderr                     # the tail of the failed command's log
    failed = proc.stderr.strip().splitlines()[-1]
    assert failed.startswith("error: ") and "failed (exit" in failed
    log = Path(failed.split("its log: ")[1])
    assert (tmp_path / log).is_file() and "no-such-flag" in (tmp_path / log).read_text()


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
    linear = [line for line in dry_run("mini_ablation.sh", "--linear", cwd=tmp_path).splitlines()
              if "train_linear.py" in line]
    assert len(linear) == 5 and all("--preset demo_linear --out-dir" in c for c in linear)


def test_demo_linear_preset_is_the_demo_with_the_release_probe():
    """--preset demo_linear resolves to the demo's data and model with the CPU demos' probe, and
    _lib.sh's DEMO_LINEAR_ARGS layered on --preset demo resolves to the same config."""
    import config
    cfg, _ = config.parse_config("linear", ["--preset", "demo_linear"])
    assert (cfg.bn_mode, cfg.select, cfg.val_fraction, cfg.num_test_clips) == ("train", "last",
                                                                                0.0, 3)
    assert (cfg.data.dataset, cfg.data.data_root, cfg.width, cfg.data.resolution,
            cfg.batch_size) == ("synthetic", "data/synthetic_demo", 16, 32, 10)
    proc = subprocess.run(["bash", "-c", 'source scripts/_lib.sh; printf "%s\\n" '
                           '"${DEMO_LINEAR_ARGS[@]}"'], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, check=True)
    flags = proc.stdout.split()
    assert flags == ["--bn-mode", "train", "--select", "last", "--val-fraction", "0",
                     "--num-test-clips", "3"]
    layered, _ = config.parse_config("linear", ["--preset", "demo", *flags])
    assert {**config.to_dict(layered), "preset": "demo_linear"} == config.to_dict(cfg)


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
# retrieval_curve.sh and temporal_signal_check.py (the crossing diagnostics of docs/demos.md)


def orchestrate():
    """scripts/orchestrate.py imported as a module."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import orchestrate as module
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return module


def test_retrieval_curve_evaluates_random_and_every_epoch_checkpoint(tmp_path):
    orch = orchestrate()
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    for name in ("epoch_0006.pth", "epoch_0003.pth", "latest.pth", "best.pth"):
        (ckpts / name).write_bytes(b"")
    opts = orch.parse_curve_args([str(tmp_path / "run"), "--preset", "demo"], env={})
    points = orch.curve_points(opts, orch.Tools(python="python", cwd=ROOT))
    out = f"{tmp_path}/run/curve"
    expected = [("random", []), ("epoch_0003", ["--checkpoint", str(ckpts / "epoch_0003.pth")]),
                ("epoch_0006", ["--checkpoint", str(ckpts / "epoch_0006.pth")])]
    assert [p.argv for p in points] == [
        ["python", "nn_retrieval.py", "--preset", "demo", *init, "--num-grid-queries", "0",
         "--out-dir", f"{out}/{name}/retrieval"] for name, init in expected]
    # the wrapper's dry run prints these commands, then the table; it creates nothing
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "retrieval_curve.sh"), "run", "--out",
                           "c", "--preset", "demo", "--dry-run"], cwd=tmp_path, env=script_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    commands = [line[2:] for line in proc.stdout.splitlines() if line.startswith("+ ")]
    assert commands[-1].endswith("summarize_runs.py 'random init=c/random' "
                                 "epoch_0003=c/epoch_0003 epoch_0006=c/epoch_0006")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_retrieval_curve_labels_steps_and_reuses_finished_points(tmp_path, capsys):
    """Labels carry the step count read from each checkpoint; a finished point is not rerun; a
    checkpoint that cannot be read stops the curve before anything runs."""
    import torch

    from config import ConfigError
    from engine import checkpoint as ckpt_io
    orch = orchestrate()
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    for epoch, step in ((3, 36), (6, 72)):
        ckpt_io.atomic_save({"format": ckpt_io.FORMAT, "step": step, "model": {"w": torch.zeros(1)}},
                            ckpts / f"epoch_{epoch:04d}.pth")
    opts = orch.parse_curve_args([str(tmp_path / "run")], env={})
    done = tmp_path / "run" / "curve" / "random" / "retrieval"
    done.mkdir(parents=True)
    # finished by the same command: reused (its provenance matches the planned run's)
    made = orch.planned_provenance(
        "retrieval", orch.curve_points(opts, orch.Tools(python="python", cwd=ROOT))[0].argv)
    (done / "results.json").write_text(json.dumps({"job": "retrieval", "recall@1": 20.0,
                                                   "provenance": made}))
    ran = []

    class Recording(orch.Runner):
        def run(self, argv):
            ran.append(argv)
            return 0

    assert orch.run_curve(opts, orch.Tools(python="python", cwd=ROOT), Recording(False)) == 0
    curve = f"{tmp_path}/run/curve"
    assert [argv[1] for argv in ran] == ["nn_retrieval.py", "nn_retrieval.py",
                                         "scripts/summarize_runs.py"]
    assert ran[-1][2:] == [f"random init={curve}/random", f"epoch_0003 (36 steps)={curve}/epoch_0003",
                           f"epoch_0006 (72 steps)={curve}/epoch_0006"]
    assert f"random: reusing {curve}/random/retrieval/results.json" in capsys.readouterr().out
    (ckpts / "epoch_0009.pth").write_bytes(b"not a checkpoint")
    ran.clear()
    with pytest.raises(ConfigError, match="epoch_0009.pth is not a readable checkpoint"):
        orch.run_curve(opts, orch.Tools(cwd=ROOT), Recording(False))
    assert ran == []


def test_retrieval_curve_without_epoch_checkpoints_says_how_to_get_them(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "retrieval_curve.sh"), "run"],
                          cwd=tmp_path, env=script_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2                        # a user mistake: one error line
    assert proc.stderr == ("error: no run/checkpoints/epoch_*.pth: pretrain with "
                           "--save-every-epochs N (and --out-dir run) first\n")


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
    assert "--design switch" in commands[0] and "--videos-per-class 180" in commands[0]
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
        (False, "3"), (False, "4"), (True, "3"), (True, "3"), (True, "4"), (True, "4")]
    assert "summarize_runs.py" in commands[-1] and r"IC\ only=L/ic_only" in commands[-1]
    # the pretraining monitor's curves, IC only vs TCLR over every seed, once the pretrainings (and
    # random init's evaluations beside them) are done, before the pretrained backbones' evaluations
    (curves,) = [c for c in commands if "plot_monitor_curves.py" in c]
    first_pretrained = min(i for i, c in enumerate(commands) if "--checkpoint L/pretrain" in c)
    assert commands.index(pretrain[-1]) < commands.index(curves) < first_pretrained
    assert (r"IC\ only=L/pretrain/ic_only_seed3\,L/pretrain/ic_only_seed4" in curves
            and r"TCLR=L/pretrain/tclr_seed3\,L/pretrain/tclr_seed4" in curves
            and curves.endswith("--out L/monitor_curves.png"))
    assert not list(tmp_path.iterdir())          # a dry run creates nothing


def test_learning_demo_rejects_a_bad_size(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "learning_demo.sh"), "--epochs", "x"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "got 'x'" in proc.stderr


@pytest.mark.slow
def test_learning_demo_runs_end_to_end_at_a_tiny_size(tmp_path):
    """Every stage runs and the table has a mean +- std row per initialisation (values not judged)."""
    env = {**os.environ, "PYTHON": sys.executable, "VIDEOS_PER_CLASS": "4", "STEPS_PER_EPOCH": "1",
           "BATCH": "4", "LINEAR_EPOCHS": "1", "DIVERSITY_VIDEOS": "3", "DATA": str(tmp_path / "data")}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "learning_demo.sh"), "--out", "L",
                           "--seeds", "0 1", "--epochs", "1", "--width", "4", "--resolution", "16",
                           "--batch-size", "4"],  # every job: 18 labelled videos per split
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert table[0] == ("| init | linear top-1 % | R@1 % | R@5 % | timestep similarity |")
    assert [row.split(" | ")[0] for row in table[2:]] == ["| random init", "| IC only", "| TCLR"]
    assert all(row.count("\u00b1") == 4 for row in table[2:])  # two seeds: mean +- std everywhere
    assert (tmp_path / "L" / "diversity_seed0" / "similarity_all.png").is_file()
    assert "25/25 finished diversity-figure" in proc.stdout
    assert "mean ± std over seeds 0 1 (" in proc.stdout  # the seed folders the table covers


@pytest.mark.parametrize("script, spaced, joined", [
    ("demo.sh", ["--out", "d", "--epochs", "3"], ["--out=d", "--epochs=3"]),
    ("mini_ablation.sh", ["--out", "a", "--epochs", "2", "--linear"],
     ["--out=a", "--epochs=2", "--linear"]),
    ("learning_demo.sh", ["--out", "L", "--seeds", "0 1", "--epochs", "1", "--jobs", "1"],
     ["--out=L", "--seeds=0 1", "--epochs=1", "--jobs=1"]),
])
def test_options_take_their_value_after_an_equals_sign(tmp_path, script, spaced, joined):
    """--opt=value reads as --opt value; other --flag=value words go to the entry points as
    they were written (the entry points take that form themselves)."""
    def commands(*args: str) -> list[str]:
        return [line for line in dry_run(script, *args, cwd=tmp_path).splitlines()
                if line.startswith("+ ")]

    expected = commands(*spaced, "--lr", "0.5")
    assert commands(*joined, "--lr", "0.5") == expected
    assert not any("--out=" in c or "--epochs=" in c for c in expected)
    passed_on = commands(*joined, "--lr=0.5")
    assert passed_on == [c.replace("--lr 0.5", "--lr=0.5") for c in expected]
    assert any("--lr=0.5" in c for c in passed_on)
