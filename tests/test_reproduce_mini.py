"""reproduce_paper.sh --scale mini: the plan's shape (commands, dependencies, order, options),
the job pool (side by side, failures, ledger), the limited-label subsets at the mini sizes, the
mini tables from hand-made results.json files, and one real end-to-end run at a tiny size
(slow)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.signal_helpers import signal_inside_a_weakref_callback
from tests.test_workflow import make_tables

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def script_module(name: str):
    """scripts/NAME.py imported as a module."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(SCRIPTS))


def plan(env: dict | None = None, args: tuple[str, ...] = ()):
    mp, orch = script_module("mini_plan"), script_module("orchestrate")
    opts = mp.parse_mini_args(list(args), env=env or {})
    return mp.mini_plan(opts, orch.Tools(python="py", cwd=ROOT)), opts


def flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------

def test_mini_plan_pretrains_four_variants_over_three_seeds():
    p, _ = plan()
    pre = [s for s in p.steps if s.kind == "pretrain"]
    assert len(pre) == 12
    weights = {(flag(s.argv, "--seed"), tuple(flag(s.argv, f) for f in (
        "--w-ic-global", "--w-ic-local", "--w-local-local", "--w-global-local")))
        for s in pre}
    assert weights == {(str(seed), w) for seed in range(3) for w in (
        ("1", "1", "0", "0"), ("1", "1", "1", "0"), ("1", "1", "0", "1"), ("1", "1", "1", "1"))}
    for s in pre:   # the learning demo's budget, resumable
        assert s.argv[1] == "train_pretrain.py" and flag(s.argv, "--preset") == "learning"
        assert (flag(s.argv, "--epochs"), flag(s.argv, "--max-steps-per-epoch"),
                flag(s.argv, "--batch-size"), flag(s.argv, "--resume")) == (
                    "30", "10", "20", "auto")
        assert s.needs == ("data-ucf101",)


def test_mini_plan_evaluations_protocols_splits_and_hmdb_rows():
    p, _ = plan()
    evals = [s for s in p.steps if s.run_dir is not None]
    # (init, data, protocol folder, split) -> seeds
    seen = Counter()
    for s in evals:
        m = re.fullmatch(r"runs/reproduce_mini/eval/(\w+)/seed(\d)/(\w+)/(\w+)/split(\d)",
                         s.run_dir)
        assert m, s.run_dir
        init, seed, data, protocol, split = m.groups()
        assert flag(s.argv, "--seed") == seed and flag(s.argv, "--split") == split
        assert flag(s.argv, "--out-dir") == s.run_dir
        assert flag(s.argv, "--dataset") == {"ucf101": "synthetic", "hmdb51": "hmdb51"}[data]
        seen[(init, data, protocol, split)] += 1
    assert set(seen.values()) == {3}                       # every row over seeds 0 1 2
    split1 = {"linear", "finetune", "retrieval", "finetune_labels10", "finetune_labels50"}
    for init in ("random", "ic_only", "ic_ll", "ic_gl", "tclr"):
        assert {p for (i, d, p, k) in seen if i == init and d == "ucf101" and k == "1"} == split1
    assert {(p, k) for (i, d, p, k) in seen if d == "ucf101" and k != "1"} == {
        (p, k) for p in ("linear", "finetune", "retrieval") for k in "23"}
    assert {i for (i, d, p, k) in seen if k != "1"} == {"tclr"}
    assert {(i, p) for (i, d, p, k) in seen if d == "hmdb51"} == {
        (i, p) for i in ("random", "tclr") for p in ("linear", "finetune", "retrieval")}
    assert Counter(s.kind for s in p.steps) == {"data": 2, "pretrain": 12, "linear": 27,
                                               "finetune": 57, "retrieval": 27}
    fractions = Counter(flag(s.argv, "--label-fraction") for s in evals if s.kind == "finetune")
    assert fractions == {None: 27, "0.1": 15, "0.5": 15}
    assert p.tables == ["py", "scripts/make_tables.py", "--mini", "runs/reproduce_mini/eval",
                        "--out", "runs/reproduce_mini/tables.md"]


