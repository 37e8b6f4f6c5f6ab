"""Mutation gate: plant realistic bugs one at a time and check that the tests catch each one.

Every mutation is (file, an exact snippet of its current source, the buggy replacement, the test
files or pytest node ids that must fail). The snippet must occur exactly once in its file; when a
change elsewhere moved or rewrote it, the gate stops before running anything and names the
mutation (refresh its snippet). tests/test_mutation_gate.py checks the list in CI.

For each mutation the repository's files (tracked ones plus untracked, not ignored ones) are
copied into a scratch folder, the snippet is replaced there, and ``python -m pytest -x`` runs the
mutation's tests in that copy. A mutation is caught when pytest reports failing tests (status 1);
it survives when they pass. Any other outcome (collection error, timeout, no tests) is an error.
The working tree is never modified. Exit status: 0 when every mutation was caught, 1 when one
survived or errored, 2 for a stale or malformed list.

    python scripts/mutation_check.py              # all mutations, one at a time
    python scripts/mutation_check.py --list       # the mutations and their tests
    python scripts/mutation_check.py --only eval-clips-mixed-across-videos --jobs 2

It is run by hand (about 30 to 60 minutes on 2 busy cores), not in CI.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str                 # unique, used by --only
    area: str                 # what it threatens: losses, sampling, augmentation, ...
    path: str                 # file, relative to the repository root
    old: str                  # exact source snippet, present exactly once
    new: str                  # the buggy replacement
    tests: tuple[str, ...]    # pytest arguments: test files, node ids, or -k expressions
    why: str                  # what the bug would do to a result


KA = "tests/test_known_answers.py"

MUTATIONS: tuple[Mutation, ...] = (
    # ---------------------------------------------------------------- losses
    Mutation("loss-no-temperature", "losses", "losses/tclr.py",
             "sim = torch.bmm(flat / temperature, flat.transpose(1, 2))",
             "sim = torch.bmm(flat, flat.transpose(1, 2))",
             ("tests/test_losses.py",), "NT-Xent logits without the 0.1 temperature"),
    Mutation("loss-positive-sign", "losses", "losses/tclr.py",
             "rows = torch.logaddexp(own[:, :, None, :], lse.transpose(2, 3)) - positive",
             "rows = torch.logaddexp(own[:, :, None, :], lse.transpose(2, 3)) + positive",
             ("tests/test_losses.py",), "the positive pair pushed apart instead of pulled"),
    Mutation("loss-self-similarity-kept", "losses", "losses/tclr.py",
             "masked = sim.masked_fill(self_mask, torch.finfo(sim.dtype).min)",
             "masked = sim",
             ("tests/test_losses.py",), "each vector counted as its own negative"),
    Mutation("loss-ntxent-divisor", "losses", "losses/tclr.py",
             "return rows.sum(dim=3).masked_fill(same_set, 0.0) / (2 * num)",
             "return rows.sum(dim=3).masked_fill(same_set, 0.0) / num",
             ("tests/test_losses.py",), "NT-Xent averaged over N instead of 2N rows"),
    Mutation("loss-global-local-rows-only", "losses", "losses/tclr.py",
             "return (rows + cols).sum(dim=(-2, -1)) / (2 * num_videos)",
             "return (rows + rows).sum(dim=(-2, -1)) / (2 * num_videos)",
             ("tests/test_losses.py",), "global-local loss without the S^T direction"),
    Mutation("loss-ic-local-divided-by-k", "losses", "losses/tclr.py",
             "return 2.0 * half.sum() / (views * views)",
             "return 2.0 * half.sum() / (views * num_clips)",
             ("tests/test_losses.py",), "IC-local scaled by K instead of the release's V*V"),
    Mutation("loss-weight-ignored", "losses", "losses/tclr.py",
             "total = total + resolved[name] * terms[name]",
             "total = total + terms[name]",
             ("tests/test_losses.py",), "the ablations' loss weights have no effect"),
    # ---------------------------------------------------------------- sampling
    Mutation("sampling-dense-offsets", "sampling", "dataloaders/sampling.py",
             "offsets = start + (span // num_local) * np.arange(num_local, dtype=np.int64)",
             "offsets = start + num_local * np.arange(num_local, dtype=np.int64)",
             ("tests/test_sampling.py",), "dense clips bunched at the start, not across the span"),
    Mutation("sampling-mirror-off-by-one", "sampling", "dataloaders/sampling.py",
             "source = np.where(positions < valid, positions, 2 * (valid - 1) - positions)",
             "source = np.where(positions < valid, positions, 2 * valid - 1 - positions)",
             ("tests/test_sampling.py",), "mirror padding repeats the last frame (a b c c b)"),
    Mutation("sampling-mirror-threshold", "sampling", "dataloaders/sampling.py",
             "needed = max(min_valid, (length + 2) // 2)",
             "needed = min_valid",
             ("tests/test_sampling.py",), "too-short clips padded past what the mirror can reach"),
    Mutation("sampling-eval-start-clamped", "sampling", "dataloaders/sampling.py",
             "return np.where(starts < 0, np.arange(num_clips), starts)",
             "return np.clip(starts, 0, None)",
             ("tests/test_sampling.py", KA), "short videos' test clips all start at 0"),
    Mutation("sampling-eval-margin-dropped", "sampling", "dataloaders/sampling.py",
             "last = num_video_frames - stride * clip_len - margin",
             "last = num_video_frames - stride * clip_len",
             ("tests/test_sampling.py", KA), "test clips spread 10 frames further than the release"),
    Mutation("sampling-classifier-span", "sampling", "dataloaders/sampling.py",
             "    span = clip_len * stride\n    if num_video_frames > span:",
             "    span = clip_len\n    if num_video_frames > span:",
             ("tests/test_sampling.py",), "training clips starting too late (padding most clips)"),
    Mutation("sampling-eval-mask-all-true", "sampling", "dataloaders/datasets.py",
             '"clip_mask": torch.from_numpy(valid)',
             '"clip_mask": torch.ones(len(valid), dtype=torch.bool)',
             (KA,), "unpaddable test clips averaged in as copies of the first clip"),
    # ---------------------------------------------------------------- augmentation
    Mutation("augment-hue-saturation-swapped", "augmentation", "dataloaders/augment.py",
             '    steps = [("contrast_before", adjust_contrast_, p.contrast), ("hue", adjust_hue_, '
             'p.hue),\n             ("saturation", adjust_saturation_, p.saturation),',
             '    steps = [("contrast_before", adjust_contrast_, p.contrast),\n'
             '             ("saturation", adjust_saturation_, p.saturation), ("hue", adjust_hue_, '
             'p.hue),',
             ("tests/test_colour_order.py", "tests/test_augment.py"),
             "colour operations in another order than the release's"),
    Mutation("augment-contrast-always-before", "augmentation", "dataloaders/augment.py",
             "contrast_stage=torch.where(u[:, 0] < half, 1, torch.where(u[:, 0] < 2 * half, 2, 0)),",
             "contrast_stage=torch.where(u[:, 0] < 2 * half, 1, 0),",
             ("tests/test_augment.py",), "contrast never applied after hue/saturation/brightness"),
    Mutation("augment-gray-weights-reversed", "augmentation", "dataloaders/color.py",
             "GRAY_WEIGHTS = (0.299, 0.587, 0.114)",
             "GRAY_WEIGHTS = (0.114, 0.587, 0.299)",
             ("tests/test_colour_order.py", "tests/test_augment.py"),
             "grey computed as if the BGR array were read in its true order"),
    Mutation("augment-release-color-ops-ignored", "augmentation", "dataloaders/color.py",
             'return CHANNEL_ORDERS["rgb" if color_ops == "release" else channel_order]',
             "return CHANNEL_ORDERS[channel_order]",
             ("tests/test_colour_order.py", "tests/test_augment.py"),
             "colour formulas on the true channels although the release's numerics are the default"),
    Mutation("augment-hue-direction", "augmentation", "dataloaders/color.py",
             "hue6.add_(6 * shift.view(-1, 1, 1, 1))",
             "hue6.sub_(6 * shift.view(-1, 1, 1, 1))",
             ("tests/test_colour_order.py", "tests/test_augment.py"),
             "hue shifted the other way round the colour wheel"),
    Mutation("augment-crop-side-from-width", "augmentation", "dataloaders/augment.py",
             "side = (c * height).floor().long().clamp(1, min(height, width))",
             "side = (c * width).floor().long().clamp(1, min(height, width))",
             ("tests/test_augment.py",), "crops of another scale than c * H"),
    Mutation("augment-erase-probability", "augmentation", "dataloaders/augment.py",
             "erase_on=u[:, 7] < recipe.p_erase,",
             "erase_on=u[:, 7] < 0.5,",
             ("tests/test_augment.py",), "the weak recipe erases twice as often as specified"),
    # ---------------------------------------------------------------- protocols' aggregation
    Mutation("eval-clips-mixed-across-videos", "aggregation", "engine/evaluation.py",
             "metrics.clip_softmax_average(logits.view(b, c, -1),",
             "metrics.clip_softmax_average(logits.view(c, b, -1).transpose(0, 1),",
             (KA,), "a video's test clips averaged with other videos' clips"),
    Mutation("eval-clip-mask-dropped", "aggregation", "engine/evaluation.py",
             '                                             batch.get("clip_mask"))',
             "                                             None)",
             (KA,), "unpaddable clips counted in the video's average"),
    Mutation("eval-logits-averaged", "aggregation", "engine/metrics.py",
             "return masked_clip_mean(logits.float().softmax(dim=-1), clip_mask)",
             "return masked_clip_mean(logits.float(), clip_mask).softmax(dim=-1)",
             (KA,), "logits averaged over clips instead of softmax probabilities"),
    Mutation("retrieval-clips-mixed-across-videos", "aggregation", "engine/features.py",
             "flat = flat.view(b, k, -1) ",
             "flat = flat.view(k, b, -1).transpose(0, 1) ",
             (KA,), "a video's retrieval feature averaged with other videos' clips"),
    Mutation("retrieval-normalised-per-clip", "aggregation", "engine/features.py",
             "return metrics.l2_normalize(metrics.masked_clip_mean(flat, clip_mask))",
             "return metrics.masked_clip_mean(metrics.l2_normalize(flat.flatten(0, 1)).view(b, k, -1), "
             "clip_mask)",
             (KA,), "clips normalised then averaged: features not unit length"),
    Mutation("analysis-clips-mixed-across-videos", "aggregation", "engine/analysis.py",
             "return fmap.float().view(b, c, *fmap.shape[1:])",
             "return fmap.float().view(c, b, *fmap.shape[1:]).transpose(0, 1)",
             (KA,), "temporal diversity of mixed videos"),
    Mutation("analysis-clip-mask-dropped", "aggregation", "engine/analysis.py",
             "                video = video[clip_mask[row].to(video.device)]",
             "                video = video",
             (KA,), "unpaddable clips counted in the temporal diversity"),
    Mutation("classifier-loss-sum-unweighted", "aggregation", "engine/classify.py",
             "sums += torch.tensor([loss.item() * len(labels),",
             "sums += torch.tensor([loss.item(),",
             (KA,), "the epoch loss (the plateau rule's input) divided by the clip count twice"),
    # ---------------------------------------------------------------- metrics
    Mutation("metric-topk-smallest", "metrics", "engine/metrics.py",
             "top = scores.topk(min(max(ks), num_classes), dim=1).indices",
             "top = scores.topk(min(max(ks), num_classes), dim=1, largest=False).indices",
             ("tests/test_metrics.py",), "top-k of the lowest scores"),
    Mutation("metric-recall-over-gallery", "metrics", "engine/metrics.py",
             "recalls = {k: 100.0 * int(hits[:, i].sum()) / queries.shape[0]",
             "recalls = {k: 100.0 * int(hits[:, i].sum()) / gallery.shape[0]",
             ("tests/test_metrics.py",), "Recall@k divided by the gallery size"),
    Mutation("metric-recall-kth-only", "metrics", "engine/metrics.py",
             "return torch.stack([match[:, :min(k, kmax)].any(dim=1) for k in ks], dim=1)",
             "return torch.stack([match[:, min(k, kmax) - 1] for k in ks], dim=1)",
             ("tests/test_metrics.py",), "a hit only when the k-th neighbour matches"),
    Mutation("metric-neighbours-farthest", "metrics", "engine/metrics.py",
             "order = torch.sort(-sim, dim=1, stable=True).indices[:, :k]",
             "order = torch.sort(sim, dim=1, stable=True).indices[:, :k]",
             ("tests/test_metrics.py",), "the least similar gallery videos retrieved"),
    Mutation("metric-normalise-columns", "metrics", "engine/metrics.py",
             "return features / features.norm(dim=1, keepdim=True).clamp_min(eps)",
             "return features / features.norm(dim=0, keepdim=True).clamp_min(eps)",
             ("tests/test_metrics.py", KA), "features normalised per dimension, not per video"),
    # ---------------------------------------------------------------- schedules
    Mutation("schedule-plateau-patience", "schedules", "engine/schedules.py",
             "if active and new.epochs_since_best >= patience:",
             "if active and new.epochs_since_best > patience:",
             ("tests/test_schedules.py",), "pretraining lr drops one epoch late"),
    Mutation("schedule-release-counter-reset", "schedules", "engine/schedules.py",
             "    else:\n        new.best_loss = float(epoch_loss)\n",
             "    else:\n        new.best_loss = float(epoch_loss)\n        new.epochs_since_best = 0\n",
             ("tests/test_schedules.py",), "the linear probe's counter reset (not the release)"),
    Mutation("schedule-stop-before-last-epoch", "schedules", "engine/schedules.py",
             "    return new, trained_lr < below",
             "    return new, base_lr * new.scale < below",
             ("tests/test_schedules.py",), "the probe stops before its epoch at 1e-6"),
    Mutation("schedule-warmup-shifted", "schedules", "engine/schedules.py",
             "        return base_lr * warmup[epoch]\n    return base_lr * state.scale",
             "        return base_lr * warmup[epoch - 1]\n    return base_lr * state.scale",
             ("tests/test_schedules.py",), "pretraining warm-up factors off by one epoch"),
    # ---------------------------------------------------------------- checkpoints
    Mutation("checkpoint-rng-not-saved", "checkpoints", "engine/pretrain.py",
             '"config": config_mod.to_dict(cfg), "rng": rng_states,',
             '"config": config_mod.to_dict(cfg), "rng": [],',
             ("tests/test_resume_rng.py",), "a resumed run draws other random numbers"),
    Mutation("checkpoint-numpy-rng-not-restored", "checkpoints", "engine/checkpoint.py",
             '    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], '
             'n["has_gauss"],\n                         n["gauss"]))',
             "    pass",
             ("tests/test_checkpoint.py", "tests/test_resume_rng.py"),
             "NumPy's generator not restored on resume"),
    Mutation("checkpoint-torch-rng-not-restored", "checkpoints", "engine/checkpoint.py",
             '    torch.set_rng_state(state["torch"])',
             "    pass",
             ("tests/test_checkpoint.py", "tests/test_resume_rng.py"),
             "torch's generator not restored on resume"),
    Mutation("checkpoint-python-rng-not-restored", "checkpoints", "engine/checkpoint.py",
             '    random.setstate((py[0], tuple(py[1]), py[2]))',
             "    pass",
             ("tests/test_checkpoint.py", "tests/test_resume_rng.py"),
             "Python's generator not restored on resume"),
    Mutation("checkpoint-written-in-place", "checkpoints", "atomic_io.py",
             "tmp = temp_path(path)",
             "tmp = path",
             ("tests/test_checkpoint.py",), "a failed write destroys the previous checkpoint"),
    Mutation("checkpoint-train-state-not-restored", "checkpoints", "engine/pretrain.py",
             'return TrainState.from_state_dict(ckpt["train_state"])',
             "return TrainState()",
             ("tests/test_pretrain.py::test_resume_after_epoch_gives_same_losses",),
             "a resumed run starts its schedule and epochs again"),
    # ---------------------------------------------------------------- run-folder safety
    Mutation("runfolder-shared-lock", "run folders", "engine/rundir.py",
             "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)",
             "fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)",
             ("tests/faults/test_run_folder_faults.py::test_second_run_into_a_busy_folder_is_refused",),
             "two runs write into the same folder"),
    Mutation("runfolder-earlier-run-not-refused", "run folders", "engine/rundir.py",
             "if resume or overwrite or job in INCREMENTAL_JOBS:",
             "if resume or not overwrite or job in INCREMENTAL_JOBS:",
             ("tests/faults/test_run_folder_faults.py::"
              "test_rerun_without_resume_is_refused_and_overwrite_replaces",),
             "a rerun silently mixes its checkpoints with an earlier run's"),
    Mutation("runfolder-overwrite-keeps-log", "run folders", "engine/rundir.py",
             '"run.json", "config.yaml", "log.jsonl", "checkpoints"',
             '"run.json", "config.yaml", "checkpoints"',
             ("tests/faults/test_run_folder_faults.py::"
              "test_rerun_without_resume_is_refused_and_overwrite_replaces",),
             "--overwrite keeps the earlier run's per-epoch records"),
)


# --------------------------------------------------------------------------------------------
# Checks of the list
# --------------------------------------------------------------------------------------------

class StaleMutation(Exception):
    """A mutation's snippet is not found exactly once, or its entry is malformed."""


