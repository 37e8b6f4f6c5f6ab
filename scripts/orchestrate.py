#!/usr/bin/env python
"""The run matrices of the workflow scripts: which entry-point commands run, in what order, which
are skipped because they already finished, and what a failure leaves in the ledger.

    python scripts/orchestrate.py suite DATASET CHECKPOINT|random [options]   # eval_suite.sh
    python scripts/orchestrate.py reproduce [options]                         # reproduce_paper.sh
    python scripts/orchestrate.py reproduce --scale mini [options]            # the same, CPU, shrunk
    python scripts/orchestrate.py curve RUN_DIR [options]                     # retrieval_curve.sh

Each command builds its plan as argv lists first (``suite_runs``, ``reproduce_plan``,
``curve_points``: the functions the tests call), checks every input, then runs the commands one
after the other, or with --dry-run prints them (``+ CMD``, as a shell reads them back) and runs and
creates nothing. The .sh names are thin wrappers, so the README's commands stay as they were.
``reproduce --scale mini`` builds its plan in mini_plan.py and runs several commands side by side
(job_pool.py), quietly, each into its own log.

Environment: PYTHON, the interpreter the commands name (default ``python``); TORCHRUN (default
``torchrun``); TCLR_GPUS, the default of --gpus; DRY_RUN=1 is --dry-run. Progress lines start with
``==``, commands with ``+``. A user mistake ends as one ``error: ...`` line with exit status 2; a
failed run ends the suite with status 1 (naming the run and its log), another failed step with
the step's own status; Ctrl-C lets the running job end as it does on its own and stops the plan
(status 130). A run folder counts as finished when its results.json is complete and records the
same checkpoint sha256, seed, protocol config and split-file digests as the planned run; a rerun
into a folder with outputs passes --overwrite true (the job keeps the old ones aside until its
first result is saved).
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from config import ConfigError  # noqa: E402
from engine.errors import JobInterrupted  # noqa: E402
# The plans (options, argv lists) are built in orchestrate_plans.py, beside this file (the script's
# folder is on sys.path); this module prints the help, runs or prints the plans, skips finished
# runs and keeps the ledger.
from orchestrate_plans import (  # noqa: E402
    CurveOptions, ReproduceOptions, SuiteOptions, Tools, TrainedOn, curve_points,
    parse_curve_args, parse_reproduce_args, parse_suite_args, planned_provenance, reproduce_plan,
    split_note, suite_runs, tables_argv, walk_options)
from job_pool import BLOCKED, FAILED, JobPool, clock  # noqa: E402
from mini_plan import MiniOptions, estimated_wall_minutes, mini_plan, parse_mini_args  # noqa: E402

# The metric a finished run's results.json holds (written by engine.classify_report, called from
# engine.classify, and by engine.retrieval).
METRIC = {"linear": "top1", "finetune": "top1", "retrieval": "recall@1"}


# --------------------------------------------------------------------------------------------
# Running and printing, the skip rule
# --------------------------------------------------------------------------------------------

class StepFailed(Exception):
    """A command of the plan ended with a non-zero status (``status`` is what this script exits
    with); the message names the step and where its log is."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def finished(run_dir: str, job: str, argv: list[str] | None = None) -> tuple[bool, str]:
    """Whether ``run_dir`` holds the complete results.json of a ``job`` run that the command
    ``argv`` would make again: same checkpoint content (sha256), seed, protocol config and split
    files (its "provenance").

    Returns:
        (done, why_not): why_not is empty when there is no results.json at all, else it says what
        is wrong with the one there (unreadable, another job's, no metric, made by another
        checkpoint or protocol): such a run reruns.
    """
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        return False, ""
    from engine.metrics import ResultsFileError, load_results
    try:
        result = load_results([path])[0]
    except ResultsFileError as exc:
        return False, str(exc)
    if result.get("job") != job:
        return False, f"{path} holds the results of a {result.get('job')!r} job, not of {job!r}"
    if not isinstance(result.get(METRIC[job]), (int, float)):
        return False, f"{path} has no {METRIC[job]!r} (the job did not finish writing it)"
    if argv is None:
        return True, ""
    made = result.get("provenance")
    if not isinstance(made, dict):
        return False, (f"{path} does not record which checkpoint, config and split files made it "
                       "(written before results carried their provenance)")
    from engine.rundir import provenance_differences
    differ = provenance_differences(made, planned_provenance(job, argv), ignore=())
    if differ:
        return False, (f"{path} was made by another run than this one: "
                       + "; ".join(differ[:4]) + (" ..." if len(differ) > 4 else ""))
    return True, ""


