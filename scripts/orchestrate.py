#!/usr/bin/env python
"""The run matrices of the workflow scripts: which entry-point commands run, in what order, which
are skipped because they already finished, and what a failure leaves in the ledger.

    python scripts/orchestrate.py suite DATASET CHECKPOINT|random [options]   # eval_suite.sh
    python scripts/orchestrate.py reproduce [options]                         # reproduce_paper.sh
    python scripts/orchestrate.py curve RUN_DIR [options]                     # retrieval_curve.sh

Each command builds its plan as argv lists first (``suite_runs``, ``reproduce_plan``,
``curve_points``: the functions the tests call), checks every input, then runs the commands one
after the other, or with --dry-run prints them (``+ CMD``, as a shell reads them back) and runs and
creates nothing. The .sh names are thin wrappers, so the README's commands stay as they were.

Environment: PYTHON, the interpreter the commands name (default ``python``); TORCHRUN (default
``torchrun``); TCLR_GPUS, the default of --gpus; DRY_RUN=1 is --dry-run. Progress lines start with
``==``, commands with ``+``. A user mistake ends as one ``error: ...`` line with exit status 2; a
failed run ends the suite with status 1 (naming the run and its log), another failed step with
the step's own status; Ctrl-C lets the running job end as it does on its own and stops the plan
(status 130). Run folders with a complete results.json count as finished.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from config import ConfigError  # noqa: E402
from engine.errors import JobInterrupted  # noqa: E402

PROTOCOLS = ("linear", "finetune", "retrieval")
ENTRY_POINTS = {"linear": "train_linear.py", "finetune": "train_finetune.py",
                "retrieval": "nn_retrieval.py"}
# The metric a finished run's results.json holds (engine.classify / engine.retrieval write them).
METRIC = {"linear": "top1", "finetune": "top1", "retrieval": "recall@1"}
# Flags the suite sets itself for every run; passing them through would contradict its options.
SUITE_OWN_FLAGS = ("--dataset", "--split", "--seed", "--out-dir", "--checkpoint")


# --------------------------------------------------------------------------------------------
# Shared pieces: the interpreter and launcher, option walking, running and printing
# --------------------------------------------------------------------------------------------

class StepFailed(Exception):
    """A command of the plan ended with a non-zero status (``status`` is what this script exits
    with); the message names the step and where its log is."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Tools:
    """How the commands start: the interpreter, the torchrun launcher, and the folder they run
    from (repository files are named relative to it when it is the repository, else absolute)."""

    python: str = "python"
    torchrun: str = "torchrun"
    cwd: Path = REPO

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Tools:
        return cls(env.get("PYTHON") or "python", env.get("TORCHRUN") or "torchrun", Path.cwd())

    def entry(self, name: str) -> str:
        """A repository file (``train_linear.py``, ``scripts/make_tables.py``) as a command names it."""
        return name if self.cwd.resolve() == REPO else str(REPO / name)

    def launcher(self, gpus: int) -> list[str]:
        """The prefix that starts a training script on ``gpus`` processes of this machine."""
        if gpus > 1:
            return [self.torchrun, "--standalone", "--nproc_per_node", str(gpus)]
        return [self.python]


def parse_gpus(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"--gpus must be a positive integer, got '{text}'")
    return int(text)


def dry_run_default(env: Mapping[str, str] = os.environ) -> bool:
    return env.get("DRY_RUN", "0") == "1"


def walk_options(argv: list[str], values: tuple[str, ...], switches: tuple[str, ...],
                 dashdash_ends: bool = False) -> tuple[dict[str, str | bool], list[str]]:
    """Split ``argv`` into this script's own options and the words it passes on, in order.

    Args:
        argv: the words after the positional arguments.
        values: options that take the next word as their value (a later one wins).
        switches: options without a value.
        dashdash_ends: ``--`` passes every later word on (the suite), instead of being passed on.
    Returns:
        (own, rest): own maps an option to its value (True for a switch); rest keeps the order.
    Raises:
        ConfigError: an option that takes a value is the last word.
    """
    own: dict[str, str | bool] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in values:
            if i + 1 == len(argv):
                raise ConfigError(f"option {word} needs a value")
            own[word] = argv[i + 1]
            i += 2
            continue
        if word in switches:
            own[word] = True
        elif word == "--" and dashdash_ends:
            rest += argv[i + 1:]
            break
        else:
            rest.append(word)
        i += 1
    return own, rest