def test_mini_plan_dependencies_and_order():
    p, _ = plan()
    names = [s.name for s in p.steps]
    assert len(set(names)) == len(names)
    position = {n: i for i, n in enumerate(names)}
    for s in p.steps:
        assert all(position[n] < position[s.name] for n in s.needs), s.name
        if s.run_dir is None:
            continue
        ckpt = flag(s.argv, "--checkpoint")
        init = s.run_dir.split("/")[3]
        data = s.run_dir.split("/")[5]
        if init == "random":
            assert ckpt is None and s.needs == (f"data-{data}",)
        else:   # after its own pretraining, on that pretraining's checkpoint
            seed = flag(s.argv, "--seed")
            pre = next(x for x in p.steps if x.name == f"{init}-seed{seed}-pretrain")
            assert s.needs == (f"data-{data}", pre.name)
            assert ckpt == flag(pre.argv, "--out-dir") + "/checkpoints/latest.pth"
    # pretrainings are started first, random init's evaluations before the pretrained ones'
    kinds = [s.kind for s in p.steps]
    assert kinds[:14] == ["data"] * 2 + ["pretrain"] * 12
    first_pretrained = next(i for i, s in enumerate(p.steps)
                            if s.run_dir and "--checkpoint" in s.argv)
    assert all("--checkpoint" not in s.argv for s in p.steps[14:first_pretrained])


