"""The mini scale of the paper runner (``scripts/reproduce_paper.sh --scale mini``): the paper's
plan, run for real on the CPU at the learning demo's sizes. Nothing here runs or creates anything;
scripts/orchestrate.py runs the steps (scripts/job_pool.py, several side by side).

What the plan holds (default sizes; docs/reproduce.md, "The mini scale"):
- the "switch" synthetic data of the learning demo in the UCF101 layout (3 splits), and a second
  draw in the HMDB51 layout for the transfer rows, each generated on first use;
- pretraining of the four loss ablations (IC only, IC + LL, IC + GL, TCLR) over seeds 0 1 2, with
  the learning demo's budget (preset ``learning``: width-8 R3D-18 at 24 px, clip 16, batch 20,
  30 epochs x 10 steps);
- on split 1, for every variant and random init (seeds 0 1 2): the learning demo's linear probe,
  a short finetuning, retrieval (Recall@1/5/10/20/50) and finetuning with 10% and 50% of the
  training labels (a seeded, stratified subset: --label-fraction);
- TCLR also on splits 2 and 3 (linear, finetune, retrieval); TCLR and random init on the
  HMDB51-layout data, split 1 (linear, finetune, retrieval);
- then scripts/make_tables.py --mini: the paper's tables with the mini figures, labelled as such,
  beside the published ones.

Sizes can be shrunk (tests) through environment variables, MINI_*: see ``MiniSizes``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from config import ConfigError

REPO = Path(__file__).resolve().parent.parent

# variant name -> loss weights (--w-ic-global --w-ic-local --w-local-local --w-global-local), as
# scripts/mini_ablation.sh names them; the paper's ablation rows
VARIANTS = {"ic_only": (1, 1, 0, 0), "ic_ll": (1, 1, 1, 0), "ic_gl": (1, 1, 0, 1),
            "tclr": (1, 1, 1, 1)}
WEIGHT_FLAGS = ("--w-ic-global", "--w-ic-local", "--w-local-local", "--w-global-local")
RANDOM = "random"
# limited labels: the share of every class's training videos kept (10% and 50%; the mini train
# split, 126 videos per class, holds both with at least 12 videos per class)
LABEL_FRACTIONS = (0.1, 0.5)
# the protocols of the full-label rows; limited labels add finetune_labels<PCT>
PROTOCOLS = ("linear", "finetune", "retrieval")
ENTRY = {"linear": "train_linear.py", "finetune": "train_finetune.py",
         "retrieval": "nn_retrieval.py"}
# the CPU demos' linear probe (presets.DEMO_LINEAR_PROBE, which learning_demo.sh passes as flags)
LINEAR_FLAGS = ["--bn-mode", "train", "--select", "last", "--val-fraction", "0",
                "--num-test-clips", "3"]
# finetuning keeps to its labels strictly (no held-out videos: --select last), 3 test clips
FINETUNE_FLAGS = ["--select", "last", "--val-fraction", "0", "--num-test-clips", "3"]
# flags the plan sets itself for each command; passing them through would contradict it
OWN_FLAGS = ("--dataset", "--data-root", "--split", "--seed", "--out-dir", "--checkpoint",
             "--epochs", "--label-fraction", "--resume", "--preset", *WEIGHT_FLAGS)
DEFAULT_OUT = "runs/reproduce_mini"
DEFAULT_UCF_ROOT = "data/synthetic_switch"          # the learning demo's data (preset learning)
DEFAULT_HMDB_ROOT = "data/synthetic_switch_hmdb51"


@dataclass(frozen=True)
class MiniSizes:
    """The mini plan's sizes; each is read from the environment variable of its ``env`` name."""

    seeds: tuple[int, ...] = (0, 1, 2)   # MINI_SEEDS: pretraining and evaluation seeds
    pretrain_epochs: int = 30            # MINI_PRETRAIN_EPOCHS (the learning demo's)
    steps_per_epoch: int = 10            # MINI_STEPS_PER_EPOCH
    batch: int = 20                      # MINI_BATCH: pretraining batch (videos)
    linear_epochs: int = 10              # MINI_LINEAR_EPOCHS (the learning demo's)
    finetune_epochs: int = 3             # MINI_FINETUNE_EPOCHS: short, so the plan fits ~2 h
    eval_clips: int = 3                  # MINI_EVAL_CLIPS: retrieval clips per video
    videos_per_class: int = 180          # MINI_VIDEOS_PER_CLASS: UCF101-layout data (6 classes)
    hmdb_videos_per_class: int = 100     # MINI_HMDB_VIDEOS_PER_CLASS: HMDB51-layout data

    @staticmethod
    def env_name(name: str) -> str:
        return "MINI_" + name.upper()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> MiniSizes:
        """The defaults, with every MINI_* variable set in ``env`` taking its field's place.

        Raises:
            ConfigError: a value that is not a positive integer (seeds: non-negative integers).
        """
        values: dict = {}
        for f in fields(cls):
            text = env.get(cls.env_name(f.name))
            if text is None:
                continue
            words = text.split()
            ok = bool(words) and all(w.isdigit() for w in words)
            if f.name != "seeds":
                ok = ok and len(words) == 1 and int(words[0]) >= 1
            if not ok:
                kind = ("non-negative integers" if f.name == "seeds" else "a positive integer")
                raise ConfigError(f"{cls.env_name(f.name)}={text!r}: expected {kind}")
            values[f.name] = (tuple(int(w) for w in words) if f.name == "seeds"
                              else int(words[0]))
        return cls(**values)