def finished(run_dir: str, job: str) -> tuple[bool, str]:
    """Whether ``run_dir`` holds the complete results.json of a ``job`` run.

    Returns:
        (done, why_not): why_not is empty when there is no results.json at all, else it says what
        is wrong with the one there (unreadable, another job's, no metric): such a run reruns.
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
    return True, ""


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


def tables_argv(out: str, tools: Tools) -> list[str]:
    """scripts/make_tables.py over a results folder, into ``out``/tables.md."""
    return [tools.python, tools.entry("scripts/make_tables.py"), out, "--out", f"{out}/tables.md"]


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
  --splits "1 2 3"     splits to run (default: all three)
  --seeds "0"          seeds of the linear/finetune runs (several give mean ± std); retrieval of
                       a checkpoint runs once per split (its features do not depend on the seed)
  --protocols "linear finetune retrieval"   which protocols (default: all three)
  --out DIR            results folder (default: runs/eval_<dataset>_<checkpoint file stem>);
                       runs go to DIR/<protocol>/split<S>_seed<N>/, the tables to DIR/tables.md
  --gpus N             processes per run: torchrun --standalone when N > 1 (default:
                       $TCLR_GPUS, else 1)
  --linear-args "..." / --finetune-args "..." / --retrieval-args "..."   flags for one protocol
  --force              rerun runs that already have a complete results.json (default: skip them)
  --keep-going         after a failed run, go on with the others (exit status 1 at the end)
  --dry-run            print the commands; run and create nothing
Any other flag (and everything after --) goes to every entry point, e.g. --data-root DIR,
--device cuda:1, --num-workers 16, --trust-checkpoint true, --preset NAME, --batch-size 16."""


@dataclass
class SuiteOptions:
    """One evaluation suite, validated (see SUITE_USAGE)."""

    dataset: str
    checkpoint: str                      # a file, or "random"
    out: str
    splits: list[int] = field(default_factory=lambda: [1, 2, 3])
    seeds: list[int] = field(default_factory=lambda: [0])
    protocols: list[str] = field(default_factory=lambda: list(PROTOCOLS))
    gpus: int = 1
    protocol_args: dict[str, list[str]] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)   # flags for every entry point
    force: bool = False
    keep_going: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class EvalRun:
    """One entry-point run of a suite."""

    protocol: str
    split: int
    seed: int
    run_dir: str
    argv: list[str]


def _words(option: str, text: str, allowed, expected: str) -> list[str]:
    """The words of a list option such as --splits "1 2", each checked with ``allowed``."""
    words = text.split()
    for word in words:
        if not allowed(word):
            raise ConfigError(f"{option}: '{word}' is not {expected}")
    return words


