"""demo.sh and mini_ablation.sh: dry runs print the expected steps; the summary table is exact."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def dry_run(script: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / script), "--dry-run", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_demo_dry_run(tmp_path):
    out = dry_run("demo.sh", "--out", "d", "--epochs", "3", cwd=tmp_path)
    commands = [line for line in out.splitlines() if line.startswith("+ ")]
    assert "train_pretrain.py --preset demo --device cpu --epochs 3 --out-dir d/pretrain" in commands[0]
    assert sum("nn_retrieval.py" in c for c in commands) == 2
    assert sum("train_linear.py" in c for c in commands) == 2
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
    import importlib.util
    spec = importlib.util.spec_from_file_location("summarize_runs",
                                                  ROOT / "scripts" / "summarize_runs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
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