def log_hint(run_dir: str) -> str:
    """Where to read why a run failed. A job that stops during start-up (a bad flag, a missing
    file) writes nothing into its run folder, so there may be no log.txt: its error is above."""
    log = Path(run_dir) / "log.txt"
    if log.is_file():
        return f"see above and {log}"
    return f"see its error above (it stopped before writing {log})"


def trained_on(checkpoint: str) -> TrainedOn | None:
    """The dataset and split a checkpoint of this project was trained on (from the config it
    holds); None for "random", a missing file, or a file that records none (the release's)."""
    if checkpoint == "random" or not Path(checkpoint).is_file():
        return None
    from engine.checkpoint import load_checkpoint
    from models.weights import CheckpointError
    try:
        ckpt = load_checkpoint(checkpoint)
    except CheckpointError:
        return None
    data = (ckpt.get("config") or {}).get("data") or {}
    kind = (ckpt.get("meta") or {}).get("kind", "pretrain")
    if isinstance(data.get("dataset"), str) and isinstance(data.get("split"), int):
        return TrainedOn(data["dataset"], data["split"], kind)
    return None
def rerun_argv(run_dir: str, argv: list[str]) -> list[str]:
    """``argv``, with ``--overwrite true`` when ``run_dir`` already holds a run's outputs (a rerun:
    the job keeps them aside until its first result is saved, and puts them back if it fails)."""
    from engine.rundir import output_paths
    if Path(run_dir).is_dir() and output_paths(Path(run_dir)):
        return [*argv, "--overwrite", "true"]
    return argv