def parse_suite_args(argv: list[str], env: Mapping[str, str] = os.environ) -> SuiteOptions:
    """The suite's command line (DATASET CHECKPOINT [options]) as checked options.

    Raises:
        ConfigError: a missing argument, a bad value, or a flag the suite sets itself.
    """
    if not argv:
        raise ConfigError("usage: scripts/eval_suite.sh DATASET CHECKPOINT|random [options] "
                          "(see --help)")
    if len(argv) == 1:
        raise ConfigError(f"usage: scripts/eval_{argv[0]}.sh CHECKPOINT|random [options] "
                          "(see --help)")
    dataset, checkpoint = argv[:2]
    if checkpoint.startswith("-"):
        raise ConfigError("the first argument must be the CHECKPOINT (a file, or 'random'), got "
                          f"{checkpoint}")
    values = ("--splits", "--seeds", "--protocols", "--out", "--gpus", "--linear-args",
              "--finetune-args", "--retrieval-args")
    own, extra = walk_options(argv[2:], values, ("--force", "--keep-going", "--dry-run"),
                              dashdash_ends=True)
    for word in extra:
        if word.split("=")[0] in SUITE_OWN_FLAGS:
            raise ConfigError(f"{word} is set by this script; use --splits, --seeds, --out or "
                              "CHECKPOINT")
    splits = _words("--splits", own.get("--splits", "1 2 3"), lambda w: w in ("1", "2", "3"),
                    "1, 2 or 3")
    seeds = _words("--seeds", own.get("--seeds", "0"), str.isdigit, "a non-negative integer")
    protocols = _words("--protocols", own.get("--protocols", " ".join(PROTOCOLS)),
                       lambda w: w in PROTOCOLS, "linear, finetune or retrieval")
    if not (splits and seeds and protocols):
        raise ConfigError("--splits, --seeds, --protocols: empty")
    gpus = parse_gpus(own.get("--gpus", env.get("TCLR_GPUS") or "1"))
    stem = Path(checkpoint).name.split(".")[0]
    return SuiteOptions(
        dataset=dataset, checkpoint=checkpoint, out=own.get("--out") or f"runs/eval_{dataset}_{stem}",
        splits=[int(s) for s in splits], seeds=[int(s) for s in seeds], protocols=protocols,
        gpus=gpus, extra=extra, force="--force" in own, keep_going="--keep-going" in own,
        dry_run="--dry-run" in own or dry_run_default(env),
        protocol_args={p: shlex.split(own.get(f"--{p}-args", "")) for p in PROTOCOLS})


def seeds_of(opts: SuiteOptions, protocol: str) -> list[int]:
    """The seeds a protocol runs with: retrieval of a checkpoint has no randomness, so one."""
    if protocol == "retrieval" and opts.checkpoint != "random":
        return opts.seeds[:1]
    return opts.seeds


def suite_runs(opts: SuiteOptions, tools: Tools) -> list[EvalRun]:
    """Every run of the suite, split by split, in the order they run."""
    launch = tools.launcher(opts.gpus)
    init = [] if opts.checkpoint == "random" else ["--checkpoint", opts.checkpoint]
    runs = []
    for split in opts.splits:
        for protocol in opts.protocols:
            for seed in seeds_of(opts, protocol):
                run_dir = f"{opts.out}/{protocol}/split{split}_seed{seed}"
                argv = [*launch, tools.entry(ENTRY_POINTS[protocol]), "--dataset", opts.dataset,
                        "--split", str(split), "--seed", str(seed), "--out-dir", run_dir, *init,
                        *opts.extra, *opts.protocol_args.get(protocol, [])]
                runs.append(EvalRun(protocol, split, seed, run_dir, argv))
    return runs


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
    failed = []
    for number, run in enumerate(runs, 1):
        runner.info(f"[{number}/{len(runs)}] {run.protocol}, {opts.dataset} split {run.split}, "
                    f"seed {run.seed} -> {run.run_dir}")
        if not opts.force:
            done, why_not = finished(run.run_dir, run.protocol)
            if done:
                runner.info(f"skipped: {run.run_dir}/results.json exists (--force reruns it)")
                continue
            if why_not:
                runner.info(f"rerunning: {why_not}")
        if runner.run(run.argv) != 0:
            failed.append(f"{run.protocol} split {run.split} seed {run.seed} "
                          f"({run.run_dir}/log.txt)")
            if not opts.keep_going:
                raise StepFailed(f"{run.protocol} on {opts.dataset} split {run.split} (seed "
                                 f"{run.seed}) failed; see above and {run.run_dir}/log.txt. Rerun "
                                 "this script to continue (finished runs are skipped)", 1)
    if runner.run(tables_argv(opts.out, tools)) != 0:
        print(f"warning: no tables for {opts.out} (see above)", file=sys.stderr)
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
Any other flag goes to train_pretrain.py (e.g. --epochs 200 --num-workers 16)."""


@dataclass
class ReproduceOptions:
    """The paper runner's options, validated (see REPRODUCE_USAGE)."""

    preset: str = "ucf101_r3d18"
    ucf_root: str = "data/ucf101"
    hmdb_root: str = "data/hmdb51"
    pretrain_root: str = "data/ucf101"
    out: str = "runs/reproduce_ucf101_r3d18"
    gpus: int = 1
    checkpoint_name: str = "best.pth"
    skip_pretrain: bool = False
    baseline: bool = False
    suite_opts: list[str] = field(default_factory=list)   # --splits/--seeds/--protocols VALUE
    eval_args: list[str] = field(default_factory=list)
    pretrain_extra: list[str] = field(default_factory=list)
    dry_run: bool = False