def list_problems(mutations=MUTATIONS, root: Path = ROOT) -> list[str]:
    """What is wrong with the list against the tree at ``root`` (empty when it is usable)."""
    problems = []
    names = [m.name for m in mutations]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{name}: the name is used more than once")
    for m in mutations:
        source = root / m.path
        if not source.is_file():
            problems.append(f"{m.name}: {m.path} does not exist")
            continue
        count = source.read_text().count(m.old)
        if count != 1:
            problems.append(f"{m.name}: its snippet occurs {count} times in {m.path} (must be "
                            f"exactly once; refresh it): {m.old.strip()[:80]!r}")
        if m.old == m.new:
            problems.append(f"{m.name}: the replacement equals the snippet")
        if not m.tests:
            problems.append(f"{m.name}: names no tests")
        for test in m.tests:
            if not test.startswith("-") and not (root / test.split("::")[0]).is_file():
                problems.append(f"{m.name}: test file {test.split('::')[0]} does not exist")
    return problems


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

def repository_files(root: Path = ROOT) -> list[str]:
    """Tracked files plus untracked files git does not ignore (new tests not yet committed)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=root, capture_output=True, check=True).stdout
    return sorted({p for p in out.decode().split("\0") if p and (root / p).is_file()})


def make_scratch(files: list[str], root: Path = ROOT) -> Path:
    scratch = Path(tempfile.mkdtemp(prefix="tclr-mutation-"))
    for rel in files:
        target = scratch / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    return scratch


@dataclass
class Outcome:
    mutation: Mutation
    status: str              # caught, SURVIVED, ERROR
    caught_by: str           # the first failing test, or what went wrong
    seconds: float


FAILED_LINE = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def run_pytest(scratch: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-rfE", "-p", "no:cacheprovider",
               *tests]
    try:
        proc = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:.0f} s"
    return proc.returncode, proc.stdout + proc.stderr


def apply(scratch: Path, m: Mutation) -> str:
    """Plants ``m`` in the scratch copy; returns the original text to restore."""
    source = scratch / m.path
    original = source.read_text()
    if original.count(m.old) != 1:
        raise StaleMutation(f"{m.name}: snippet not found exactly once in {m.path}")
    source.write_text(original.replace(m.old, m.new))
    return original


def check_one(scratch: Path, m: Mutation, timeout: float) -> Outcome:
    started = time.perf_counter()
    original = apply(scratch, m)
    try:
        code, output = run_pytest(scratch, m.tests, timeout)
    finally:
        (scratch / m.path).write_text(original)
        shutil.rmtree(scratch / "__pycache__", ignore_errors=True)
    seconds = time.perf_counter() - started
    if code == 1:
        failed = FAILED_LINE.findall(output)
        return Outcome(m, "caught", failed[0] if failed else "(failing test not named)", seconds)
    if code == 0:
        return Outcome(m, "SURVIVED", "every test passed", seconds)
    tail = " | ".join(output.strip().splitlines()[-3:])[-300:]
    return Outcome(m, "ERROR", f"pytest status {code}: {tail}", seconds)


def baseline(scratch: Path, mutations, timeout: float) -> None:
    """The unmutated tree must pass every test the mutations name, or nothing is measured."""
    tests = tuple(dict.fromkeys(t for m in mutations for t in m.tests))
    code, output = run_pytest(scratch, tests, timeout * 4)
    if code != 0:
        raise SystemExit("mutation_check: the unmutated tree fails the tests the mutations use; "
                         "fix that first:\n" + output[-3000:])


def run_all(mutations, jobs: int, timeout: float, with_baseline: bool) -> list[Outcome]:
    files = repository_files()
    scratches = [make_scratch(files) for _ in range(max(1, jobs))]
    try:
        if with_baseline:
            print(f"baseline: the {len(mutations)} mutations' tests on the unmutated tree ...",
                  flush=True)
            baseline(scratches[0], mutations, timeout)
        free = list(scratches)
        outcomes: list[Outcome] = []

        def work(m: Mutation) -> Outcome:
            scratch = free.pop()
            try:
                outcome = check_one(scratch, m, timeout)
            finally:
                free.append(scratch)
            print(f"  {outcome.status:<8} {m.name} ({outcome.seconds:.0f} s)", flush=True)
            return outcome

        with ThreadPoolExecutor(max_workers=len(scratches)) as pool:
            outcomes = list(pool.map(work, mutations))
        return outcomes
    finally:
        for scratch in scratches:
            shutil.rmtree(scratch, ignore_errors=True)


def print_table(outcomes: list[Outcome]) -> None:
    rows = [(o.mutation.name, o.mutation.area, o.status, f"{o.seconds:.0f}", o.caught_by)
            for o in outcomes]
    head = ("mutation", "area", "result", "s", "caught by")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    for row in [head, *rows]:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only this mutation (repeat, or separate names by commas)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--jobs", type=int, default=1,
                        help="mutations checked at once, each in its own scratch copy")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds one mutation's tests may take")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the check that the unmutated tree passes the tests")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    problems = list_problems()
    if problems:
        print("mutation_check: the mutation list does not match the source (other changes moved "
              "or rewrote these snippets):\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    chosen = list(MUTATIONS)
    if args.only:
        wanted = [n for arg in args.only for n in arg.split(",") if n]
        unknown = sorted(set(wanted) - {m.name for m in MUTATIONS})
        if unknown:
            print(f"mutation_check: unknown mutation(s) {', '.join(unknown)}; --list shows them",
                  file=sys.stderr)
            return 2
        chosen = [m for m in MUTATIONS if m.name in wanted]
    if args.list:
        for m in chosen:
            print(f"{m.name:<40} {m.area:<13} {m.path:<26} {' '.join(m.tests)}\n"
                  f"{'':<40} {m.why}")
        return 0
    started = time.perf_counter()
    outcomes = run_all(chosen, args.jobs, args.timeout, not args.no_baseline)
    print()
    print_table(outcomes)
    bad = [o for o in outcomes if o.status != "caught"]
    minutes = (time.perf_counter() - started) / 60
    print(f"\n{len(outcomes) - len(bad)} of {len(outcomes)} mutations caught, "
          f"{sum(o.status == 'SURVIVED' for o in bad)} survived, "
          f"{sum(o.status == 'ERROR' for o in bad)} errors; {minutes:.1f} min with --jobs "
          f"{args.jobs}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