def run_command(argv: list[str]) -> int:
    """Run one command in the foreground; returns its exit status.

    Ctrl-C reaches the command too (one process group); it is left to end as it does on its own
    (pretraining finishes its step and saves) and the plan then stops.

    Raises:
        JobInterrupted: Ctrl-C was pressed, or the command ended by it.
    """
    try:
        proc = subprocess.Popen(argv)
    except OSError as exc:
        print(f"error: cannot start {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    interrupted = False
    while True:
        try:
            status = proc.wait()
            break
        except KeyboardInterrupt:
            interrupted = True
    if interrupted or status in (130, -signal.SIGINT):
        raise JobInterrupted(f"stopped by Ctrl-C during {shlex.join(argv[:2])} (status {status}); "
                             "finished runs are kept: rerun the same command to continue")
    return status


class Runner:
    """Prints progress and commands; runs each command unless this is a dry run."""

    def __init__(self, dry_run: bool):
        self.dry_run = dry_run

    def info(self, text: str) -> None:
        print(f"== {text}", flush=True)

    def run(self, argv: list[str]) -> int:
        print("+ " + shlex.join(argv), flush=True)
        return 0 if self.dry_run else run_command(argv)

    @property
    def tag(self) -> str:
        return " [dry run]" if self.dry_run else ""


# --------------------------------------------------------------------------------------------
# suite: linear probe, finetuning and retrieval of one checkpoint over the splits
# --------------------------------------------------------------------------------------------

SUITE_USAGE = """\
The evaluation suite of one dataset: linear probe, full finetuning and nearest-neighbour
retrieval of one checkpoint over the official splits, into one results folder, then the tables.
scripts/eval_ucf101.sh and scripts/eval_hmdb51.sh call this with their dataset name.

  scripts/eval_suite.sh DATASET CHECKPOINT [options] [ENTRY-POINT FLAGS...] [-- FLAGS...]

  CHECKPOINT           a checkpoint file (this project's, the release's, torchvision's), or
                       "random" for the from-scratch baseline (random initialisation)
  --splits "1 2 3"     splits to run (default: all three). A checkpoint pretrained on one
                       split's train list has seen the test videos of the other splits (without
                       labels); the suite prints a note when it evaluates such splits
  --seeds "0"          seeds of the linear/finetune runs (several give mean ± std); retrieval of
                       a checkpoint runs once per split (its features do not depend on the seed)
  --protocols "linear finetune retrieval"   which protocols (default: all three)
  --out DIR            results folder (default: runs/eval_<dataset>_<run>-<stem>-<sha8>: the
                       checkpoint's run folder, file stem and content digest; _random);
                       runs go to DIR/<protocol>/split<S>_seed<N>/, the tables to DIR/tables.md
  --gpus N             processes per run: torchrun --standalone when N > 1 (default:
                       $TCLR_GPUS, else 1)
  --linear-args "..." / --finetune-args "..." / --retrieval-args "..."   flags for one protocol
  --force              rerun runs that already have a complete results.json (default: skip a
                       run whose results.json was made by the same checkpoint content, seed,
                       protocol config and split files; any other is run again, saying why)
  --keep-going         after a failed run, go on with the others (exit status 1 at the end)
  --dry-run            print the commands; run and create nothing
Any other flag (and everything after --) goes to every entry point, e.g. --data-root DIR,
--device cuda:1, --num-workers 16, --trust-checkpoint true, --preset NAME, --batch-size 16.
Options take their value as the next word or after '=' (--splits=2, --out=DIR)."""


def run_suite(opts: SuiteOptions, tools: Tools, runner: Runner) -> int:
    """Run (or print) the suite, skipping finished runs, then the tables.

    Returns:
        0, or 1 when --keep-going went past failed runs (the ledger is printed to stderr).
    Raises:
        ConfigError: the checkpoint file does not exist.
        StepFailed: a run failed without --keep-going.
    """
    if opts.checkpoint != "random" and not runner.dry_run and not Path(opts.checkpoint).is_file():
        raise ConfigError(f"checkpoint {opts.checkpoint}: no such file (give a file, or 'random' "
                          "for the baseline)")
    runs = suite_runs(opts, tools)
    runner.info(f"evaluating {opts.checkpoint} on {opts.dataset}: {' '.join(opts.protocols)}; "
                f"splits {' '.join(map(str, opts.splits))}; seeds {' '.join(map(str, opts.seeds))}"
                f"; results in {opts.out}{runner.tag}")
    note = split_note(opts, trained_on(opts.checkpoint))
    if note:
        print(f"note: {note}", flush=True)
    failed = []
    for number, run in enumerate(runs, 1):
        runner.info(f"[{number}/{len(runs)}] {run.protocol}, {opts.dataset} split {run.split}, "
                    f"seed {run.seed} -> {run.run_dir}")
        if not opts.force:
            done, why_not = finished(run.run_dir, run.protocol,
                                     None if runner.dry_run else run.argv)
            if done:
                runner.info(f"skipped: {run.run_dir}/results.json exists, made by the same "
                            "checkpoint, seed, protocol and split files (--force reruns it)")
                continue
            if why_not:
                runner.info(f"rerunning: {why_not}")
        if runner.run(rerun_argv(run.run_dir, run.argv)) != 0:
            hint = log_hint(run.run_dir)
            failed.append(f"{run.protocol} split {run.split} seed {run.seed} ({hint})")
            if not opts.keep_going:
                raise StepFailed(f"{run.protocol} on {opts.dataset} split {run.split} (seed "
                                 f"{run.seed}) failed; {hint}. Rerun this script to continue "
                                 "(finished runs are skipped)", 1)
    if runner.run(tables_argv(opts.out, tools)) != 0:
        print(f"warning: no tables for {opts.out} (see above)", file=sys.stderr)
    if note:
        print(f"note: {note}", flush=True)
    if failed:
        print(f"error: {len(failed)} run(s) failed:", file=sys.stderr)
        print("\n".join(f"  {line}" for line in failed), file=sys.stderr)
        return 1
    return 0


def main_suite(argv: list[str]) -> int:
    opts = parse_suite_args(argv)
    return run_suite(opts, Tools.from_env(), Runner(opts.dry_run))


# --------------------------------------------------------------------------------------------
# reproduce: pretraining, then both evaluation suites and the tables
# --------------------------------------------------------------------------------------------

REPRODUCE_USAGE = """\
The paper's main experiment end to end: TCLR pretraining on UCF101 split 1 (TCLR_SPEC section 6),
then the UCF101 and HMDB51 evaluation suites (linear probe, finetuning, retrieval; splits 1-3)
on the lowest-training-loss checkpoint (best.pth: the release evaluates its model_best_e*_loss_*
checkpoint), then the Markdown tables beside the published figures.

  scripts/reproduce_paper.sh [options] [PRETRAINING FLAGS...]

  --preset NAME        pretraining preset (default ucf101_r3d18; see train_pretrain.py --help);
                       its backbone, width, resolution and channel order go to the evaluations
  --ucf-root DIR       UCF101 root (default data/ucf101; scripts/prepare_ucf101.sh makes it)
  --hmdb-root DIR      HMDB51 root (default data/hmdb51; scripts/prepare_hmdb51.sh makes it)
  --pretrain-root DIR  pretraining data root (default: the UCF101 root; set it for k400_* presets)
  --out DIR            everything goes here (default runs/reproduce_<preset>):
                       DIR/pretrain/ (checkpoints/, log.txt, tensorboard/), DIR/eval_ucf101/,
                       DIR/eval_hmdb51/, DIR/tables.md
  --gpus N             processes per job on this machine: torchrun --standalone when N > 1
                       (default: $TCLR_GPUS, else 1). Several machines: pretrain with
                       OUT_DIR=DIR/pretrain sbatch scripts/slurm_pretrain.sh ..., then run
                       this with --skip-pretrain
  --checkpoint-name F  the checkpoint evaluated, in DIR/pretrain/checkpoints/ (default
                       best.pth = lowest epoch training loss, as the release; latest.pth = the
                       final epoch)
  --skip-pretrain      evaluate an existing DIR/pretrain (default: pretrain, resuming if stopped)
  --baseline           also evaluate a randomly initialised backbone (DIR/eval_*_random/)
  --splits, --seeds, --protocols   passed to both evaluation suites (scripts/eval_suite.sh)
  --eval-args "..."    flags for every evaluation run (e.g. "--num-workers 16")
  --dry-run            print the commands; run and create nothing
  --scale full|mini    full (default): this plan; mini: the same plan for real on the CPU,
                       shrunk (below)
Any other flag goes to train_pretrain.py (e.g. --epochs 200 --num-workers 16). Options take
their value as the next word or after '=' (--gpus=4, --out=DIR)."""


def run_reproduce(opts: ReproduceOptions, tools: Tools, runner: Runner) -> int:
    """Pretrain (resuming), evaluate both datasets (and the baseline), write the tables.

    Raises:
        ConfigError: the checkpoint to evaluate does not exist.
        StepFailed: pretraining, a suite's run or the tables failed.
    """
    plan = reproduce_plan(opts, tools)
    runner.info(f"reproducing TCLR: preset {opts.preset}, results in {opts.out}{runner.tag}")
    if plan.pretrain is None:
        runner.info("skipping pretraining (--skip-pretrain)")
    else:
        runner.info(f"pretraining with preset {opts.preset} on {opts.pretrain_root} (split 1) -> "
                    f"{opts.out}/pretrain")
        status = runner.run(plan.pretrain)
        if status != 0:
            raise StepFailed(f"pretraining failed (exit status {status}); "
                             f"{log_hint(f'{opts.out}/pretrain')}. Rerun this script to continue "
                             "it (--resume auto)", status)
    if not runner.dry_run and not Path(plan.checkpoint).is_file():
        raise ConfigError(f"{plan.checkpoint} does not exist (see {opts.out}/pretrain/checkpoints/;"
                          " --checkpoint-name picks another)")
    for suite in plan.suites:
        runner.info(f"evaluation suite: {suite.dataset}, {suite.checkpoint} -> {suite.out}")
        run_suite(suite, tools, runner)
    runner.info("tables of all evaluations")
    status = runner.run(plan.tables)
    if status != 0:
        raise StepFailed(f"the tables of {opts.out} failed (exit status {status}); see above",
                         status)
    return 0


def split_scale(argv: list[str]) -> tuple[str, list[str]]:
    """(--scale value, the other words): "full" (the default) or "mini".

    Raises:
        ConfigError: another value, or --jobs without --scale mini.
    """
    own, rest = walk_options(argv, ("--scale",), ())
    scale = own.get("--scale", "full")
    if scale not in ("full", "mini"):
        raise ConfigError(f"--scale must be 'full' or 'mini', got '{scale}'")
    if scale == "full" and any(w.split("=")[0] == "--jobs" for w in rest):
        raise ConfigError("--jobs belongs to --scale mini (the full scale runs one job at a time "
                          "on --gpus GPUs)")
    return scale, rest


def main_reproduce(argv: list[str]) -> int:
    scale, argv = split_scale(argv)
    if scale == "mini":
        return run_mini(parse_mini_args(argv), Tools.from_env())
    opts = parse_reproduce_args(argv)
    return run_reproduce(opts, Tools.from_env(), Runner(opts.dry_run))


# --------------------------------------------------------------------------------------------
# reproduce --scale mini: the same plan, for real on the CPU, shrunk
# --------------------------------------------------------------------------------------------

MINI_USAGE = """\
--scale mini: the paper's plan run for real on the CPU at the learning demo's sizes (docs/
reproduce.md, "The mini scale"): the "switch" synthetic data in the UCF101 layout (the learning
demo's, data/synthetic_switch) and a second draw in the HMDB51 layout; pretraining of IC only,
IC + LL, IC + GL and TCLR over seeds 0 1 2 (preset learning, 300 steps each); on split 1 for
every variant and random init: linear probe, finetuning, retrieval (R@1/5/10/20/50) and
finetuning with 10% and 50% of the labels; TCLR also on splits 2 and 3; TCLR and random init
on the HMDB51-layout data (split 1); then the paper's tables beside the published figures
(DIR/tables.md). About 2 hours on 2 idle cores (estimated; --dry-run prints the estimate).

  scripts/reproduce_paper.sh --scale mini [--out DIR] [--jobs N] [--dry-run] [FLAGS...]

  --out DIR            everything goes here (default runs/reproduce_mini): DIR/pretrain/,
                       DIR/eval/INIT/seedS/DATA/PROTOCOL/splitK/, DIR/logs/NAME.log (each
                       command's output; first line: the command), DIR/ledger.json (what
                       happened to every command), DIR/tables.md
  --jobs N             commands side by side, one thread each (default 2)
  --ucf-root DIR       the UCF101-layout data (default data/synthetic_switch; generated if absent)
  --hmdb-root DIR      the HMDB51-layout data (default data/synthetic_switch_hmdb51; generated)
  --dry-run            print the commands and the estimated time; run and create nothing
Any other flag goes to every entry point (e.g. --num-workers 0). Killed and rerun with the same
command, it continues: pretraining resumes (--resume auto), an evaluation whose results.json was
made by the same checkpoint, seed, protocol and split files is kept. A failed command is
recorded and the rest goes on (what needs it is not run); the exit status is then 1.
Sizes (tests; environment): MINI_SEEDS ("0 1 2"), MINI_PRETRAIN_EPOCHS (30),
MINI_STEPS_PER_EPOCH (10), MINI_BATCH (20), MINI_LINEAR_EPOCHS (10), MINI_FINETUNE_EPOCHS (3),
MINI_EVAL_CLIPS (3), MINI_VIDEOS_PER_CLASS (180), MINI_HMDB_VIDEOS_PER_CLASS (100)."""


def quiet_command(argv: list[str], log: Path) -> int:
    """Run ``argv`` with its output into ``log`` (first line: the command); its status. On a
    failure the log's last lines go to stderr."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as handle:
        handle.write(shlex.join(argv) + "\n")
        handle.flush()
        try:
            status = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT).returncode
        except OSError as exc:
            handle.write(f"cannot start {argv[0]}: {exc.strerror}\n")
            status = 127
    if status != 0:
        print("\n".join(log.read_text(encoding="utf-8").splitlines()[-8:]), file=sys.stderr)
    return status


def run_mini(opts: MiniOptions, tools: Tools) -> int:
    """Run (or print) the mini plan, several commands side by side, then the tables.

    Returns:
        0, or 1 when a command failed or was not run (the ledger says which; the tables are
        written from what finished).
    Raises:
        JobInterrupted: Ctrl-C or SIGTERM.
    """
    plan = mini_plan(opts, tools)
    kinds = Counter(step.kind for step in plan.steps)
    counts = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
    wall = estimated_wall_minutes(plan, opts.jobs)
    print(f"== reproducing TCLR at the mini scale (synthetic data, CPU): {len(plan.steps)} "
          f"commands ({counts}), {opts.jobs} side by side; estimated {wall:.0f} min on "
          f"{opts.jobs} idle cores at the default sizes; results in {opts.out}"
          f"{' [dry run]' if opts.dry_run else ''}", flush=True)
    if opts.dry_run:
        for step in plan.steps:
            after = f"  # after {', '.join(step.needs)}" if step.needs else ""
            print(f"+ {shlex.join(step.argv)}{after}", flush=True)
        print(f"+ {shlex.join(plan.tables)}", flush=True)
        return 0

    def check_done(step) -> tuple[bool, str]:
        if step.run_dir is None:
            return False, ""
        try:
            return finished(step.run_dir, step.kind, step.argv)
        except (ConfigError, OSError) as exc:   # e.g. a checkpoint that cannot be read: rerun,
            return False, f"cannot compare with the planned run ({exc})"   # its log will say

    def prepare(step) -> list[str]:
        return step.argv if step.run_dir is None else rerun_argv(step.run_dir, step.argv)

    out = Path(opts.out)
    pool = JobPool(opts.jobs, out / "logs", out / "ledger.json", check_done, prepare)
    outcomes = pool.run(plan.steps)
    bad = [(name, o) for name, o in outcomes.items() if o.status in (FAILED, BLOCKED)]
    status = quiet_command(plan.tables, out / "logs" / "tables.log")
    if status == 0:
        print(f"== the tables (mini columns beside the published figures): {out / 'tables.md'}",
              flush=True)
    else:
        print(f"warning: no tables for {opts.out} (exit status {status}; its log: "
              f"{out / 'logs' / 'tables.log'})", file=sys.stderr)
    print(f"== {len(plan.steps)} commands in {clock(time.monotonic() - pool.start)}; ledger: "
          f"{out / 'ledger.json'}", flush=True)
    if bad:
        print(f"error: {len(bad)} command(s) failed or were not run:", file=sys.stderr)
        print("\n".join(f"  {name}: {o.status} ({o.detail})" for name, o in bad),
              file=sys.stderr)
        return 1
    return 0 if status == 0 else status


# --------------------------------------------------------------------------------------------
# curve: retrieval of random init and of every epoch checkpoint of one pretraining run
# --------------------------------------------------------------------------------------------

CURVE_USAGE = """\
Does pretraining pass random initialisation, and when? Nearest-neighbour retrieval of a randomly
initialised backbone and of every saved epoch checkpoint (checkpoints/epoch_NNNN.pth) of one
pretraining run, printed as one table (R@1, R@5 per checkpoint).

  bash scripts/retrieval_curve.sh RUN_DIR [--out DIR] [--dry-run] [flags for nn_retrieval.py]

Pass the data and backbone flags of the pretraining run (e.g. --preset demo --device cpu, or
--preset ucf101_r3d18 --data-root data/ucf101). Results land in --out (default RUN_DIR/curve);
finished evaluations are reused on a re-run. Save checkpoints more often with the pretraining
flag --save-every-epochs N. Example (the demo's data, 30 epochs, a checkpoint every 3):
  python train_pretrain.py --preset demo --device cpu --epochs 30 --save-every-epochs 3 --out-dir runs/curve
  bash scripts/retrieval_curve.sh runs/curve --preset demo --device cpu"""


def checkpoint_steps(path: str) -> int:
    """The optimizer steps a pretraining checkpoint was taken after.

    Raises:
        ConfigError: not a readable checkpoint of this project.
    """
    from engine.checkpoint import load_checkpoint
    from models.weights import CheckpointError
    try:
        step = load_checkpoint(path).get("step")
    except CheckpointError as exc:
        raise ConfigError(f"{path} is not a readable checkpoint of this project: {exc}") from None
    if not isinstance(step, int):
        raise ConfigError(f"{path} is not a pretraining checkpoint of this project (no 'step')")
    return step


def run_curve(opts: CurveOptions, tools: Tools, runner: Runner) -> int:
    """Retrieval of every point not evaluated yet, then one table of all of them.

    Raises:
        ConfigError: an epoch checkpoint cannot be read (checked before anything runs).
        StepFailed: a retrieval or the table failed.
    """
    points = curve_points(opts, tools)
    # every checkpoint is read before the first evaluation: a broken one stops the curve at once
    labels = ["random init" if p.checkpoint is None else
              p.name if runner.dry_run else f"{p.name} ({checkpoint_steps(p.checkpoint)} steps)"
              for p in points]
    start = time.monotonic()
    rows = []
    for point, label in zip(points, labels):
        runner.info(label)
        done, why_not = finished(point.run_dir, "retrieval",
                                 None if runner.dry_run else point.argv)
        if done:
            runner.info(f"{point.name}: reusing {point.run_dir}/results.json (same checkpoint, "
                        "protocol and split files)")
        else:
            if why_not:
                runner.info(f"{point.name}: rerunning: {why_not}")
            status = runner.run(rerun_argv(point.run_dir, point.argv))
            if status != 0:
                raise StepFailed(f"retrieval of {point.name} failed (exit status {status}); "
                                 f"{log_hint(point.run_dir)}", status)
        rows.append(f"{label}={opts.out}/{point.name}")
    runner.info(f"retrieval after each checkpoint of {opts.run_dir} "
                f"({time.monotonic() - start:.0f} s)")
    status = runner.run([tools.python, tools.entry("scripts/summarize_runs.py"), *rows])
    if status != 0:
        raise StepFailed(f"the table failed (exit status {status}); see above", status)
    return 0


def main_curve(argv: list[str]) -> int:
    opts = parse_curve_args(argv)
    return run_curve(opts, Tools.from_env(), Runner(opts.dry_run))


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

COMMANDS = {"suite": (SUITE_USAGE, main_suite),
            "reproduce": (REPRODUCE_USAGE + "\n\n" + MINI_USAGE, main_reproduce),
            "curve": (CURVE_USAGE, main_curve)}


def main(argv: list[str] | None = None) -> int:
    """``orchestrate.py COMMAND ARGS...``; returns the exit status (user mistakes raise
    ConfigError, which engine.cli.run_main turns into one line and status 2)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv[0] not in COMMANDS:
        raise ConfigError(f"unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)}")
    usage, command = COMMANDS[argv[0]]
    if "-h" in argv[1:] or "--help" in argv[1:]:
        print(usage)
        return 0
    try:
        return command(argv[1:])
    except StepFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status


if __name__ == "__main__":
    from engine.cli import run_main
    run_main(main)
