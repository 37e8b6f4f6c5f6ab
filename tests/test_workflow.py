"""The reproduction workflow: scripts/make_tables.py on results.json files written by the real
entry points (and on copies of that format with known numbers), the shell scripts' syntax and
--dry-run output, and the dataset preparation scripts run offline on a tiny synthetic copy with a
stand-in RAR extractor."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
SHELL_SCRIPTS = sorted(p.name for p in SCRIPTS.glob("*.sh"))
CKPT = "runs/pre/checkpoints/latest.pth"
SELECT_VAL = "val (best accuracy on held-out train videos)"


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def tiny_args(root: Path, out: Path) -> list[str]:
    """Entry-point flags for one short run on the tiny_ucf fixture (narrow net, 32 px)."""
    return ["--dataset", "synthetic", "--data-root", str(root), "--synthetic-classes", "4",
            "--synthetic-videos-per-class", "6", "--synthetic-frames", "72",
            "--synthetic-width", "64", "--synthetic-height", "48", "--width", "8",
            "--resolution", "32", "--batch-size", "4", "--num-workers", "0", "--device", "cpu",
            "--progress", "false", "--out-dir", str(out)]


CLASSIFY_TINY = ["--epochs", "1", "--max-steps-per-epoch", "2", "--num-test-clips", "2",
                 "--select", "last"]
RETRIEVAL_TINY = ["--num-clips", "2", "--num-grid-queries", "0", "--embedding-points", "0"]


def run_script(name: str, *args: str, cwd: Path, env: dict | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
    """Run scripts/NAME with bash from ``cwd``; returns the finished process. The scripts'
    interpreter is this one (PYTHON, and its folder first on PATH as in an activated
    environment), so the suite passes without an activated environment too."""
    env = {**os.environ, **(env or {}), "PYTHON": sys.executable}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run(["bash", str(SCRIPTS / name), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=env)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def commands(stdout: str) -> list[str]:
    """The '+ ...' command lines of a script's output."""
    return [line[2:] for line in stdout.splitlines() if line.startswith("+ ")]


def make_tables(*args) -> tuple[int, str, str]:
    """scripts/make_tables.py main(), in this process (torch is imported already): (status,
    stdout, stderr)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        import make_tables as module
    finally:
        sys.path.remove(str(SCRIPTS))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = module.main([str(a) for a in args])
    return status, out.getvalue(), err.getvalue()


def table_rows(markdown: str, title: str) -> list[str]:
    """The data rows (after header and alignment) of the table under ``## title``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## " + title))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows[2:]


# --------------------------------------------------------------------------------------------
# results.json from the real entry points
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_results(tiny_ucf, tmp_path_factory) -> dict[str, Path]:
    """One results.json of each kind, written by train_linear / train_finetune / nn_retrieval."""
    import nn_retrieval
    import train_finetune
    import train_linear
    out = tmp_path_factory.mktemp("real_runs")
    runs = {"linear": (train_linear, CLASSIFY_TINY), "finetune": (train_finetune, CLASSIFY_TINY),
            "retrieval": (nn_retrieval, RETRIEVAL_TINY)}
    for name, (module, extra) in runs.items():
        assert module.main(tiny_args(tiny_ucf, out / name) + extra) == 0
    return {name: out / name / "results.json" for name in runs}


def test_make_tables_on_real_results(real_results):
    res = {k: json.loads(p.read_text()) for k, p in real_results.items()}
    assert res["linear"]["job"] == "linear" and res["retrieval"]["job"] == "retrieval"
    status, text, _ = make_tables(real_results["linear"].parent.parent)
    assert status == 0
    setting = "random init [width 8, 32px, select last, 2 test clips]"
    lin, ft = f"{res['linear']['top1']:.1f}", f"{res['finetune']['top1']:.1f}"
    assert table_rows(text, "Action recognition") == [
        f"| Linear | synthetic | {setting} | {lin} | {lin} |  |  |",
        f"| Finetune | synthetic | {setting} | {ft} | {ft} |  |  |",
    ]
    recalls = " | ".join(f"{res['retrieval'][f'recall@{k}']:.1f}" for k in (1, 5, 10, 20, 50))
    assert table_rows(text, "Nearest-neighbour retrieval") == [
        f"| synthetic | random init [width 8, 32px, 2 clips] | 1 | {recalls} |  |  |"]
    # the runs' own notes are carried over (here: k capped at the 16-video gallery)
    assert "k=50 is larger than the gallery" in text


# --------------------------------------------------------------------------------------------
# Known answers on copies of the real format
# --------------------------------------------------------------------------------------------