@dataclass
class MiniOptions:
    """The mini runner's command line, checked (see orchestrate.MINI_USAGE)."""

    out: str = DEFAULT_OUT
    ucf_root: str = DEFAULT_UCF_ROOT
    hmdb_root: str = DEFAULT_HMDB_ROOT
    jobs: int = 2
    dry_run: bool = False
    extra: list[str] = field(default_factory=list)   # flags for every entry point
    sizes: MiniSizes = field(default_factory=MiniSizes)


@dataclass(frozen=True)
class Step:
    """One command of the mini plan.

    ``needs``: the steps that must have succeeded before this one starts (a failed one skips it).
    ``run_dir``: an evaluation's run folder (its results.json decides whether it already ran);
    None for data generation and pretraining, which skip finished work themselves.
    ``minutes``: the estimated process-minutes at the default sizes on one idle core (the ETA's
    weights; docs/reproduce.md gives the arithmetic).
    """

    name: str
    kind: str            # "data", "pretrain", "linear", "finetune", "retrieval"
    argv: list[str]
    run_dir: str | None = None
    needs: tuple[str, ...] = ()
    minutes: float = 1.0


@dataclass
class MiniPlan:
    steps: list[Step]
    tables: list[str]


def parse_positive(option: str, text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{option} must be a positive integer, got '{text}'")
    return int(text)


def parse_mini_args(argv: list[str], env: Mapping[str, str] = os.environ) -> MiniOptions:
    """``reproduce --scale mini``'s options (the --scale words already removed).

    Raises:
        ConfigError: an option of the full scale that the mini plan fixes, a flag the plan sets
            itself, a bad --jobs or MINI_* value.
    """
    from orchestrate_plans import dry_run_default, walk_options
    own, extra = walk_options(argv, ("--out", "--ucf-root", "--hmdb-root", "--jobs"),
                              ("--dry-run",))
    full_only = ("--preset", "--pretrain-root", "--gpus", "--checkpoint-name", "--skip-pretrain",
                 "--baseline", "--splits", "--seeds", "--protocols", "--eval-args")
    for word in extra:
        name = word.split("=")[0]
        if name in full_only:
            raise ConfigError(f"{name} belongs to --scale full; the mini plan fixes it (sizes: "
                              "the MINI_* variables, see --help)")
        if name in OWN_FLAGS:
            raise ConfigError(f"{name} is set by the mini plan for each command; see --help")
    return MiniOptions(
        out=own.get("--out") or DEFAULT_OUT, ucf_root=own.get("--ucf-root") or DEFAULT_UCF_ROOT,
        hmdb_root=own.get("--hmdb-root") or DEFAULT_HMDB_ROOT,
        jobs=parse_positive("--jobs", own.get("--jobs", "2")),
        dry_run="--dry-run" in own or dry_run_default(env), extra=extra,
        sizes=MiniSizes.from_env(env))


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------

# Estimated process-minutes at the default sizes on one idle core (docs/reproduce.md, "The mini
# scale"): a process start, one clip decoded and passed forward, one clip trained (forward and
# backward), one 300-step pretraining of batch 20. The evaluation figures fit the learning demo's
# measured evaluations; the pretraining's is the slower of this project's two 2-core machines (the
# quick start's TCLR pretraining alone, 14.3 min with the monitor on, 2026-12-07; two side by
# side took 16.7 min each): 6.15 on the faster one.
START_MIN = 0.15
CLIP_MIN = 0.000115
TRAIN_CLIP_MIN = 0.0001
PRETRAIN_MIN = 14.0


def split_sizes(videos_per_class: int, layout: str) -> tuple[int, int]:
    """(train, test) videos per class of split 1 of the synthetic data (for the estimates)."""
    from dataloaders.synthetic.layout import HMDB_TEST_FRACTION, _test_band, group_layout
    if layout == "hmdb51":
        used = videos_per_class - videos_per_class // 10
        test = max(1, round(HMDB_TEST_FRACTION * used))
        return used - test, test
    groups = group_layout(videos_per_class)
    test = sum(groups[:_test_band(len(groups))])
    return videos_per_class - test, test


def estimate_minutes(kind: str, sizes: MiniSizes, layout: str, fraction: float = 1.0) -> float:
    """Estimated process-minutes of one step (6 classes; see the constants above)."""
    train, test = (6 * n for n in split_sizes(
        sizes.videos_per_class if layout == "ucf101" else sizes.hmdb_videos_per_class, layout))
    if kind == "pretrain":
        return PRETRAIN_MIN * sizes.pretrain_epochs * sizes.steps_per_epoch * sizes.batch / 6000
    if kind == "retrieval":
        return START_MIN + CLIP_MIN * (train + test) * sizes.eval_clips
    if kind == "linear":
        return START_MIN + CLIP_MIN * (sizes.linear_epochs * train + 3 * test)
    if kind == "finetune":
        seen = sizes.finetune_epochs * round(fraction * train)
        return START_MIN + (CLIP_MIN + TRAIN_CLIP_MIN) * seen + CLIP_MIN * 3 * test
    # data: about a minute per 1000 videos with one worker
    per_class = sizes.videos_per_class if layout == "ucf101" else sizes.hmdb_videos_per_class
    return START_MIN + 6 * per_class / 1000


def protocol_dir(protocol: str, fraction: float = 1.0) -> str:
    """linear, finetune, retrieval; finetune_labels10 for 10% of the labels."""
    return protocol if fraction == 1.0 else f"{protocol}_labels{round(100 * fraction)}"


def pretrain_dir(out: str, variant: str, seed: int) -> str:
    return f"{out}/pretrain/{variant}_seed{seed}"


def eval_dir(out: str, init: str, seed: int, data: str, protocol: str, split: int) -> str:
    """OUT/eval/INIT/seedS/DATA/PROTOCOL/splitK: make_tables.py --mini reads INIT from it."""
    return f"{out}/eval/{init}/seed{seed}/{data}/{protocol}/split{split}"


def module_argv(tools, module: str) -> list[str]:
    """``python -m MODULE`` of this repository, from any folder (scripts/_lib.sh's
    set_pymodule): outside the repository its root goes on PYTHONPATH."""
    if tools.cwd.resolve() == REPO:
        return [tools.python, "-m", module]
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return ["env", f"PYTHONPATH={path}", tools.python, "-m", module]


def mini_plan(opts: MiniOptions, tools) -> MiniPlan:
    """Every command of the mini plan, in the order they are started when their needs allow.

    Pretrainings come first (the longest; the evaluations of finished ones and random init's fill
    the other slots), then random init's evaluations, then those of each pretrained backbone.
    """
    s, py = opts.sizes, tools.python
    common = ["--preset", "learning", "--device", "cpu", "--progress", "false", *opts.extra]
    data_flags = {
        "ucf101": ["--dataset", "synthetic", "--data-root", opts.ucf_root, "--synthetic-design",
                   "switch", "--synthetic-videos-per-class", str(s.videos_per_class)],
        "hmdb51": ["--dataset", "hmdb51", "--data-root", opts.hmdb_root]}
    gen = [*module_argv(tools, "dataloaders.synthetic"), "--design", "switch", "--classes", "6", "--frames", "96",
           "--width", "64", "--height", "48", "--seed", "0", "--workers", "1", "--quiet"]
    steps = [
        Step("data-ucf101", "data", [*gen, "--out", opts.ucf_root, "--videos-per-class",
                                     str(s.videos_per_class)],
             minutes=estimate_minutes("data", s, "ucf101")),
        Step("data-hmdb51", "data", [*gen, "--out", opts.hmdb_root, "--videos-per-class",
                                     str(s.hmdb_videos_per_class), "--layout", "hmdb51"],
             minutes=estimate_minutes("data", s, "hmdb51"))]
    for seed in s.seeds:
        for variant, weights in VARIANTS.items():
            flags = [w for pair in zip(WEIGHT_FLAGS, map(str, weights)) for w in pair]
            steps.append(Step(
                f"{variant}-seed{seed}-pretrain", "pretrain",
                [py, tools.entry("train_pretrain.py"), *common, *data_flags["ucf101"], "--split",
                 "1", "--seed", str(seed), "--epochs", str(s.pretrain_epochs),
                 "--max-steps-per-epoch", str(s.steps_per_epoch), "--batch-size", str(s.batch),
                 "--monitor-every", "0", *flags, "--out-dir", pretrain_dir(opts.out, variant, seed),
                 "--resume", "auto"],
                needs=("data-ucf101",), minutes=estimate_minutes("pretrain", s, "ucf101")))

    def evaluations(init: str, seed: int) -> list[Step]:
        if init == RANDOM:
            init_flags, needs = [], ()
        else:
            ckpt = f"{pretrain_dir(opts.out, init, seed)}/checkpoints/latest.pth"
            init_flags, needs = ["--checkpoint", ckpt], (f"{init}-seed{seed}-pretrain",)
        runs = [("ucf101", 1, p, 1.0) for p in PROTOCOLS]
        runs += [("ucf101", 1, "finetune", f) for f in LABEL_FRACTIONS]
        if init == "tclr":      # random init on splits 2-3 is cut to fit ~2 h (docs)
            runs += [("ucf101", k, p, 1.0) for k in (2, 3) for p in PROTOCOLS]
        if init in (RANDOM, "tclr"):
            runs += [("hmdb51", 1, p, 1.0) for p in PROTOCOLS]
        out = []
        for data, split, protocol, fraction in runs:
            folder = protocol_dir(protocol, fraction)
            run_dir = eval_dir(opts.out, init, seed, data, folder, split)
            argv = [py, tools.entry(ENTRY[protocol]), *common, *data_flags[data], "--split",
                    str(split), "--seed", str(seed), *init_flags]
            if protocol == "linear":
                argv += ["--epochs", str(s.linear_epochs), *LINEAR_FLAGS]
            elif protocol == "finetune":
                argv += ["--epochs", str(s.finetune_epochs), *FINETUNE_FLAGS]
                if fraction < 1.0:
                    argv += ["--label-fraction", f"{fraction:g}"]
            else:
                argv += ["--num-clips", str(s.eval_clips)]
            argv += ["--out-dir", run_dir]
            out.append(Step(f"{init}-seed{seed}-{data}-{folder}-split{split}", protocol, argv,
                            run_dir, (f"data-{data}", *needs),
                            estimate_minutes(protocol, s, data, fraction)))
        return out

    for seed in s.seeds:
        steps += evaluations(RANDOM, seed)
    for seed in s.seeds:
        for variant in VARIANTS:
            steps += evaluations(variant, seed)
    tables = [py, tools.entry("scripts/make_tables.py"), "--mini", f"{opts.out}/eval", "--out",
              f"{opts.out}/tables.md"]
    return MiniPlan(steps, tables)


def estimated_wall_minutes(plan: MiniPlan, jobs: int) -> float:
    """The plan's estimated wall time with ``jobs`` commands side by side (perfect packing, no
    step longer than the rest together: the sum of the estimates divided by the slots)."""
    total = sum(step.minutes for step in plan.steps)
    longest = max((step.minutes for step in plan.steps), default=0.0)
    return max(total / jobs, longest)