@dataclass
class ReproducePlan:
    """What reproduce runs: pretraining (None with --skip-pretrain), the suites, the tables."""

    pretrain: list[str] | None
    checkpoint: str
    suites: list[SuiteOptions]
    tables: list[str]


def parse_reproduce_args(argv: list[str], env: Mapping[str, str] = os.environ) -> ReproduceOptions:
    """reproduce's command line as checked options; unknown words go to train_pretrain.py.

    Raises:
        ConfigError: a flag that reproduce sets itself, or a bad --gpus.
    """
    suite = ("--splits", "--seeds", "--protocols")
    values = ("--preset", "--ucf-root", "--hmdb-root", "--pretrain-root", "--out", "--gpus",
              "--checkpoint-name", "--eval-args", *suite)
    own, extra = walk_options(argv, values, ("--skip-pretrain", "--baseline", "--dry-run"))
    for word in extra:
        if word in ("--data-root", "--out-dir", "--split") or word.startswith("--preset="):
            raise ConfigError(f"{word}: use --pretrain-root/--ucf-root, --out, --preset NAME "
                              "(split 1 is fixed)")
    preset = own.get("--preset", "ucf101_r3d18")
    ucf_root = own.get("--ucf-root", "data/ucf101")
    return ReproduceOptions(
        preset=preset, ucf_root=ucf_root, hmdb_root=own.get("--hmdb-root", "data/hmdb51"),
        pretrain_root=own.get("--pretrain-root") or ucf_root,
        out=own.get("--out") or f"runs/reproduce_{preset}",
        gpus=parse_gpus(own.get("--gpus", env.get("TCLR_GPUS") or "1")),
        checkpoint_name=own.get("--checkpoint-name", "best.pth"),
        skip_pretrain="--skip-pretrain" in own, baseline="--baseline" in own,
        suite_opts=[w for name in suite if name in own for w in (name, own[name])],
        eval_args=shlex.split(own.get("--eval-args", "")), pretrain_extra=extra,
        dry_run="--dry-run" in own or dry_run_default(env))


def model_flags(preset: str) -> list[str]:
    """The preset's model settings as evaluation flags (backbone, width, resolution, colour).

    Raises:
        ConfigError: an unknown preset.
    """
    import config
    cfg = config.PretrainConfig()
    try:
        config.apply_preset(cfg, preset)
    except ConfigError as exc:
        raise ConfigError(f"--preset: {exc}") from None
    return ["--backbone", cfg.backbone, "--width", str(cfg.width),
            "--resolution", str(cfg.data.resolution), "--color", cfg.data.color]


