"""The plans of scripts/orchestrate.py: its command lines as checked options, and the entry-point
commands each one runs, as argv lists, in order. Nothing here runs or creates anything.

``suite_runs``, ``reproduce_plan`` and ``curve_points`` are what the tests call; orchestrate.py
runs (or prints) what they return, skips finished runs and keeps the ledger. The options are
described in orchestrate.py's SUITE_USAGE, REPRODUCE_USAGE and CURVE_USAGE (each command's --help).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from config import ConfigError  # noqa: E402

PROTOCOLS = ("linear", "finetune", "retrieval")
ENTRY_POINTS = {"linear": "train_linear.py", "finetune": "train_finetune.py",
                "retrieval": "nn_retrieval.py"}
# Flags the suite sets itself for every run; passing them through would contradict its options.
SUITE_OWN_FLAGS = ("--dataset", "--split", "--seed", "--out-dir", "--checkpoint")


# --------------------------------------------------------------------------------------------
# Shared pieces: the interpreter and launcher, option walking
# --------------------------------------------------------------------------------------------

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
        values: options that take a value, as the next word or after '=' (``--out DIR`` or
            ``--out=DIR``; a later one wins).
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
        name, eq, value = word.partition("=")
        if eq and name in values:
            own[name] = value
            i += 1
            continue
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


def planned_provenance(protocol: str, argv: list[str]) -> dict:
    """The provenance (engine.rundir.provenance) the run of ``argv`` would write into its
    results.json: its flags are parsed as the entry point parses them.

    Raises:
        ConfigError: the flags are not a valid configuration of ``protocol``.
    """
    import config
    from engine.rundir import provenance
    script = ENTRY_POINTS[protocol]
    start = next(i for i, word in enumerate(argv) if word.endswith(script)) + 1
    cfg, _ = config.parse_config(protocol, argv[start:], world_size=1)
    return provenance(cfg)


def tables_argv(out: str, tools: Tools) -> list[str]:
    """scripts/make_tables.py over a results folder, into ``out``/tables.md."""
    return [tools.python, tools.entry("scripts/make_tables.py"), out, "--out", f"{out}/tables.md"]


# --------------------------------------------------------------------------------------------
# suite: linear probe, finetuning and retrieval of one checkpoint over the splits
# --------------------------------------------------------------------------------------------

@dataclass
class SuiteOptions:
    """One evaluation suite, validated (see orchestrate.SUITE_USAGE)."""

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
    return SuiteOptions(
        dataset=dataset, checkpoint=checkpoint,
        out=own.get("--out") or f"runs/eval_{dataset}_{checkpoint_name(checkpoint)}",
        splits=[int(s) for s in splits], seeds=[int(s) for s in seeds], protocols=protocols,
        gpus=gpus, extra=extra, force="--force" in own, keep_going="--keep-going" in own,
        dry_run="--dry-run" in own or dry_run_default(env),
        protocol_args={p: shlex.split(own.get(f"--{p}-args", "")) for p in PROTOCOLS})


@dataclass(frozen=True)
class TrainedOn:
    """The data a checkpoint of this project was trained on (its config.yaml's data section)."""

    dataset: str
    split: int
    kind: str            # "pretrain" (no labels seen) or "classifier" (linear / finetune)


def split_note(opts: SuiteOptions, trained_on: TrainedOn | None) -> str:
    """A note when the suite tests videos the checkpoint has already seen, or may have seen.

    The train list of one official split holds test videos of the others (UCF101: split s tests
    groups 7s-6..7s of 25, so split 1's train list holds every test video of splits 2 and 3). A
    backbone pretrained on split P's train list has therefore seen the test videos of the other
    splits, without their labels. Returns "" when nothing needs saying.

    Args:
        trained_on: what the checkpoint records; None when it records nothing (the release's and
            torchvision's files), could not be read, or does not exist yet (a dry run).
    """
    if opts.checkpoint == "random":
        return ""
    if trained_on is None:
        others = [s for s in opts.splits if s != 1]
        if opts.dataset != "ucf101" or not others:
            return ""
        return (f"the data {opts.checkpoint} was pretrained on is not known here (it records "
                "none, or is not written yet). If that was UCF101 split 1's train list (what the "
                f"release's pretraining code reads), the test videos of {_splits(others)} were "
                "among its pretraining videos (without labels). See docs/reproduce.md, "
                "'Evaluation across splits'.")
    others = [s for s in opts.splits if s != trained_on.split]
    if trained_on.dataset != opts.dataset or not others:
        return ""
    how = ("trained with labels" if trained_on.kind == "classifier" else
           "pretrained (without labels)")
    return (f"{opts.checkpoint} was {how} on {opts.dataset} split {trained_on.split}'s train "
            f"list, which holds test videos of {_splits(others)}: on "
            f"{'that split' if len(others) == 1 else 'those splits'} the backbone is tested on "
            f"videos it has seen. Only split {trained_on.split} is free of this. See "
            "docs/reproduce.md, 'Evaluation across splits'.")


def _splits(numbers: list[int]) -> str:
    """'split 2', 'splits 2 and 3'."""
    words = [str(n) for n in numbers]
    if len(words) == 1:
        return f"split {words[0]}"
    return f"splits {', '.join(words[:-1])} and {words[-1]}"
def checkpoint_name(checkpoint: str) -> str:
    """The default results folder's name for a checkpoint: its run folder's name, its file stem
    and the first 8 hex digits of its sha256 (``tclr-best-1a2b3c4d``), so the best.pth of two
    runs, or of one run before and after more training, never share a folder; "random" for
    random initialisation. A file that does not exist (a dry run) goes without the digest."""
    if checkpoint == "random":
        return "random"
    from engine.rundir import checkpoint_run_dir, file_sha256
    path = Path(checkpoint)
    name = f"{checkpoint_run_dir(path).name}-{path.name.split('.')[0]}"
    return f"{name}-{file_sha256(path)[:8]}" if path.is_file() else name


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


# --------------------------------------------------------------------------------------------
# reproduce: pretraining, then both evaluation suites and the tables
# --------------------------------------------------------------------------------------------

@dataclass
class ReproduceOptions:
    """The paper runner's options, validated (see orchestrate.REPRODUCE_USAGE)."""

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
        if word.split("=")[0] in ("--data-root", "--out-dir", "--split"):
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


# --------------------------------------------------------------------------------------------
# curve: retrieval of random init and of every epoch checkpoint of one pretraining run
# --------------------------------------------------------------------------------------------

@dataclass
class CurveOptions:
    """The retrieval curve's options (see orchestrate.CURVE_USAGE)."""

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