def test_mini_options_sizes_and_refusals():
    from config import ConfigError
    mp = script_module("mini_plan")
    orch = script_module("orchestrate")
    p, opts = plan(env={"MINI_SEEDS": "4", "MINI_PRETRAIN_EPOCHS": "1", "MINI_BATCH": "4"},
                   args=("--out", "o", "--jobs", "3", "--num-workers", "0"))
    assert opts.jobs == 3 and opts.sizes.seeds == (4,)
    pre = [s for s in p.steps if s.kind == "pretrain"]
    assert len(pre) == 4 and all(flag(s.argv, "--seed") == "4" for s in pre)
    assert all(s.argv[-2:] == ["--resume", "auto"] and "--num-workers" in s.argv for s in pre)
    assert flag(pre[0].argv, "--epochs") == "1" and flag(pre[0].argv, "--batch-size") == "4"
    assert mp.parse_mini_args([], env={}).jobs == 2
    for args, env, message in (
            (["--jobs", "0"], {}, "--jobs must be a positive integer"),
            (["--preset", "demo"], {}, "--preset belongs to --scale full"),
            (["--seed", "3"], {}, "--seed is set by the mini plan"),
            ([], {"MINI_BATCH": "x"}, "MINI_BATCH='x': expected a positive integer"),
            ([], {"MINI_SEEDS": ""}, "MINI_SEEDS='': expected non-negative integers")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            mp.parse_mini_args(args, env=env)
    assert orch.split_scale(["--out", "x"]) == ("full", ["--out", "x"])
    assert orch.split_scale(["--scale=mini", "--jobs", "2"]) == ("mini", ["--jobs", "2"])
    for args, message in ((["--scale", "huge"], "--scale must be 'full' or 'mini'"),
                          (["--jobs", "2"], "--jobs belongs to --scale mini")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            orch.split_scale(args)


def test_mini_time_estimate_fits_2_hours():
    mp = script_module("mini_plan")
    p, _ = plan()
    assert 100 <= mp.estimated_wall_minutes(p, 2) <= 125
    assert mp.estimated_wall_minutes(p, 1) == pytest.approx(2 * mp.estimated_wall_minutes(p, 2))


def test_mini_dry_run_prints_the_plan_and_creates_nothing(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(SCRIPTS / "reproduce_paper.sh"), "--scale", "mini",
                           "--dry-run", "--out", "o"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("+ ")]
    assert len(lines) == 126 and "estimated" in proc.stdout
    assert lines[-1].endswith("--mini o/eval --out o/tables.md")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# The job pool
# --------------------------------------------------------------------------------------------

def test_job_pool_side_by_side_failures_and_ledger(tmp_path):
    jp, mp = script_module("job_pool"), script_module("mini_plan")
    marks = tmp_path / "marks"
    marks.mkdir()

    def cmd(code: str) -> list[str]:
        return [sys.executable, "-c",
                f"import sys, time, pathlib; d = pathlib.Path({str(marks)!r}); " + code]
    # a and b run side by side: each waits until the other has started
    steps = [mp.Step("a", "data", cmd("(d / 'a').touch(); t = time.time()\n"
                                      "while not (d / 'b').exists() and time.time() - t < 20: "
                                      "time.sleep(0.05)\n"
                                      "sys.exit(0 if (d / 'b').exists() else 5)")),
             mp.Step("b", "data", cmd("(d / 'b').touch(); t = time.time()\n"
                                      "while not (d / 'a').exists() and time.time() - t < 20: "
                                      "time.sleep(0.05)\nprint('b out')")),
             mp.Step("bad", "pretrain", cmd("sys.exit(3)"), needs=("a",)),
             mp.Step("after-bad", "linear", cmd("(d / 'never').touch()"), needs=("bad",)),
             mp.Step("after-that", "linear", cmd("(d / 'never').touch()"), needs=("after-bad",)),
             mp.Step("kept", "linear", cmd("(d / 'never').touch()"), run_dir="x", needs=("b",)),
             mp.Step("c", "retrieval", cmd("(d / 'c').touch()"), needs=("a", "b"))]
    lines = []
    pool = jp.JobPool(2, tmp_path / "logs", tmp_path / "ledger.json",
                      check_done=lambda s: (s.name == "kept", ""), print_line=lines.append)
    outcomes = pool.run(steps)
    status = {name: o.status for name, o in outcomes.items()}
    assert status == {"a": "done", "b": "done", "bad": "failed", "after-bad": "blocked",
                      "after-that": "blocked", "kept": "skipped", "c": "done"}
    assert not (marks / "never").exists() and (marks / "c").exists()
    log = (tmp_path / "logs" / "b.log").read_text().splitlines()
    assert log[0].startswith(sys.executable) and log[-1] == "b out"
    ledger = {s["name"]: s for s in json.loads((tmp_path / "ledger.json").read_text())["steps"]}
    assert ledger["bad"]["status"] == "failed" and "exit status 3" in ledger["bad"]["detail"]
    assert "bad failed" in ledger["after-bad"]["detail"]
    assert any(re.match(r"\[\d+:\d\d\] \d/7 \(\d+:\d\d left, estimated\) FAILED bad", line)
               for line in lines), lines
    assert sum(") finished " in line for line in lines) == 3


@pytest.mark.parametrize("where", ["while a command runs", "inside a weakref callback"])
def test_job_pool_sigterm_ends_the_running_commands_and_writes_the_ledger(tmp_path, where):
    """SIGTERM to the runner: the running command is ended, the ledger written, JobInterrupted
    with status 143, and the runner's SIGTERM handling put back afterwards. A SIGTERM whose handler
    runs inside a weakref callback is swallowed by Python ("Exception ignored"); the runner's own
    handler used to lose it and run on, engine.preemption.JobSignals sends it again."""
    import signal
    import threading
    import time
    jp, mp = script_module("job_pool"), script_module("mini_plan")
    from engine.errors import JobInterrupted
    started = tmp_path / "started"
    steps = [mp.Step("long", "pretrain", [sys.executable, "-c",
                                          f"import pathlib, time; pathlib.Path({str(started)!r})"
                                          ".touch(); time.sleep(60)"]),
             mp.Step("next", "linear", ["true"], needs=("long",))]

    def sigterm_inside_a_weakref_callback(step):
        signal_inside_a_weakref_callback(signal.SIGTERM)
        return False, ""

    def terminate_once_started():
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    swallowing = where == "inside a weakref callback"
    pool = jp.JobPool(1, tmp_path / "logs", tmp_path / "ledger.json",
                      check_done=(sigterm_inside_a_weakref_callback if swallowing
                                  else lambda s: (False, "")),
                      print_line=lambda line: None)
    handler, hook = signal.getsignal(signal.SIGTERM), sys.unraisablehook
    killer = threading.Thread(target=terminate_once_started, daemon=True)
    t0 = time.monotonic()
    if not swallowing:
        killer.start()
    with pytest.raises(JobInterrupted, match="stopped by SIGTERM") as info:
        pool.run(steps)
    assert info.value.status == 143 and time.monotonic() - t0 < 30
    assert signal.getsignal(signal.SIGTERM) is handler and sys.unraisablehook is hook
    ledger = {s["name"]: s["status"]
              for s in json.loads((tmp_path / "ledger.json").read_text())["steps"]}
    assert ledger["long"] != "done" and ledger["next"] != "done", ledger


def test_job_pool_eta_ignores_steps_that_ended_at_once(tmp_path):
    """A restart finds the data in place and a pretraining at its end: those steps end at once
    (0.2 s; 15 s of a 10-minute estimate, seen on a real restart). The ETA's speed comes from the
    steps that took time (it used to read the quick ones as a very fast machine)."""
    import time
    jp, mp = script_module("job_pool"), script_module("mini_plan")
    steps = [mp.Step("data", "data", ["true"], minutes=2.0),
             mp.Step("resumed", "pretrain", ["true"], minutes=10.0),
             mp.Step("pretrain", "pretrain", ["true"], minutes=10.0),
             mp.Step("probe", "linear", ["true"], minutes=10.0)]
    lines = []
    pool = jp.JobPool(2, tmp_path / "logs", tmp_path / "ledger.json",
                      check_done=lambda s: (False, ""), print_line=lines.append)
    pool.outcomes = {"data": jp.Outcome(jp.DONE, "", 0.2), "resumed": jp.Outcome(jp.DONE, "", 15.0),
                     "pretrain": jp.Outcome(jp.DONE, "", 60.0), "probe": jp.Outcome()}
    pool.start = time.monotonic() - 60
    pool._progress(steps, "finished pretrain")
    minutes, seconds = re.search(r"\((\d+):(\d\d) left", lines[-1]).groups()
    assert 58 <= 60 * int(minutes) + int(seconds) <= 62, lines[-1]   # 10 of 10 minutes left


# --------------------------------------------------------------------------------------------
# Limited labels at the mini sizes
# --------------------------------------------------------------------------------------------

def test_label_fraction_subsets_at_mini_sizes():
    """--label-fraction: seeded, stratified, sized right, nested (10% inside 50%)."""
    from types import SimpleNamespace

    from dataloaders.subsets import split_train_videos
    mp = script_module("mini_plan")
    train, _ = mp.split_sizes(180, "ucf101")
    assert train == 126                        # split 1's train videos per class
    videos = [(f"c{c}/v{i}.avi", c) for c in range(6) for i in range(train)]

    def pick(fraction: float, seed: int) -> list:
        cfg = SimpleNamespace(select="last", val_fraction=0.0, label_fraction=fraction, seed=seed)
        return split_train_videos(videos, cfg)[0]
    ten, fifty = pick(0.1, 0), pick(0.5, 0)
    assert Counter(c for _, c in ten) == {c: 13 for c in range(6)}      # round(12.6)
    assert Counter(c for _, c in fifty) == {c: 63 for c in range(6)}
    assert set(ten) <= set(fifty) and pick(0.1, 0) == ten and pick(0.1, 1) != ten


def test_label_fraction_is_in_the_planned_provenance():
    orch = script_module("orchestrate")
    p, _ = plan()
    step = next(s for s in p.steps if s.name == "random-seed0-ucf101-finetune_labels10-split1")
    prov = orch.planned_provenance("finetune", step.argv)
    full_step = next(s for s in p.steps if s.name == "random-seed0-ucf101-finetune-split1")
    full = orch.planned_provenance("finetune", full_step.argv)
    assert json.dumps(prov["config"]).count('"label_fraction": 0.1') == 1
    assert prov["config_sha256"] != full["config_sha256"]


# --------------------------------------------------------------------------------------------
# The mini tables
# --------------------------------------------------------------------------------------------

def hand_result(job: str, dataset: str, split: int, seed: int, value: float,
                fraction: float = 1.0, config: str = "c", init: str = "random",
                checkpoint: str | None = None) -> dict:
    """A results.json as a job writes it; a pretrained init's runs of one seed name one
    checkpoint (one per seed, of one recipe) unless ``checkpoint`` says another."""
    recipe = None if init == "random" else {"kind": "pretrain", "config_sha256": init,
                                            "seed": seed}
    checkpoint = checkpoint or ("random" if init == "random" else f"{init}{seed}".ljust(64, "0"))
    r = {"job": job, "dataset": dataset, "split": split, "seed": seed, "label_fraction": fraction,
         "protocol": f"{job} seed {seed}",
         "provenance": {"checkpoint_sha256": checkpoint, "checkpoint_recipe": recipe, "seed": seed,
                        "config_sha256": config, "config": {"x": config, "data": {"split": split}},
                        "split_files": {f"testlist0{split}.txt": f"sha{split}"}}}
    if job == "retrieval":
        r.update({f"recall@{k}": value + k / 10 for k in (1, 5, 10, 20, 50)})
    else:
        r["top1"] = value
    return r


def write_result(root: Path, init: str, seed: int, data: str, folder: str, split: int,
                 result: dict) -> None:
    d = root / init / f"seed{seed}" / data / folder / f"split{split}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(result))


@pytest.fixture
def mini_eval(tmp_path) -> Path:
    root = tmp_path / "eval"
    for init, base in (("random", 10.0), ("ic_only", 20.0), ("ic_ll", 30.0), ("ic_gl", 40.0),
                       ("tclr", 50.0)):
        for seed in (0, 1, 2):
            for job in ("linear", "finetune", "retrieval"):
                write_result(root, init, seed, "ucf101", job, 1,
                             hand_result(job, "synthetic", 1, seed, base + seed, init=init))
            for f in (0.1, 0.5):
                write_result(root, init, seed, "ucf101", f"finetune_labels{round(100 * f)}", 1,
                             hand_result("finetune", "synthetic", 1, seed, base * f + seed, f, init=init))
            if init == "tclr":
                for split in (2, 3):
                    for job in ("linear", "finetune", "retrieval"):
                        write_result(root, init, seed, "ucf101", job, split,
                                     hand_result(job, "synthetic", split, seed,
                                                 base + 3 * split + seed, init=init))
            if init in ("random", "tclr"):
                for job in ("linear", "finetune", "retrieval"):
                    write_result(root, init, seed, "hmdb51", job, 1,
                                 hand_result(job, "hmdb51", 1, seed, base / 2 + seed, init=init))
    return root


def rows(markdown: str, title: str) -> list[str]:
    """The data rows (after header and alignment) of the first table under ``## title``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## " + title))
    first = next(i for i in range(start, len(lines)) if lines[i].startswith("|"))
    end = next((i for i in range(first, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[first + 2:end]


def test_mini_tables_known_answer(mini_eval, tmp_path):
    out = tmp_path / "t.md"
    status, text, err = make_tables("--mini", mini_eval, "--out", out)
    assert status == 0, err
    assert out.read_text() == text and "mini (synthetic, CPU)" in text
    assert "not UCF101 or HMDB51 figures" in text
    # TCLR on UCF101: 9 runs over splits 1-3 (50..52, 56..58, 59..61): mean 56, sample std
    assert rows(text, "1. Main")[0] == ("| Linear | UCF101 | 56.0 ± 4.1 (n=9) | 11.0 ± 1.0 (n=3) "
                                        "| 69.9 (release) |")
    assert rows(text, "1. Main")[3] == ("| Finetune | HMDB51 | 26.0 ± 1.0 (n=3) | "
                                        "6.0 ± 1.0 (n=3) | 52.9 (paper) |")
    ablation = rows(text, "2. Loss ablation")
    assert ablation[0] == ("| IC only | 21.0 ± 1.0 (n=3) | 21.0 ± 1.0 (n=3) | "
                           "21.1 ± 1.0 (n=3) |  |  |  |")
    assert ablation[3].startswith("| TCLR (IC + LL + GL) | 51.0 ± 1.0 (n=3) |")
    assert ablation[3].endswith("| 69.9 (release) | 82.4 (paper), 82 (release) | "
                                "56.2 (paper), 56.1 (release) |")
    assert rows(text, "3. Limited labels")[0] == ("| random init | 2.0 ± 1.0 (n=3) | "
                                                  "6.0 ± 1.0 (n=3) | 11.0 ± 1.0 (n=3) |")
    retrieval = rows(text, "4. Nearest-neighbour")
    assert retrieval[-1].startswith("| TCLR (IC + LL + GL) | splits 1-3 | 56.1 ± 4.1 (n=9) |")
    assert retrieval[-1].endswith("| 61.0 ± 4.1 (n=9) | 56.2 (paper), 56.1 (release) |")
    assert rows(text, "5. Transfer")[1].startswith("| TCLR (IC + LL + GL) | 26.0 ± 1.0 (n=3) |")
    every = rows(text, "6. Every seed")
    assert len(every) == 15                                    # 5 pretrainings x 3 seeds
    assert every[4] == "| IC only | 1 | 21.0 | 21.0 | 21.1 | 3.0 | 11.0 |"


def test_mini_tables_refuse_mixed_provenance_and_foreign_results(mini_eval, tmp_path):
    stale = mini_eval / "ic_gl" / "seed1" / "ucf101" / "linear" / "split1" / "results.json"
    stale.write_text(json.dumps(hand_result("linear", "synthetic", 1, 1, 41.0, config="other")))
    status, _, err = make_tables("--mini", mini_eval)
    assert status == 2 and "linear runs of IC + GL on ucf101 split 1" in err
    assert "differ in more than the seed" in err and "config" in err
    stale.write_text(json.dumps(hand_result("linear", "synthetic", 1, 2, 41.0)))
    status, _, err = make_tables("--mini", mini_eval)
    assert status == 2 and "the run's seed is 2 but it lies in seed1/" in err
    stale.write_text(json.dumps(hand_result("linear", "ucf101", 1, 1, 41.0)))
    status, _, err = make_tables("--mini", mini_eval)
    assert status == 2 and "dataset 'ucf101' is not the mini plan's" in err
    stale.unlink()
    (mini_eval / "nope").mkdir()
    (mini_eval / "nope" / "results.json").write_text(json.dumps(
        hand_result("linear", "synthetic", 1, 0, 1.0)))
    status, _, err = make_tables("--mini", mini_eval)
    assert status == 2 and "'nope', not one of random, ic_only" in err
    status, _, err = make_tables("--mini", tmp_path / "missing")
    assert status == 2 and "is not a folder" in err


def test_mini_tables_refuse_runs_side_by_side_that_do_not_measure_alike(mini_eval):
    assert make_tables("--mini", mini_eval)[0] == 0   # splits 1-3 pooled: split and its files differ
    # a pretraining rerun whose evaluations only partly reran: two backbones in one row
    finetune = mini_eval / "tclr" / "seed0" / "ucf101" / "finetune" / "split1" / "results.json"
    original = finetune.read_text()
    finetune.write_text(json.dumps(hand_result("finetune", "synthetic", 1, 0, 50.0,
                                               init="tclr", checkpoint="f" * 64)))
    status, _, err = make_tables("--mini", mini_eval)
    assert status == 2 and "evaluations of TCLR (IC + LL + GL) seed 0 use two checkpoints" in err
    assert "ffffffffffff" in err and "finetune/split1" in err
    finetune.write_text(original)
    # random init's linear probe run with another protocol config on every seed: each cell is
    # consistent, but the column compares two protocols
    for seed in (0, 1, 2):
        (mini_eval / "random" / f"seed{seed}" / "ucf101" / "linear" / "split1"
         / "results.json").write_text(json.dumps(
             hand_result("linear", "synthetic", 1, seed, 10.0 + seed, config="lr 0.1")))
    status, _, err = make_tables("--mini", mini_eval)
    assert status == 2 and "the linear runs on ucf101 (labels 1) do not share one protocol" in err
    assert "config x: 'c' vs 'lr 0.1'" in err
    for seed in (0, 1, 2):
        (mini_eval / "random" / f"seed{seed}" / "ucf101" / "linear" / "split1"
         / "results.json").write_text(json.dumps(
             hand_result("linear", "synthetic", 1, seed, 10.0 + seed)))
    # TCLR's split-3 runs with another config besides the split
    for seed in (0, 1, 2):
        (mini_eval / "tclr" / f"seed{seed}" / "ucf101" / "retrieval" / "split3"
         / "results.json").write_text(json.dumps(
             hand_result("retrieval", "synthetic", 3, seed, 60.0, config="k 5",
                         init="tclr")))
    status, _, err = make_tables("--mini", mini_eval)
    assert status == 2 and "the retrieval runs on ucf101 (labels 1) do not share one" in err
    assert "data.split" not in err and "split_files" not in err


# --------------------------------------------------------------------------------------------
# One real run at a tiny size
# --------------------------------------------------------------------------------------------

TINY = {"MINI_SEEDS": "0", "MINI_PRETRAIN_EPOCHS": "1", "MINI_STEPS_PER_EPOCH": "1",
        "MINI_BATCH": "4", "MINI_LINEAR_EPOCHS": "1", "MINI_FINETUNE_EPOCHS": "1",
        "MINI_EVAL_CLIPS": "1", "MINI_VIDEOS_PER_CLASS": "6", "MINI_HMDB_VIDEOS_PER_CLASS": "6"}


@pytest.mark.slow
def test_mini_end_to_end_tiny_killed_restarted_and_rerun(tmp_path):
    """The chain data -> pretraining -> evaluations -> tables, for real at a tiny size (one
    seed, one step): killed (SIGTERM) part way, restarted with the same command (finished
    commands kept, the rest run), then run once more (every evaluation kept)."""
    import signal
    import time
    env = {**os.environ, **TINY, "PYTHON": sys.executable}
    argv = ["bash", str(SCRIPTS / "reproduce_paper.sh"), "--scale", "mini", "--out", "out",
            "--ucf-root", "ucf", "--hmdb-root", "hmdb", "--jobs", "2", "--num-workers", "0",
            "--batch-size", "4"]
    ledger_path = tmp_path / "out" / "ledger.json"

    def ledger() -> list[dict]:
        return json.loads(ledger_path.read_text())["steps"]

    killed = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and killed.poll() is None:
        time.sleep(1)
        if ledger_path.is_file() and sum(s["status"] == "done" for s in ledger()) >= 10:
            killed.send_signal(signal.SIGTERM)   # bash exec'd the runner: this is its id
            break
    output, _ = killed.communicate(timeout=120)
    assert killed.returncode != 0, output[-3000:]
    evaluated = {s["name"] for s in ledger() if s["status"] == "done" and s["kind"] in
                 ("linear", "finetune", "retrieval")}
    assert evaluated and not (tmp_path / "out" / "tables.md").exists()

    first = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                           env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    steps = ledger()
    assert len(steps) == 2 + 4 + 25 + 6 + 6
    assert {s["name"] for s in steps if s["status"] == "skipped"} == evaluated
    assert {s["status"] for s in steps if s["name"] not in evaluated} == {"done"}
    tables = (tmp_path / "out" / "tables.md").read_text()
    ablation = rows(tables, "2. Loss ablation")
    assert len(ablation) == 5 and all(re.search(r"\| \d+\.\d \(n=1\) \|", r) for r in ablation)
    assert re.search(r"\| TCLR \(IC \+ LL \+ GL\) \| splits 1-3 \| \d+\.\d ± \d+\.\d \(n=3\)",
                     tables)
    assert len(re.findall(r"\) finished \S+", first.stdout)) == len(steps) - len(evaluated)

    second = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                            env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert Counter(s["status"] for s in ledger()) == {"skipped": 37, "done": 6}
    assert (tmp_path / "out" / "tables.md").read_text().split("Cells:")[0] == \
        tables.split("Cells:")[0]