def reproduce_plan(opts: ReproduceOptions, tools: Tools) -> ReproducePlan:
    """Every command of the paper runner; the suites are parsed (and so checked) here, before
    pretraining starts."""
    pretrain = None
    if not opts.skip_pretrain:
        pretrain = [*tools.launcher(opts.gpus), tools.entry("train_pretrain.py"), "--preset",
                    opts.preset, "--data-root", opts.pretrain_root, "--split", "1", "--out-dir",
                    f"{opts.out}/pretrain", "--resume", "auto", *opts.pretrain_extra]
    checkpoint = f"{opts.out}/pretrain/checkpoints/{opts.checkpoint_name}"
    flags = model_flags(opts.preset) + opts.eval_args
    inits = [(checkpoint, "")] + ([("random", "_random")] if opts.baseline else [])
    suites = []
    for init, suffix in inits:
        for dataset, root in (("ucf101", opts.ucf_root), ("hmdb51", opts.hmdb_root)):
            suites.append(parse_suite_args(
                [dataset, init, "--out", f"{opts.out}/eval_{dataset}{suffix}", "--gpus",
                 str(opts.gpus), *opts.suite_opts, *(["--dry-run"] if opts.dry_run else []),
                 "--", "--data-root", root, *flags]))
    return ReproducePlan(pretrain, checkpoint, suites, tables_argv(opts.out, tools))


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
            raise StepFailed(f"pretraining failed (exit status {status}); see above and "
                             f"{opts.out}/pretrain/log.txt. Rerun this script to continue it "
                             "(--resume auto)", status)
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


def main_reproduce(argv: list[str]) -> int:
    opts = parse_reproduce_args(argv)
    return run_reproduce(opts, Tools.from_env(), Runner(opts.dry_run))


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


@dataclass
class CurveOptions:
    """The retrieval curve's options (see CURVE_USAGE)."""

    run_dir: str
    out: str
    extra: list[str] = field(default_factory=list)   # flags for nn_retrieval.py
    dry_run: bool = False


@dataclass(frozen=True)
class CurvePoint:
    """One retrieval of the curve: random init (checkpoint None) or one epoch checkpoint."""

    name: str
    checkpoint: str | None
    run_dir: str
    argv: list[str]


def parse_curve_args(argv: list[str], env: Mapping[str, str] = os.environ) -> CurveOptions:
    """RUN_DIR (the first word not starting with -) and --out; the rest goes to nn_retrieval.py.

    Raises:
        ConfigError: no RUN_DIR.
    """
    own, rest = walk_options(argv, ("--out",), ("--dry-run",))
    run_dir = next((w for w in rest if not w.startswith("-")), "")
    if not run_dir:
        raise ConfigError("name the pretraining run folder: bash scripts/retrieval_curve.sh "
                          "RUN_DIR [flags]")
    rest.remove(run_dir)
    return CurveOptions(run_dir=run_dir, out=own.get("--out") or f"{run_dir}/curve", extra=rest,
                        dry_run="--dry-run" in own or dry_run_default(env))


def curve_points(opts: CurveOptions, tools: Tools) -> list[CurvePoint]:
    """Random init, then every checkpoints/epoch_*.pth of the run in epoch order.

    Raises:
        ConfigError: the run has no epoch checkpoints.
    """
    checkpoints = sorted(str(p) for p in Path(opts.run_dir).glob("checkpoints/epoch_*.pth"))
    if not checkpoints:
        raise ConfigError(f"no {opts.run_dir}/checkpoints/epoch_*.pth: pretrain with "
                          f"--save-every-epochs N (and --out-dir {opts.run_dir}) first")
    points = []
    for checkpoint in [None, *checkpoints]:
        name = "random" if checkpoint is None else Path(checkpoint).stem
        init = [] if checkpoint is None else ["--checkpoint", checkpoint]
        run_dir = f"{opts.out}/{name}/retrieval"
        argv = [tools.python, tools.entry("nn_retrieval.py"), *opts.extra, *init,
                "--num-grid-queries", "0", "--out-dir", run_dir]
        points.append(CurvePoint(name, checkpoint, run_dir, argv))
    return points


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
        if finished(point.run_dir, "retrieval")[0]:
            runner.info(f"{point.name}: reusing {point.run_dir}/results.json")
        else:
            status = runner.run(point.argv)
            if status != 0:
                raise StepFailed(f"retrieval of {point.name} failed (exit status {status}); see "
                                 f"above and {point.run_dir}/log.txt", status)
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

COMMANDS = {"suite": (SUITE_USAGE, main_suite), "reproduce": (REPRODUCE_USAGE, main_reproduce),
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
