"""Ownership faults (issue 25): every file a job writes is traceable to what made it, and no job
changes a file it did not make in this run unless told to, and even then not before its own result
is safe. Policy (engine/rundir.py, RunFolder): a run folder's run.json names the job that made it;
a job refuses another job's folder and the folder of the checkpoint it reads; a rerun needs
--overwrite true, which keeps the earlier outputs aside until the new run saved its first result;
results.json carries its provenance, which the evaluation suite compares before reusing it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from engine import checkpoint as ck

from .helpers import (ROOT, EntryPoint, assert_clean_error, copy_run, folder_state, jsonl, latest,
                      pretrain_args, quick_eval_args, retrieval_args, run_script, wait_for)

ENTRY = {"linear": "train_linear.py", "finetune": "train_finetune.py",
         "retrieval": "nn_retrieval.py"}


def _args(job: str, data: Path, out: Path, *extra: str) -> list[str]:
    maker = retrieval_args if job == "retrieval" else quick_eval_args
    return maker(data, out, *extra)


def _without_log_txt(state: dict) -> dict:
    """folder_state less log.txt: every run appends its lines there (the folder's history)."""
    return {k: v for k, v in state.items() if k != "log.txt"}


@pytest.fixture(scope="module")
def retrieval_run(tiny_ucf, tmp_path_factory) -> Path:
    """A finished random-init retrieval run (one clip per video) on tiny_ucf."""
    out = tmp_path_factory.mktemp("retrieval_run") / "ret"
    result = run_script("nn_retrieval.py", *retrieval_args(tiny_ucf, out))
    assert result.returncode == 0, result.output[-3000:]
    return out


# --------------------------------------------------------------------------------------------
# 1. One ownership rule for every job
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("job", ["linear", "finetune", "retrieval"])
def test_evaluation_refuses_the_folder_of_its_checkpoint(tiny_ucf, base_run, tmp_path, job):
    """train_linear.py --checkpoint RUN/checkpoints/latest.pth --out-dir RUN replaced the run's
    best.pth, latest.pth and config.yaml; now: exit 2 naming both, the run byte-for-byte intact."""
    run = copy_run(base_run, tmp_path / "run")
    before = folder_state(run)
    result = run_script(ENTRY[job], *_args(job, tiny_ucf, run, "--checkpoint", str(latest(run))))
    assert_clean_error(result, f"--out-dir {run} is the run folder of the checkpoint",
                       "another --out-dir")
    assert folder_state(run) == before


def test_temporal_diversity_refuses_the_folder_of_its_checkpoint(tiny_ucf, base_run, tmp_path):
    run = copy_run(base_run, tmp_path / "run")
    before = folder_state(run)
    result = run_script("scripts/temporal_diversity.py", "random", str(latest(run)),
                        *retrieval_args(tiny_ucf, run))
    assert_clean_error(result, "is the run folder of the checkpoint")
    assert folder_state(run) == before


@pytest.mark.parametrize("manifest", [True, False], ids=["run.json", "legacy-no-manifest"])
def test_a_job_refuses_another_jobs_folder(tiny_ucf, retrieval_run, tmp_path, manifest):
    """Linear after retrieval into one folder replaced results.json and config.yaml; now every
    other job is refused there, also in a folder written before run.json existed (recognised by
    its results.json), even with --overwrite true."""
    out = copy_run(retrieval_run, tmp_path / "ret")
    if not manifest:
        (out / "run.json").unlink(missing_ok=True)
    before = folder_state(out)
    for script, args in (
            ("train_linear.py", quick_eval_args(tiny_ucf, out)),
            ("train_finetune.py", quick_eval_args(tiny_ucf, out, "--overwrite", "true")),
            ("train_pretrain.py", pretrain_args(tiny_ucf, out)),
            ("scripts/temporal_diversity.py", ["random", *retrieval_args(tiny_ucf, out)])):
        result = run_script(script, *args)
        assert_clean_error(result, f"--out-dir {out} holds the outputs of a retrieval run",
                           "results.json" if not manifest else "run.json", "another --out-dir")
    assert folder_state(out) == before
    if manifest:
        assert json.loads((out / "run.json").read_text())["job"] == "retrieval"


def test_rerun_of_an_evaluation_needs_overwrite(tiny_ucf, retrieval_run, tmp_path):
    """The same retrieval again into its folder: refused (exit 2, nothing changed); with
    --overwrite true it runs, reusing the feature cache that stays in place."""
    out = copy_run(retrieval_run, tmp_path / "ret")
    before = folder_state(out)
    args = retrieval_args(tiny_ucf, out)
    assert_clean_error(run_script("nn_retrieval.py", *args),
                       f"--out-dir {out} already holds the outputs of an earlier retrieval run",
                       "--overwrite true")
    assert folder_state(out) == before
    again = run_script("nn_retrieval.py", *args, "--overwrite", "true")
    assert again.returncode == 0, again.output[-3000:]
    assert "train: reusing cached features" in again.output
    assert not list(out.glob(".overwritten-*"))
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["job"] == "retrieval" and manifest["status"] == "finished"
    assert manifest["checkpoints"] == "random" and manifest["split_files"]


# --------------------------------------------------------------------------------------------
# 2. Results carry provenance; the suite reuses a result only when it matches
# --------------------------------------------------------------------------------------------

class _ForkRunner:
    """orchestrate.Runner that runs each entry point through helpers.run_script (forked)."""

    def __init__(self, orch):
        self.inner = orch.Runner(False)
        self.ran: list[list[str]] = []
        self.dry_run = False
        self.tag = ""

    def info(self, text: str) -> None:
        self.inner.info(text)

    def run(self, argv: list[str]) -> int:
        self.ran.append(argv)
        result = run_script(argv[1], *argv[2:])
        print(result.output[-2000:])
        return result.returncode


def _orchestrate():
    sys.path.insert(0, str(ROOT / "scripts"))
    import orchestrate
    return orchestrate


def test_suite_reruns_a_result_made_by_another_checkpoint(tiny_ucf, base_run, tmp_path, capsys):
    """eval_suite.sh skipped every run with a complete results.json whatever checkpoint made it.
    Now the second suite over a checkpoint rewritten in place (other weights, same path) reruns
    retrieval saying why, and results.json records the new file's sha256."""
    from engine.rundir import file_sha256
    orch = _orchestrate()
    ckpt = tmp_path / "model.pth"
    shutil.copy(latest(base_run), ckpt)
    out = tmp_path / "suite"
    flags = [
        "--data-root", str(tiny_ucf), "--backbone", "r3d18", "--width", "8", "--resolution", "16",
        "--batch-size", "4", "--num-workers", "0", "--device", "cpu", "--progress", "false",
        "--num-clips", "1", "--num-grid-queries", "0", "--embedding-points", "0"]
    opts = orch.parse_suite_args(["ucf101", str(ckpt), "--protocols", "retrieval", "--splits",
                                  "1", "--out", str(out), "--", *flags], env={})
    tools = orch.Tools(python=sys.executable, cwd=ROOT)
    assert orch.run_suite(opts, tools, _ForkRunner(orch)) == 0
    results = out / "retrieval" / "split1_seed0" / "results.json"
    first = json.loads(results.read_text())["provenance"]
    assert first["checkpoint_sha256"] == file_sha256(ckpt)
    assert first["split_files"] and first["config"]["data"]["clip_len"] == 16

    runner = _ForkRunner(orch)                       # same checkpoint: reused
    assert orch.run_suite(opts, tools, runner) == 0
    assert not any("nn_retrieval.py" in argv[1] for argv in runner.ran)
    capsys.readouterr()

    state = ck.load_checkpoint(ckpt)
    for value in state["model"].values():
        if value.is_floating_point():
            value.mul_(0.5)
    torch.save(state, ckpt)
    runner = _ForkRunner(orch)
    assert orch.run_suite(opts, tools, runner) == 0
    said = capsys.readouterr().out
    assert "rerunning:" in said and "checkpoint_sha256" in said, said[-3000:]
    assert runner.ran[0][-2:] == ["--overwrite", "true"]
    assert json.loads(results.read_text())["provenance"]["checkpoint_sha256"] == \
        file_sha256(ckpt)


def test_suite_default_folder_names_the_checkpoints_run(base_run, tmp_path):
    """The default --out came from the file stem: every run's best.pth shared
    runs/eval_ucf101_best. Now it names the run folder and the content's digest."""
    from engine.rundir import file_sha256
    orch = _orchestrate()
    a = copy_run(base_run, tmp_path / "tclr_a")
    b = copy_run(base_run, tmp_path / "tclr_b")
    state = ck.load_checkpoint(latest(b))
    state["step"] = 99
    torch.save(state, b / "checkpoints" / "best.pth")
    outs = [orch.parse_suite_args(["ucf101", str(run / "checkpoints" / "best.pth")], env={}).out
            for run in (a, b)]
    sha = file_sha256(a / "checkpoints" / "best.pth")[:8]
    assert outs[0] == f"runs/eval_ucf101_tclr_a-best-{sha}"
    assert outs[1].startswith("runs/eval_ucf101_tclr_b-best-") and outs[0] != outs[1]
    assert orch.parse_suite_args(["ucf101", "random"], env={}).out == "runs/eval_ucf101_random"


def _fake_result(folder: Path, **fields) -> None:
    folder.mkdir(parents=True)
    base = {"job": "linear", "top1": 50.0, "top5": 90.0, "dataset": "ucf101", "split": 1,
            "seed": 0, "backbone": "r3d18", "width": 8, "init": "random", "checkpoint": None,
            "protocol": "linear probe; seed 0", "select": "last", "label_fraction": 1.0}
    (folder / "results.json").write_text(json.dumps({**base, **fields}))


def test_summarize_refuses_to_average_random_init_with_a_checkpoint(tmp_path, capsys):
    """summarize_runs.py "TCLR=runs/demo" on a parent folder averaged random-init and TCLR
    results into one row; now: exit 2 saying they differ in the initialisation."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import summarize_runs
    _fake_result(tmp_path / "demo" / "random" / "linear", top1=20.0)
    _fake_result(tmp_path / "demo" / "tclr" / "linear", top1=60.0, init="checkpoint",
                 checkpoint="runs/demo/pretrain/checkpoints/best.pth")
    assert summarize_runs.main([f"TCLR={tmp_path / 'demo'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the linear results under") and "init: 'random'" in err, err
    # seeds of one initialisation still average
    _fake_result(tmp_path / "seeds" / "s0", top1=20.0)
    _fake_result(tmp_path / "seeds" / "s1", top1=30.0, seed=1, protocol="linear probe; seed 1")
    assert summarize_runs.main([f"random={tmp_path / 'seeds'}"]) == 0
    assert "| random | 25.0 ± 7.1 |" in capsys.readouterr().out
    # seed replicates of pretraining + evaluation: other checkpoints of one recipe still average,
    # checkpoints of two recipes (another lr) do not
    recipe = {"kind": "pretrain", "config_sha256": "c" * 64}
    prov = {"config": {"lr": 0.01}, "split_files": {}}
    for seed, sha in ((0, "a"), (1, "b")):
        _fake_result(tmp_path / "ic" / f"s{seed}", seed=seed, init="checkpoint",
                     checkpoint=f"pre_seed{seed}/checkpoints/latest.pth",
                     protocol=f"linear probe; seed {seed}",
                     provenance={**prov, "seed": seed, "checkpoint_sha256": sha * 64,
                                 "checkpoint_recipe": {**recipe, "seed": seed}})
    assert summarize_runs.main([f"IC={tmp_path / 'ic'}"]) == 0
    capsys.readouterr()
    other = json.loads((tmp_path / "ic" / "s1" / "results.json").read_text())
    other["provenance"]["checkpoint_recipe"]["config_sha256"] = "d" * 64
    (tmp_path / "ic" / "s1" / "results.json").write_text(json.dumps(other))
    assert summarize_runs.main([f"IC={tmp_path / 'ic'}"]) == 2
    assert "checkpoint_sha256" in capsys.readouterr().err


def test_make_tables_refuses_one_path_that_held_two_checkpoints(tmp_path, capsys):
    """Two seeds of 'one' checkpoint path whose results record different sha256 (the file was
    retrained in between) were averaged into one cell; now: exit 2 naming checkpoint_sha256."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import make_tables
    prov = {"seed": 0, "config": {"lr": 0.01}, "split_files": {"a": "1" * 64}}
    _fake_result(tmp_path / "r" / "s0", init="checkpoint", checkpoint="run/best.pth",
                 provenance={**prov, "checkpoint_sha256": "a" * 64})
    _fake_result(tmp_path / "r" / "s1", init="checkpoint", checkpoint="run/best.pth", seed=1,
                 provenance={**prov, "seed": 1, "checkpoint_sha256": "b" * 64})
    assert make_tables.main([str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "differ in more than the seed" in err and "checkpoint_sha256" in err, err


# --------------------------------------------------------------------------------------------
# 3. --resume auto never starts from scratch over checkpoints
# --------------------------------------------------------------------------------------------

def _state(folder: Path) -> dict:
    """folder_state that also reads links (a dangling one as its target's name)."""
    import hashlib
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        out[rel] = ("-> " + os.readlink(path) if path.is_symlink() else "<dir>" if path.is_dir()
                    else hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def _latest_missing(path: Path) -> str:
    path.unlink()
    return "missing"


def _latest_dangling(path: Path) -> str:
    path.unlink()
    path.symlink_to(path.parent / "gone.pth")
    return "a dangling link"


def _latest_folder(path: Path) -> str:
    path.unlink()
    path.mkdir()
    return "a folder"


def _latest_unreadable(path: Path) -> str:
    path.write_bytes(b"not a checkpoint at all")
    return "cannot be read"


@pytest.mark.parametrize("damage", [_latest_missing, _latest_dangling, _latest_folder,
                                    _latest_unreadable],
                         ids=["missing", "dangling", "folder", "unreadable"])
def test_resume_auto_never_starts_over_a_run(tiny_ucf, base_run, tmp_path, damage):
    """latest.pth missing / dangling: the run trained from scratch and rewrote best.pth. Now it
    stops before training, listing the checkpoints and the --resume PATH that continues."""
    out = copy_run(base_run, tmp_path / "run")
    what = damage(latest(out))
    before = _state(out)
    result = run_script("train_pretrain.py", *pretrain_args(
        tiny_ucf, out, "--epochs", "2", "--max-steps-per-epoch", "1", "--resume", "auto"))
    assert_clean_error(result, what, "best.pth",
                       f"--resume {out / 'checkpoints' / 'best.pth'} --out-dir {out}")
    assert _state(out) == before


def test_resume_from_a_non_finite_checkpoint_names_an_earlier_one(tiny_ucf, base_run, tmp_path):
    """A latest.pth whose weights are already NaN: 'non-finite loss ... try a lower --lr' after a
    step; now: before training, the checkpoint itself is bad, resume from best.pth."""
    out = copy_run(base_run, tmp_path / "run")
    state = ck.load_checkpoint(latest(out))
    first = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][first].fill_(float("nan"))
    torch.save(state, latest(out))
    before = folder_state(out)
    result = run_script("train_pretrain.py", *pretrain_args(
        tiny_ucf, out, "--epochs", "2", "--max-steps-per-epoch", "1", "--resume", "auto"))
    message = assert_clean_error(result, "the checkpoint itself is bad", repr(first),
                                 f"--resume {out / 'checkpoints' / 'best.pth'}")
    assert "non-finite loss" not in message and "Try --amp" not in message
    assert folder_state(out) == before


@pytest.mark.parametrize("flag, value", [("--batch-size", "2"), ("--clip-len", "8"),
                                         ("--w-global-local", "0"), ("--temperature", "0.2")])
def test_resume_with_another_batch_or_clip_length_needs_a_flag(tiny_ucf, base_run, tmp_path,
                                                               flag, value):
    """Also the loss weights and temperature: an ablation variant (IC + LL, --w-global-local 0)
    resumed into TCLR's folder trained one backbone on two objectives without a word."""
    out = copy_run(base_run, tmp_path / "run")
    before = folder_state(out)
    args = pretrain_args(tiny_ucf, out, "--epochs", "2", "--max-steps-per-epoch", "1",
                         "--resume", "auto", flag, value)
    key = flag[2:].replace("-", "_")
    assert_clean_error(run_script("train_pretrain.py", *args), f"{key} ",
                       "--allow-config-change true")
    assert folder_state(out) == before
    allowed = run_script("train_pretrain.py", *args, "--allow-config-change", "true")
    assert allowed.returncode == 0, allowed.output[-3000:]
    assert "resumed from" in allowed.output


# --------------------------------------------------------------------------------------------
# 4. --overwrite keeps the earlier run until the new one has a result
# --------------------------------------------------------------------------------------------

def test_overwrite_puts_the_run_back_when_the_new_one_fails(tiny_ucf, base_run, tmp_path,
                                                            monkeypatch):
    """--overwrite deleted the old run at start; a new run failing at its first step lost both.
    Now the failed run's partial outputs are gone and the old run is back, byte for byte."""
    import losses

    def nan_loss(*args, **kwargs):
        terms = real(*args, **kwargs)
        return {k: v * float("nan") for k, v in terms.items()}

    real = losses.tclr_loss
    monkeypatch.setattr(losses, "tclr_loss", nan_loss)
    out = copy_run(base_run, tmp_path / "run")
    before = folder_state(out)
    result = run_script("train_pretrain.py", *pretrain_args(tiny_ucf, out, "--overwrite", "true"))
    assert_clean_error(result, "non-finite loss")
    assert _without_log_txt(folder_state(out)) == _without_log_txt(before)
    assert "moved the earlier run's checkpoints" in (out / "log.txt").read_text()


def test_overwrite_of_an_evaluation_puts_results_back_on_failure(tiny_ucf, tmp_path, monkeypatch):
    """A linear rerun with --overwrite that fails in training: the earlier results.json,
    checkpoints and pictures are back in place."""
    from engine import classify
    from engine.errors import TrainingError
    out = tmp_path / "lin"
    first = run_script("train_linear.py", *quick_eval_args(tiny_ucf, out))
    assert first.returncode == 0, first.output[-3000:]
    before = folder_state(out)

    def planted(*args, **kwargs):
        raise TrainingError("planted failure in the first epoch")

    monkeypatch.setattr(classify, "train_one_epoch", planted)
    result = run_script("train_linear.py", *quick_eval_args(tiny_ucf, out, "--overwrite", "true"))
    assert_clean_error(result, "planted failure")
    assert _without_log_txt(folder_state(out)) == _without_log_txt(before)


def test_sigkill_during_overwrite_leaves_the_old_run_aside_and_the_next_job_says_where(
        tiny_ucf, base_run, tmp_path, monkeypatch):
    from engine import pretrain

    def stuck(*args, **kwargs):
        time.sleep(120)

    monkeypatch.setattr(pretrain, "train_one_epoch", stuck)
    out = copy_run(base_run, tmp_path / "run")
    proc = EntryPoint("train_pretrain.py", pretrain_args(tiny_ucf, out, "--overwrite", "true"))
    try:
        wait_for(lambda: list(out.glob(".overwritten-*")), 60, "the earlier run set aside", proc)
    finally:
        proc.kill()
    aside = next(out.glob(".overwritten-*"))
    assert (aside / "checkpoints" / "latest.pth").is_file()
    monkeypatch.undo()
    result = run_script("train_pretrain.py", *pretrain_args(tiny_ucf, out, "--resume", "auto"))
    assert_clean_error(result, str(aside), "Move them back", "delete")


# --------------------------------------------------------------------------------------------
# 7. A cut last line of log.jsonl
# --------------------------------------------------------------------------------------------

def _cut_log(run: Path) -> None:
    with open(run / "log.jsonl", "a") as fh:
        fh.write('{"epoch": 1, "step": 2, "loss_to')


def test_plot_script_ignores_a_cut_last_line(base_run, tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    import plot_training_curves
    run = copy_run(base_run, tmp_path / "run")
    _cut_log(run)
    assert plot_training_curves.main([str(run)]) == 0
    captured = capsys.readouterr()
    assert "the last line (2) is cut" in captured.err and "ignored" in captured.err
    assert (run / "training_curves.png").is_file()


def test_resume_truncates_a_cut_last_line_before_appending(tiny_ucf, base_run, tmp_path):
    """--resume auto glued its first record onto a killed run's partial line (for good); now the
    partial line is dropped first and every line of log.jsonl is a record."""
    out = copy_run(base_run, tmp_path / "run")
    _cut_log(out)
    result = run_script("train_pretrain.py", *pretrain_args(
        tiny_ucf, out, "--epochs", "2", "--max-steps-per-epoch", "1", "--resume", "auto"))
    assert result.returncode == 0, result.output[-3000:]
    assert [record["epoch"] for record in jsonl(out)] == [0, 1]
    assert "dropped a cut last line" in result.output


# --------------------------------------------------------------------------------------------
# Also found: SIGTERM, the generator's advice
# --------------------------------------------------------------------------------------------

def _stall(monkeypatch, job: str) -> None:
    """Make ``job`` hang after its start-up succeeded (the run folder is written).

    It sleeps in short slices, as a real loop returns to the interpreter: the kernel may hand the
    SIGTERM to another thread of the process (TensorBoard's writer), and then a single long
    sleep in the main thread is not interrupted, so the handler would run only after it."""
    def stuck(*args, **kwargs):
        for _ in range(1200):
            time.sleep(0.1)

    if job == "linear":
        from engine import classify
        monkeypatch.setattr(classify, "train_one_epoch", stuck)
    elif job == "retrieval":
        from engine import retrieval
        monkeypatch.setattr(retrieval, "subset_features", stuck)
    else:
        from engine import analysis
        monkeypatch.setattr(analysis, "temporal_similarity", stuck)


@pytest.mark.parametrize("job", ["linear", "retrieval", "temporal_diversity"])
def test_sigterm_ends_an_evaluation_like_ctrl_c(tiny_ucf, tmp_path, monkeypatch, job):
    """SIGTERM (a scheduler's) ended linear / retrieval with status 143 and no message; now one
    'interrupted:' line naming SIGTERM, no traceback, run.json saying 'interrupted'."""
    _stall(monkeypatch, job)
    out = tmp_path / "out"
    if job == "temporal_diversity":
        proc = EntryPoint("scripts/temporal_diversity.py", ["random",
                                                            *retrieval_args(tiny_ucf, out)])
    else:
        proc = EntryPoint(ENTRY[job], _args(job, tiny_ucf, out))
    try:
        wait_for(lambda: (out / "config.yaml").is_file(), 120, "the run folder written", proc)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGTERM)
        result = proc.wait(60)
    finally:
        proc.kill()
    assert result.returncode == 143, result.output[-3000:]
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1 and "stopped by SIGTERM" in lines[0], result.stderr[-2000:]
    assert "no new results.json" in lines[0]
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"


def test_job_does_not_advise_its_own_overwrite_for_the_dataset(tmp_path):
    """A half-generated synthetic dataset with other sizes: train_pretrain.py printed the
    generator's 'pass --overwrite', which the job's --overwrite does not do."""
    from dataloaders import synthetic
    root = tmp_path / "data"
    root.mkdir()
    (root / synthetic.MANIFEST_NAME).write_text(json.dumps(
        {"arguments": {"classes": 3}, "complete": False, "entries": []}))
    result = run_script("train_pretrain.py", "--preset", "demo", "--data-root", str(root),
                        "--out-dir", str(tmp_path / "run"), "--device", "cpu")
    assert_clean_error(result, "the job's --overwrite does not regenerate data",
                       f"python -m dataloaders.synthetic --out {root} --overwrite")
    assert not (tmp_path / "run").exists()