def paper_protocol(result: dict) -> dict:
    """A real results.json turned into a paper-protocol run (R3D-18 at 64, 112 px, defaults)."""
    r = copy.deepcopy(result)
    r.update(width=64, resolution=112, notes=[], dataset="ucf101", split=1, seed=0,
             checkpoint=None, init="random")
    if r["job"] in ("linear", "finetune"):
        r.update(select=SELECT_VAL, num_test_clips=10)
    else:
        r.update(num_clips=9)
    return r


def variant(base: dict, **fields) -> dict:
    r = copy.deepcopy(base)
    if fields.get("checkpoint"):
        r["init"] = "checkpoint"
    r.update(fields)
    return r


@pytest.fixture
def known_results(real_results, tmp_path) -> Path:
    """results.json files in the engines' format with chosen numbers, in nested folders."""
    base = {k: paper_protocol(json.loads(p.read_text())) for k, p in real_results.items()}
    lin, ft, ret = base["linear"], base["finetune"], base["retrieval"]
    runs = [variant(lin, top1=20.0)]
    runs += [variant(lin, checkpoint=CKPT, split=s, top1=t) for s, t in ((1, 60.0), (2, 62.0),
                                                                          (3, 64.0))]
    runs += [variant(lin, checkpoint=CKPT, label_fraction=0.1, top1=40.0)]
    runs += [variant(ft, checkpoint=CKPT, seed=s, top1=t) for s, t in ((0, 79.0), (1, 81.0))]
    runs += [variant(ft, checkpoint=CKPT, dataset="hmdb51", split=s, top1=t)
             for s, t in ((1, 50.0), (2, 51.0))]
    recalls = {1: (10.0, 30.0, 40.0, 50.0, 60.0), 2: (50.0, 70.0, 80.0, 90.0, 95.0),
               3: (54.0, 72.0, 82.0, 91.0, 97.0)}

    def with_recalls(r: dict, values) -> dict:
        return variant(r, **{f"recall@{k}": v for k, v in zip((1, 5, 10, 20, 50), values)})

    runs += [with_recalls(ret, recalls[1])]
    runs += [with_recalls(variant(ret, checkpoint=CKPT, split=s), recalls[s + 1])
             for s in (1, 2)]
    for i, r in enumerate(runs):
        folder = tmp_path / "eval" / f"{r['job']}_{i}" / "deeper"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(r, indent=2))
    return tmp_path / "eval"


def test_make_tables_known_answer(known_results, tmp_path):
    out = tmp_path / "tables" / "t.md"
    proc = subprocess.run([sys.executable, str(SCRIPTS / "make_tables.py"), str(known_results),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout                   # the command line once; in-process elsewhere
    assert out.read_text() == text
    assert text.splitlines()[4] == ("| Protocol | Dataset | Init | Split 1 | Split 2 | Split 3 | "
                                    "Mean | Paper | Release |")
    assert table_rows(text, "Action recognition") == [
        "| Linear | UCF101 | random init | 20.0 |  |  | 20.0 |  |  |",
        f"| Linear | UCF101 | {CKPT} | 60.0 | 62.0 | 64.0 | 62.0 ± 2.0 |  | 69.9 |",
        f"| Linear | UCF101 | {CKPT} [10% labels] | 40.0 |  |  | 40.0 |  |  |",
        f"| Finetune | UCF101 | {CKPT} | 80.0 ± 1.4 (n=2) |  |  | 80.0 | 82.4 | 82 |",
        f"| Finetune | HMDB51 | {CKPT} | 50.0 | 51.0 |  | 50.5 ± 0.7 | 52.9 |  |",
    ]
    assert table_rows(text, "Nearest-neighbour retrieval") == [
        "| UCF101 | random init | 1 | 10.0 | 30.0 | 40.0 | 50.0 | 60.0 |  |  |",
        f"| UCF101 | {CKPT} | 1 | 50.0 | 70.0 | 80.0 | 90.0 | 95.0 |  |  |",
        f"| UCF101 | {CKPT} | 2 | 54.0 | 72.0 | 82.0 | 91.0 | 97.0 |  |  |",
        f"| UCF101 | {CKPT} | mean | 52.0 ± 2.8 | 71.0 ± 1.4 | 81.0 ± 1.4 | 90.5 ± 0.7 | "
        "96.0 ± 1.4 | 56.2 | 56.1 |",
    ]
    assert "TCLR_SPEC section 9" in text and "Notes:" not in text


def test_make_tables_notes_mixed_runs_and_errors(known_results, tmp_path):
    first = next(known_results.rglob("results.json"))
    twin = json.loads(first.read_text())
    twin["num_videos"] += 1                     # same cell, same seed, another test list
    (tmp_path / "twin").mkdir()
    (tmp_path / "twin" / "results.json").write_text(json.dumps(twin))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "results.json").write_text(json.dumps({"something": 1}))
    status, text, _ = make_tables(known_results, tmp_path / "twin", tmp_path / "other", first)
    assert status == 0
    assert "differ in 'num_videos'" in text and "several runs with seed 0" in text
    assert "no known 'job' field" in text
    # the same file reached twice (folder and path) counts once
    assert text.count("20.0 |  |  | 20.0") == 0 and "(n=2)" in text
    empty = tmp_path / "empty"
    empty.mkdir()
    status, _, err = make_tables(empty)
    assert status == 2 and "no evaluation results.json found" in err


# --------------------------------------------------------------------------------------------
# Shell scripts: syntax and dry runs
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SHELL_SCRIPTS)
def test_shell_syntax(name):
    proc = subprocess.run(["bash", "-n", str(SCRIPTS / name)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------------------------
# scripts/orchestrate.py: the suite's and the paper runner's command lists, skip rule, ledger
# --------------------------------------------------------------------------------------------

def orchestrate():
    """scripts/orchestrate.py imported as a module (once per test session)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        import orchestrate as module
    finally:
        sys.path.remove(str(SCRIPTS))
    return module


class RecordingRunner:
    """A Runner stand-in: records each command, answers with a chosen exit status."""

    def __init__(self, orch, failing: tuple[str, ...] = ()):
        self.base = orch.Runner(dry_run=False)
        self.dry_run, self.tag, self.failing, self.ran = False, "", failing, []

    def info(self, text: str) -> None:
        self.base.info(text)

    def run(self, argv: list[str]) -> int:
        self.ran.append(argv)
        return 1 if any(word in self.failing for word in argv) else 0


def suite_of(*args: str, env: dict | None = None):
    orch = orchestrate()
    return orch, orch.parse_suite_args(list(args), env=env or {})


def test_eval_suite_commands(tmp_path):
    orch, opts = suite_of("ucf101", "ckpts/my_model.pth", "--splits", "1 2", "--device", "cuda:1",
                          "--trust-checkpoint", "true", "--linear-args", "--bn-mode train")
    tools = orch.Tools(python="python", cwd=tmp_path)      # not the repository: absolute paths
    out = "runs/eval_ucf101_ckpts-my_model"   # run folder and stem (no file: no digest)
    runs = orch.suite_runs(opts, tools)
    expected = []
    for split in ("1", "2"):
        for protocol, script in (("linear", "train_linear.py"), ("finetune", "train_finetune.py"),
                                 ("retrieval", "nn_retrieval.py")):
            own = ["--bn-mode", "train"] if protocol == "linear" else []
            expected.append(["python", str(ROOT / script), "--dataset", "ucf101", "--split", split,
                             "--seed", "0", "--out-dir", f"{out}/{protocol}/split{split}_seed0",
                             "--checkpoint", "ckpts/my_model.pth", "--device", "cuda:1",
                             "--trust-checkpoint", "true", *own])
    assert [r.argv for r in runs] == expected
    assert orch.tables_argv(opts.out, tools) == [
        "python", str(ROOT / "scripts" / "make_tables.py"), out, "--out", f"{out}/tables.md"]
    # from the repository, the files are named as the README's commands name them
    assert orch.suite_runs(opts, orch.Tools(python="python", cwd=ROOT))[0].argv[:2] == [
        "python", "train_linear.py"]


def test_eval_suite_commands_random_torchrun_seeds():
    orch, opts = suite_of("hmdb51", "random", "--gpus", "2", "--seeds", "0 1", "--protocols",
                          "linear retrieval", "--out", "res")
    runs = orch.suite_runs(opts, orch.Tools(torchrun="torchrun", cwd=ROOT))
    # 3 splits x 2 protocols x 2 seeds: random init has seed-dependent retrieval features
    assert [(r.split, r.protocol, r.seed) for r in runs] == [
        (s, p, seed) for s in (1, 2, 3) for p in ("linear", "retrieval") for seed in (0, 1)]
    assert runs[-1].argv == ["torchrun", "--standalone", "--nproc_per_node", "2", "nn_retrieval.py",
                             "--dataset", "hmdb51", "--split", "3", "--seed", "1", "--out-dir",
                             "res/retrieval/split3_seed1"]
    # with a checkpoint, retrieval runs once per split (the first seed); TCLR_GPUS is the default
    orch, opts = suite_of("hmdb51", "a/b.pth", "--seeds", "4 5", "--splits", "2",
                          env={"TCLR_GPUS": "3"})
    assert [(r.protocol, r.seed) for r in orch.suite_runs(opts, orch.Tools())] == [
        ("linear", 4), ("linear", 5), ("finetune", 4), ("finetune", 5), ("retrieval", 4)]
    assert opts.gpus == 3 and opts.out == "runs/eval_hmdb51_a-b"


@pytest.mark.parametrize("args, message", [
    (["random", "--split", "2"], "--split is set by this script"),
    (["random", "--", "--out-dir=x"], "--out-dir=x is set by this script"),
    (["random", "--splits", "4"], "--splits: '4' is not 1, 2 or 3"),
    (["random", "--seeds", "-1"], "--seeds: '-1' is not a non-negative integer"),
    (["random", "--protocols", "knn"], "--protocols: 'knn' is not linear, finetune or retrieval"),
    (["random", "--splits", " "], "--splits, --seeds, --protocols: empty"),
    (["random", "--gpus", "0"], "--gpus must be a positive integer, got '0'"),
    (["random", "--out"], "option --out needs a value"),
    (["--splits", "1"], "the first argument must be the CHECKPOINT"),
    ([], "usage: scripts/eval_ucf101.sh CHECKPOINT|random"),
])
def test_eval_suite_rejects_bad_options(args, message):
    orch = orchestrate()
    from config import ConfigError
    with pytest.raises(ConfigError, match=re.escape(message)):
        orch.parse_suite_args(["ucf101", *args], env={})


def test_eval_suite_skips_complete_runs_and_reruns_incomplete_ones(tmp_path, capsys):
    orch, opts = suite_of("ucf101", "random", "--splits", "1", "--out", str(tmp_path))
    (tmp_path / "linear" / "split1_seed0").mkdir(parents=True)
    made = orch.planned_provenance("linear", orch.suite_runs(opts, orch.Tools(cwd=ROOT))[0].argv)
    (tmp_path / "linear" / "split1_seed0" / "results.json").write_text(
        json.dumps({"job": "linear", "top1": 12.5, "provenance": made}))
    (tmp_path / "finetune" / "split1_seed0").mkdir(parents=True)
    (tmp_path / "finetune" / "split1_seed0" / "results.json").write_text('{"job": "finet')
    (tmp_path / "retrieval" / "split1_seed0").mkdir(parents=True)
    (tmp_path / "retrieval" / "split1_seed0" / "results.json").write_text(
        json.dumps({"job": "retrieval", "num_queries": 3}))              # no recall@1
    runner = RecordingRunner(orch)
    assert orch.run_suite(opts, orch.Tools(cwd=ROOT), runner) == 0
    assert [argv[1] for argv in runner.ran] == ["train_finetune.py", "nn_retrieval.py",
                                                "scripts/make_tables.py"]
    out = capsys.readouterr().out
    assert f"skipped: {tmp_path}/linear/split1_seed0/results.json exists" in out
    assert "rerunning: " in out and "is not valid JSON" in out and "has no 'recall@1'" in out
    opts.force = True
    runner = RecordingRunner(orch)
    orch.run_suite(opts, orch.Tools(cwd=ROOT), runner)
    assert len(runner.ran) == 4


def test_eval_suite_failure_ledger(tmp_path, capsys):
    out = tmp_path / "o"
    orch, opts = suite_of("ucf101", "random", "--splits", "1 2", "--out", str(out),
                          "--protocols", "linear finetune", "--keep-going")
    # split 1's finetuning wrote a log.txt before it failed; split 2's stopped during start-up,
    # which writes nothing into its run folder: the ledger points at a log only where there is one
    (out / "finetune" / "split1_seed0").mkdir(parents=True)
    (out / "finetune" / "split1_seed0" / "log.txt").write_text("error: ...\n")
    runner = RecordingRunner(orch, failing=("train_finetune.py",))
    assert orch.run_suite(opts, orch.Tools(cwd=ROOT), runner) == 1
    assert len(runner.ran) == 5                                  # all four runs, then the tables
    assert capsys.readouterr().err.splitlines() == [
        "error: 2 run(s) failed:",
        f"  finetune split 1 seed 0 (see above and {out}/finetune/split1_seed0/log.txt)",
        f"  finetune split 2 seed 0 (see its error above (it stopped before writing "
        f"{out}/finetune/split2_seed0/log.txt))"]
    opts.keep_going = False
    runner = RecordingRunner(orch, failing=("train_finetune.py",))
    with pytest.raises(orch.StepFailed, match=re.escape(
            f"finetune on ucf101 split 1 (seed 0) failed; see above and "
            f"{out}/finetune/split1_seed0/log.txt")):
        orch.run_suite(opts, orch.Tools(cwd=ROOT), runner)
    assert len(runner.ran) == 2                                  # stops at the first failure


def test_eval_suite_options_take_their_value_after_an_equals_sign():
    orch, spaced = suite_of("ucf101", "a.pth", "--splits", "1 2", "--seeds", "3", "--out", "o",
                            "--gpus", "2", "--linear-args", "--bn-mode train", "--lr=0.5")
    _, joined = suite_of("ucf101", "a.pth", "--splits=1 2", "--seeds=3", "--out=o", "--gpus=2",
                         "--linear-args=--bn-mode train", "--lr=0.5")
    assert joined == spaced
    assert joined.extra == ["--lr=0.5"]          # entry-point flags pass on as they were written
    tools = orch.Tools(cwd=ROOT)
    assert [r.argv for r in orch.suite_runs(joined, tools)] == [
        r.argv for r in orch.suite_runs(spaced, tools)]
    from config import ConfigError
    with pytest.raises(ConfigError, match="--splits: '4' is not 1, 2 or 3"):
        orch.parse_suite_args(["ucf101", "random", "--splits=4"], env={})
    with pytest.raises(ConfigError, match="--split=2 is set by this script"):
        orch.parse_suite_args(["ucf101", "random", "--split=2"], env={})
    # the paper runner and the retrieval curve take the same form
    opts = orch.parse_reproduce_args(["--preset=ucf101_c3d", "--gpus=2", "--splits=1"], env={})
    assert (opts.preset, opts.gpus, opts.suite_opts) == ("ucf101_c3d", 2, ["--splits", "1"])
    with pytest.raises(ConfigError, match="--data-root=x: use --pretrain-root"):
        orch.parse_reproduce_args(["--data-root=x"], env={})
    assert orch.parse_curve_args(["runs/r", "--out=c"], env={}).out == "c"


def test_suite_script_with_equals_options_prints_the_same_plan(tmp_path):
    spaced = run_script("eval_ucf101.sh", "random", "--splits", "2", "--out", "o", "--dry-run",
                        cwd=tmp_path)
    joined = run_script("eval_ucf101.sh", "random", "--splits=2", "--out=o", "--dry-run",
                        cwd=tmp_path)
    assert commands(joined.stdout) == commands(spaced.stdout) and len(commands(joined.stdout)) == 4


@pytest.mark.parametrize("trained, splits, expected", [
    (("ucf101", 1, "pretrain"), "1", None),
    (("ucf101", 1, "pretrain"), "1 2 3",
     "m.pth was pretrained (without labels) on ucf101 split 1's train list, which holds test "
     "videos of splits 2 and 3: on those splits the backbone is tested on videos it has seen. "
     "Only split 1 is free of this."),
    (("ucf101", 2, "classifier"), "1",
     "m.pth was trained with labels on ucf101 split 2's train list, which holds test videos of "
     "split 1: on that split"),
    (("hmdb51", 1, "pretrain"), "1 2 3", None),            # another dataset: nothing seen
    (("kinetics400", 1, "pretrain"), "2", None),
    (None, "1", None),
    (None, "2 3", "the data m.pth was pretrained on is not known here (it records none, or is "
                  "not written yet). If that was UCF101 split 1's train list (what the "
                  "release's pretraining code reads), the test videos of splits 2 and 3 were "
                  "among its pretraining videos"),
])
def test_split_note(trained, splits, expected):
    orch, opts = suite_of("ucf101", "m.pth", "--splits", splits)
    note = orch.split_note(opts, orch.TrainedOn(*trained) if trained else None)
    if expected is None:
        assert note == ""
    else:
        assert note.startswith(expected) and "docs/reproduce.md" in note, note


def test_eval_suite_prints_the_split_note_from_the_checkpoint(tmp_path, capsys):
    orch = orchestrate()
    import config
    from engine import checkpoint as ckpt_io
    cfg, _ = config.parse_config("pretrain", ["--dataset", "ucf101", "--split", "1"])
    path = tmp_path / "best.pth"
    ckpt_io.atomic_save({"format": ckpt_io.FORMAT, "meta": {"kind": "pretrain"},
                         "config": config.to_dict(cfg)}, path)
    assert orch.trained_on(str(path)) == orch.TrainedOn("ucf101", 1, "pretrain")
    assert orch.trained_on("random") is None and orch.trained_on(str(tmp_path / "no.pth")) is None
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    assert orch.trained_on(str(tmp_path / "bad.pth")) is None
    for splits, printed in (("1", 0), ("1 3", 2)):          # at the start and after the tables
        _, opts = suite_of("ucf101", str(path), "--splits", splits, "--out", str(tmp_path / "o"),
                           "--protocols", "retrieval")
        orch.run_suite(opts, orch.Tools(cwd=ROOT), RecordingRunner(orch))
        notes = [line for line in capsys.readouterr().out.splitlines()
                 if line.startswith("note: ")]
        assert len(notes) == printed
        assert all("test videos of split 3" in line for line in notes)


def test_run_command_status_and_ctrl_c():
    orch = orchestrate()
    from engine.errors import JobInterrupted
    assert orch.run_command([sys.executable, "-c", "import sys; sys.exit(3)"]) == 3
    with pytest.raises(JobInterrupted, match="Ctrl-C"):        # the job ended by Ctrl-C
        orch.run_command([sys.executable, "-c", "import sys; sys.exit(130)"])
    assert orch.run_command(["/nonexistent/python"]) == 127


def test_reproduce_paper_commands():
    orch = orchestrate()
    opts = orch.parse_reproduce_args(["--gpus", "2", "--splits", "1", "--epochs", "3",
                                      "--ucf-root", "/d/ucf", "--hmdb-root", "/d/hmdb",
                                      "--eval-args", "--num-workers 16"], env={})
    plan = orch.reproduce_plan(opts, orch.Tools(cwd=ROOT))
    out = "runs/reproduce_ucf101_r3d18"
    ckpt = f"{out}/pretrain/checkpoints/best.pth"  # the release evaluates its best-loss model
    assert plan.pretrain == ["torchrun", "--standalone", "--nproc_per_node", "2",
                             "train_pretrain.py", "--preset", "ucf101_r3d18", "--data-root",
                             "/d/ucf", "--split", "1", "--out-dir", f"{out}/pretrain",
                             "--resume", "auto", "--epochs", "3"]
    assert [(s.dataset, s.checkpoint, s.out, s.splits, s.gpus) for s in plan.suites] == [
        ("ucf101", ckpt, f"{out}/eval_ucf101", [1], 2), ("hmdb51", ckpt, f"{out}/eval_hmdb51", [1], 2)]
    model = ["--backbone", "r3d18", "--width", "64", "--resolution", "112", "--color", "bgr",
             "--num-workers", "16"]
    assert plan.suites[0].extra == ["--data-root", "/d/ucf", *model]
    assert plan.suites[1].extra == ["--data-root", "/d/hmdb", *model]
    assert plan.tables == ["python", "scripts/make_tables.py", out, "--out", f"{out}/tables.md"]


def test_reproduce_paper_preset_baseline_and_refusals():
    orch = orchestrate()
    from config import ConfigError
    opts = orch.parse_reproduce_args(["--preset", "ucf101_c3d", "--baseline", "--skip-pretrain",
                                      "--splits", "2", "--protocols", "retrieval"], env={})
    plan = orch.reproduce_plan(opts, orch.Tools(cwd=ROOT))
    out = "runs/reproduce_ucf101_c3d"
    assert plan.pretrain is None
    assert [(s.dataset, s.checkpoint, s.out) for s in plan.suites] == [
        ("ucf101", f"{out}/pretrain/checkpoints/best.pth", f"{out}/eval_ucf101"),
        ("hmdb51", f"{out}/pretrain/checkpoints/best.pth", f"{out}/eval_hmdb51"),
        ("ucf101", "random", f"{out}/eval_ucf101_random"),
        ("hmdb51", "random", f"{out}/eval_hmdb51_random")]
    runs = [r for s in plan.suites for r in orch.suite_runs(s, orch.Tools(cwd=ROOT))]
    assert [(r.protocol, r.split) for r in runs] == [("retrieval", 2)] * 4
    assert all(r.argv[r.argv.index("--backbone") + 1] == "c3d" for r in runs)
    for args, message in ((["--preset", "nope"], "--preset: unknown preset 'nope'"),
                          (["--split", "2"], "--split: use --pretrain-root"),
                          (["--preset=nope"], "--preset: unknown preset 'nope'"),
                          (["--splits", "5"], "--splits: '5' is not 1, 2 or 3")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            orch.reproduce_plan(orch.parse_reproduce_args(args, env={}), orch.Tools())


@pytest.mark.parametrize("script, args", [
    ("eval_ucf101.sh", ["ckpts/m.pth", "--splits", "2", "--linear-args", "--bn-mode train"]),
    ("reproduce_paper.sh", ["--splits", "1", "--protocols", "retrieval", "--baseline"]),
])
def test_wrappers_print_the_plan_and_create_nothing(tmp_path, script, args):
    """The .sh names run scripts/orchestrate.py: a dry run prints exactly the plan's commands."""
    orch = orchestrate()
    tools = orch.Tools(python=sys.executable, cwd=tmp_path)
    if script == "eval_ucf101.sh":
        opts = orch.parse_suite_args(["ucf101", *args], env={})
        plan = [r.argv for r in orch.suite_runs(opts, tools)] + [orch.tables_argv(opts.out, tools)]
    else:
        rp = orch.reproduce_plan(orch.parse_reproduce_args(args, env={}), tools)
        plan = [rp.pretrain] + [argv for s in rp.suites for argv in
                                [r.argv for r in orch.suite_runs(s, tools)] +
                                [orch.tables_argv(s.out, tools)]] + [rp.tables]
    proc = run_script(script, *args, "--dry-run", cwd=tmp_path)
    assert commands(proc.stdout) == [shlex.join(argv) for argv in plan]
    assert list(tmp_path.iterdir()) == []          # a dry run creates nothing
    proc = run_script(script, *args, "--gpus", "x", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr == "error: --gpus must be a positive integer, got 'x'\n"


@pytest.mark.parametrize("dataset,urls", [
    ("ucf101", ("https://www.crcv.ucf.edu/data/UCF101/UCF101.rar",
                "https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip")),
    ("hmdb51", ("https://serre-lab.clps.brown.edu/wp-content/uploads/2013/10/hmdb51_org.rar",
                "https://serre-lab.clps.brown.edu/wp-content/uploads/2013/10/"
                "test_train_splits.rar")),
])
def test_prepare_dry_run(tmp_path, dataset, urls):
    root = tmp_path / "data"
    proc = run_script(f"prepare_{dataset}.sh", "--dry-run", "--root", str(root), cwd=tmp_path)
    cmds = commands(proc.stdout)
    downloads = [c for c in cmds if c.startswith("curl ")]
    assert [d.split()[-1] for d in downloads] == list(urls)
    assert any(c.startswith(("unrar x", "7z x", "7zz x", "7za x", "unar ")) for c in cmds)
    assert any(f"verify_dataset_counts.py --dataset {dataset} --root {root}" in c for c in cmds)
    assert any("-m dataloaders.check" in c and f"--root {root}" in c for c in cmds)
    assert list(tmp_path.iterdir()) == []
    # archives already at hand: no download; a URL can be overridden
    archives = tmp_path / "archives"
    archives.mkdir()
    name = urls[0].rsplit("/", 1)[1]
    (archives / name).write_bytes(b"x")
    env = {"UCF101_SPLITS_URL": "https://mirror/u.zip", "HMDB51_SPLITS_URL": "https://mirror/h.rar"}
    proc = run_script(f"prepare_{dataset}.sh", "--dry-run", "--root", str(root), "--archives",
                      str(archives), cwd=tmp_path, env=env)
    downloads = [c for c in commands(proc.stdout) if c.startswith("curl ")]
    assert len(downloads) == 1 and downloads[0].split()[-1].startswith("https://mirror/")
    assert f"found {archives / name}: no download" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archives"]
    # --opt=value reads as --opt value
    joined = run_script(f"prepare_{dataset}.sh", "--dry-run", f"--root={root}",
                        f"--archives={archives}", "--workers=2", cwd=tmp_path, env=env)
    spaced = run_script(f"prepare_{dataset}.sh", "--dry-run", "--root", str(root), "--archives",
                        str(archives), "--workers", "2", cwd=tmp_path, env=env)
    assert joined.stdout == spaced.stdout and "--workers 2" in joined.stdout


# --------------------------------------------------------------------------------------------
# Preparation, for real, offline, on tiny copies (a stand-in unrar unpacks tar files)
# --------------------------------------------------------------------------------------------

FAKE_UNRAR = """#!/bin/sh
# stand-in for `unrar x -o+ -idq ARCHIVE DEST/`: the test's "RAR" archives are tar files
[ "$1" = x ] || exit 3
exec tar -xf "$4" -C "$5"
"""


@pytest.fixture
def fake_unrar(tmp_path) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "unrar").write_text(FAKE_UNRAR)
    (bin_dir / "unrar").chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RAR_TOOL": "unrar"}


def tar_folders(archive: Path, base: Path, names: list[str]) -> None:
    with tarfile.open(archive, "w") as tar:
        for name in names:
            tar.add(base / name, arcname=name)


def test_prepare_ucf101_archive_at_hand_and_mirror(tiny_ucf, tmp_path, fake_unrar):
    """The video archive is already downloaded; the split archive comes from a (file://) mirror."""
    archives, root, mirror = tmp_path / "archives", tmp_path / "ucf", tmp_path / "mirror"
    archives.mkdir()
    mirror.mkdir()
    tar_folders(archives / "UCF101.rar", tiny_ucf, ["UCF-101"])
    with zipfile.ZipFile(mirror / "splits.zip", "w") as z:
        for f in sorted((tiny_ucf / "ucfTrainTestlist").iterdir()):
            z.write(f, f"ucfTrainTestlist/{f.name}")
    args = ("--root", str(root), "--archives", str(archives), "--workers", "1")
    env = {**fake_unrar, "VERIFY_COUNTS_OPTS": "--expect-videos 24 --expect-classes 4",
           "UCF101_SPLITS_URL": (mirror / "splits.zip").as_uri()}
    proc = run_script("prepare_ucf101.sh", *args, cwd=tmp_path, env=env)
    assert "counts OK" in proc.stdout and "ucf101 is ready" in proc.stdout
    assert [c.split()[0] for c in commands(proc.stdout)].count("curl") == 1
    assert (archives / "UCF101TrainTestSplits-RecognitionTask.zip").is_file()
    assert len(list((root / "UCF-101").glob("*/*.avi"))) == 24
    assert (root / "ucfTrainTestlist" / "testlist03.txt").is_file()
    assert json.loads((root / "preflight_check.json").read_text())["decodable"] == 24
    # a rerun skips the unpacking; the official counts do not match this copy: non-zero exit
    proc = run_script("prepare_ucf101.sh", *args, "--offline", "--skip-decode-check",
                      cwd=tmp_path, env=fake_unrar, check=False)
    assert proc.returncode != 0 and "videos already in" in proc.stdout
    assert "24 videos on disk" in proc.stdout and "expected 13320" in proc.stdout


def test_prepare_hmdb51_offline(tmp_path, fake_unrar):
    from dataloaders import synthetic
    source, archives, root = tmp_path / "source", tmp_path / "archives", tmp_path / "hmdb"
    synthetic.generate(str(source), classes=3, videos_per_class=4, frames=60, width=32,
                       height=24, seed=1, layout="hmdb51", progress=False)
    classes = sorted(p.name for p in source.iterdir() if p.is_dir() and p.name[0] != "t")
    inner = tmp_path / "inner"
    inner.mkdir()
    for name in classes:
        tar_folders(inner / f"{name}.rar", source, [name])
    archives.mkdir()
    tar_folders(archives / "hmdb51_org.rar", inner, [f"{n}.rar" for n in classes])
    tar_folders(archives / "test_train_splits.rar", source, ["testTrainMulti_7030_splits"])
    env = {**fake_unrar, "VERIFY_COUNTS_OPTS": "--expect-videos 12 --expect-classes 3"}
    proc = run_script("prepare_hmdb51.sh", str(root), "--archives", str(tmp_path / "none"),
                      "--offline", cwd=tmp_path, env=env, check=False)
    assert proc.returncode != 0 and "hmdb51_org.rar is missing and --offline" in proc.stderr
    proc = run_script("prepare_hmdb51.sh", str(root), "--archives", str(archives), "--offline",
                      "--workers", "1", cwd=tmp_path, env=env)
    assert "unpacked 3 class archives" in proc.stdout and "counts OK" in proc.stdout
    assert sorted(p.parent.name for p in root.glob("*/*.avi")) == sorted(classes * 4)
    assert not (archives / "hmdb51_class_rars").exists()
    assert json.loads((root / "preflight_check.json").read_text())["decodable"] == 12


def test_verify_counts_finds_unlisted_and_missing_videos(tiny_ucf, tmp_path):
    sys.path.insert(0, str(SCRIPTS))
    try:
        import verify_dataset_counts as vdc
    finally:
        sys.path.remove(str(SCRIPTS))
    root = tmp_path / "ucf"
    shutil.copytree(tiny_ucf, root)
    one = next((root / "UCF-101").glob("*/*.avi"))
    shutil.copy(one, one.with_name("v_extra_g99_c01.avi"))
    expected = vdc.Expected(videos=25, classes=4, partition=True)
    problems = vdc.check_counts("ucf101", str(root), expected)
    assert len(problems) == 3 and all("1 videos on disk are in neither list" in p
                                      for p in problems)
    one.unlink()
    with pytest.raises(vdc.DatasetError, match="missing"):
        vdc.check_counts("ucf101", str(root), expected)


@pytest.mark.slow
def test_eval_suite_runs_for_real(tiny_ucf, tmp_path):
    """The whole suite on the tiny dataset: three entry-point processes, then the tables."""
    out = tmp_path / "suite"
    flags = tiny_args(tiny_ucf, out)
    flags = [f for i, f in enumerate(flags) if f not in ("--dataset", "--out-dir") and
             flags[i - 1] not in ("--dataset", "--out-dir")]
    proc = run_script("eval_suite.sh", "synthetic", "random", "--splits", "1", "--out", str(out),
                      "--linear-args", " ".join(CLASSIFY_TINY),
                      "--finetune-args", " ".join(CLASSIFY_TINY),
                      "--retrieval-args", " ".join(RETRIEVAL_TINY), "--", *flags, cwd=ROOT)
    assert len(list(out.rglob("results.json"))) == 3
    assert (out / "tables.md").read_text().count("| synthetic |") == 3
    again = run_script("eval_suite.sh", "synthetic", "random", "--splits", "1", "--out",
                       str(out), "--", *flags, cwd=ROOT)
    assert again.stdout.count("skipped:") == 3
