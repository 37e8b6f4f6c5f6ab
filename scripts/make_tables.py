#!/usr/bin/env python
"""Markdown tables in the paper's shape from the results.json files of evaluation runs.

    python scripts/make_tables.py runs/eval_ucf101_latest runs/eval_hmdb51_latest [--out T.md]

Every results.json under the given folders (recursively) is read. train_linear.py and
train_finetune.py write top-1 ("job": "linear" / "finetune"), nn_retrieval.py writes Recall@k
("job": "retrieval"). Runs are grouped by (protocol, dataset, split, initialisation, setting),
where the setting lists whatever differs from the job's default config (backbone, width,
resolution, label fraction, BatchNorm mode, model selection, ...), so runs of different protocols
are never averaged together. Several runs in one group (seeds) give "mean ± std (n=N)"; the Mean
column averages the per-split means (± = standard deviation over the splits).

With --mini, the paper's tables of a mini-scale run instead (scripts/mini_tables.py).

Two tables:
1. Linear evaluation / finetuning top-1 (%) per split and mean, UCF101 and HMDB51 (and any other
   dataset that ran), with the published figures beside them.
2. Nearest-neighbour retrieval Recall@k (%) per split and mean.

Published figures are those TCLR_SPEC section 9 quotes (R3D-18 pretrained on UCF101 split 1):
the paper's abstract (finetuning 82.4 UCF101 / 52.9 HMDB51, retrieval R@1 56.2 UCF101) and the
release's README (linear 69.9, finetuning 82, retrieval R@1 56.1). They are shown only on rows of
an R3D-18 (width 64) checkpoint evaluated with all labels; a figure the spec does not give stays
blank.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parent.parent
# the repository, and this folder (mini_tables.py): run as a script Python puts the folder on
# sys.path itself, runpy.run_path and an import from elsewhere do not
for _folder in (ROOT, Path(__file__).resolve().parent):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import config  # noqa: E402
from atomic_io import WriteError, write_text  # noqa: E402
from engine.metrics import (ResultsFileError, aggregate_results,  # noqa: E402
                            differences_besides_seed, format_mean_std, load_results)
# the tables of a mini-scale run (--mini), beside this file
from mini_tables import MiniTablesError, render_mini  # noqa: E402

CLASSIFY_JOBS = ("linear", "finetune")
JOB_NAMES = {"linear": "Linear", "finetune": "Finetune", "retrieval": "Retrieval"}
DATASET_NAMES = {"ucf101": "UCF101", "hmdb51": "HMDB51", "kinetics400": "Kinetics-400"}
DATASET_ORDER = ("ucf101", "hmdb51")
RANDOM_LABEL = "random init"

# (job, dataset, metric) -> {"paper": text, "release": text}, exactly as TCLR_SPEC section 9 gives
# them; anything else is blank.
PUBLISHED = {
    ("linear", "ucf101", "top1"): {"release": "69.9"},
    ("finetune", "ucf101", "top1"): {"paper": "82.4", "release": "82"},
    ("finetune", "hmdb51", "top1"): {"paper": "52.9"},
    ("retrieval", "ucf101", "recall@1"): {"paper": "56.2", "release": "56.1"},
}
SOURCES_NOTE = ("Published: *paper* = the abstract of Dave et al., TCLR (CVIU 2022); *release* = "
                "the release's README; both as quoted in TCLR_SPEC section 9 (R3D-18 pretrained "
                "on UCF101 split 1; the spec does not say which splits they average). Blank = not "
                "given there. Shown only beside R3D-18 (width 64) checkpoints evaluated with all "
                "labels.")


class ResultsError(Exception):
    """No usable results.json, or one that cannot be read."""


# --------------------------------------------------------------------------------------------
# Reading and grouping
# --------------------------------------------------------------------------------------------

def find_results(paths: Iterable[str | os.PathLike]) -> tuple[list[dict], list[str]]:
    """Every results.json under ``paths`` (files or folders, searched recursively), each once.

    Returns:
        (results dicts with "run_dir" set, warnings about files that are not evaluation results).
    Raises:
        ResultsError: a path does not exist, a file is not JSON, or nothing was found.
    """
    files: dict[str, Path] = {}
    for p in map(Path, paths):
        if p.is_file():
            found = [p]
        elif p.is_dir():
            found = sorted(p.rglob("results.json"))
        else:
            raise ResultsError(f"{p} does not exist")
        for f in found:
            files.setdefault(os.path.realpath(f), f)
    results, warnings = [], []
    for f in sorted(files.values()):
        try:
            data = load_results([f])[0]
        except ResultsFileError as exc:
            raise ResultsError(str(exc)) from None
        if data.get("job") not in (*CLASSIFY_JOBS, "retrieval"):
            warnings.append(f"{f}: no known 'job' field (linear, finetune, retrieval); left out")
            continue
        results.append(data)
    if not results:
        raise ResultsError("no evaluation results.json found under " + ", ".join(map(str, paths)))
    return results, warnings


def init_label(result: dict) -> str:
    """'random init' or the checkpoint path the run was given."""
    if result.get("init") == "random" or not result.get("checkpoint"):
        return RANDOM_LABEL
    return str(result["checkpoint"])


def _defaults(job: str) -> dict[str, Any]:
    cfg = config.JOBS[job]()
    d = cfg.data
    out = {"backbone": cfg.backbone, "width": cfg.width, "resolution": d.resolution,
           "color": d.color}
    if job in CLASSIFY_JOBS:
        out.update(lr=cfg.lr, label_fraction=cfg.label_fraction, select=cfg.select,
                   num_test_clips=cfg.num_test_clips, bn_mode=getattr(cfg, "bn_mode", None),
                   dropout=getattr(cfg, "dropout", None))
    else:
        out.update(num_clips=cfg.num_clips)
    return out


def setting(result: dict) -> str:
    """What differs from the job's default config (empty for the paper's protocol)."""
    job = result["job"]
    default = _defaults(job)
    parts = []

    def differs(key: str) -> bool:
        return key in result and result[key] is not None and result[key] != default.get(key)

    if differs("backbone"):
        parts.append(str(result["backbone"]))
    if differs("width"):
        parts.append(f"width {result['width']}")
    if differs("resolution"):
        parts.append(f"{result['resolution']}px")
    if differs("color"):
        parts.append(str(result["color"]).upper())
    if job in CLASSIFY_JOBS:
        select = str(result.get("select", "")).split(" ")[0]
        if select and select != default["select"]:
            parts.append(f"select {select}")
        if differs("label_fraction"):
            parts.append(f"{100 * result['label_fraction']:g}% labels")
        if differs("bn_mode"):
            parts.append(f"BN {result['bn_mode']}")
        if differs("dropout"):
            parts.append(f"dropout {result['dropout']:g}")
        if differs("lr"):
            parts.append(f"lr {result['lr']:g}")
        if differs("num_test_clips"):
            parts.append(f"{result['num_test_clips']} test clips")
    elif differs("num_clips"):
        parts.append(f"{result['num_clips']} clips")
    return ", ".join(parts)


def row_key(result: dict) -> tuple[str, str, str, str]:
    """(job, dataset, init label, setting): one table row."""
    return (result["job"], str(result.get("dataset")), init_label(result), setting(result))


def _row_order(key: tuple[str, str, str, str]) -> tuple:
    job, dataset, init, variant = key
    job_rank = ("linear", "finetune", "retrieval").index(job)
    ds_rank = DATASET_ORDER.index(dataset) if dataset in DATASET_ORDER else len(DATASET_ORDER)
    return (job_rank, ds_rank, dataset, init != RANDOM_LABEL, init, variant)


def group_results(results: list[dict]) -> dict[tuple, dict[int, list[dict]]]:
    """{row key: {split: [runs]}}, rows in table order.

    Raises:
        ResultsError: the runs of one cell (averaged as seeds) differ in anything but the seed
            (e.g. one checkpoint path that held other weights, another protocol config or split
            files): the message says what differs and where.
    """
    groups: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        groups[row_key(r)][int(r.get("split", 1))].append(r)
    for key, splits in groups.items():
        for split, runs in splits.items():
            differ = differences_besides_seed(runs)
            if differ:
                raise ResultsError(
                    f"the {key[0]} runs of {key[2]} on {key[1]} split {split} differ in more than "
                    f"the seed, so they are not averaged: {'; '.join(differ[:3])}. Move the runs "
                    "of the other checkpoint or protocol into another results folder")
    return {k: dict(sorted(groups[k].items())) for k in sorted(groups, key=_row_order)}


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------

# Fields expected to vary between the runs of one cell: the protocol sentence names the seed.
_SEED_IN_TEXT = re.compile(r"seed \d+")


def consistency_notes(runs: list[dict], where: str) -> list[str]:
    """Notes naming protocol fields that differ between runs averaged together, plus the notes
    the runs wrote themselves (capped k, videos that failed to decode, ...)."""
    agg = aggregate_results(runs, keys=[])
    notes = []
    for field_name, values in agg["varying"].items():
        if field_name == "protocol":
            if len({_SEED_IN_TEXT.sub("seed *", str(v)) for v in values}) == 1:
                continue
        shown = ", ".join(sorted({json.dumps(v) for v in values}))
        notes.append(f"{where}: runs averaged together differ in {field_name!r} ({shown})")
    for note in dict.fromkeys(n for r in runs for n in r.get("notes") or []):
        notes.append(f"{where}: {note}")
    seeds = [r.get("seed") for r in runs]
    repeated = sorted({s for s in seeds if seeds.count(s) > 1}, key=str)
    if repeated:
        notes.append(f"{where}: several runs with seed {', '.join(map(str, repeated))} "
                     f"({', '.join(r.get('run_dir', '?') for r in runs)})")
    return notes


def seed_cell(runs: list[dict], metric: str, digits: int) -> tuple[str, float | None]:
    """Text and mean of one (row, split) cell: a value, or mean ± std (n=N) over seeds."""
    have = [r for r in runs if isinstance(r.get(metric), (int, float))]
    if not have:
        return "", None
    entry = aggregate_results(have, keys=[metric])["metrics"][metric]
    if len(have) == 1:
        return f"{entry['mean']:.{digits}f}", entry["mean"]
    return f"{format_mean_std(entry, digits)} (n={len(have)})", entry["mean"]


def mean_cell(split_means: list[float], digits: int) -> str:
    """The Mean column: the per-split means averaged, ± std over the splits when several ran."""
    if not split_means:
        return ""
    entry = aggregate_results([{"value": m} for m in split_means], keys=["value"])
    entry = entry["metrics"]["value"]
    if len(split_means) == 1:
        return f"{entry['mean']:.{digits}f}"
    return format_mean_std(entry, digits)


def published(job: str, dataset: str, metric: str, rows_runs: list[dict], which: str) -> str:
    """The spec's published figure for this row, or blank (see SOURCES_NOTE for when)."""
    figure = PUBLISHED.get((job, dataset, metric), {}).get(which, "")
    if not figure:
        return ""
    comparable = all(init_label(r) != RANDOM_LABEL and r.get("backbone") == "r3d18"
                     and r.get("width") == 64 and r.get("label_fraction", 1.0) == 1.0
                     for r in rows_runs)
    return figure if comparable else ""


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a Markdown table; text columns left-aligned, the rest right-aligned."""
    align = [":---" if i < 3 else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return lines


def init_text(init: str, variant: str) -> str:
    return f"{init} [{variant}]" if variant else init


def dataset_text(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


def classification_table(groups: dict, digits: int) -> tuple[list[str], list[str]]:
    """Table 1 (top-1 per split, mean, published) and its notes; empty without such runs."""
    rows_in = {k: v for k, v in groups.items() if k[0] in CLASSIFY_JOBS}
    if not rows_in:
        return [], []
    splits = sorted({s for by_split in rows_in.values() for s in by_split})
    header = (["Protocol", "Dataset", "Init"] + [f"Split {s}" for s in splits]
              + ["Mean", "Paper", "Release"])
    rows, notes = [], []
    for (job, dataset, init, variant), by_split in rows_in.items():
        cells, means = [], []
        for s in splits:
            runs = by_split.get(s, [])
            text, mean = seed_cell(runs, "top1", digits)
            cells.append(text)
            if mean is not None:
                means.append(mean)
                notes += consistency_notes(runs, f"{JOB_NAMES[job]} {dataset_text(dataset)} "
                                                 f"split {s} ({init_text(init, variant)})")
        every = [r for runs in by_split.values() for r in runs]
        rows.append([JOB_NAMES[job], dataset_text(dataset), init_text(init, variant), *cells,
                     mean_cell(means, digits), published(job, dataset, "top1", every, "paper"),
                     published(job, dataset, "top1", every, "release")])
    title = ["## Action recognition: top-1 accuracy (%)", ""]
    return title + markdown_table(header, rows), notes


def recall_ks(runs: Iterable[dict]) -> list[int]:
    """The k of every recall@k key present, sorted."""
    ks = {int(m.group(1)) for r in runs for key in r
          if (m := re.fullmatch(r"recall@(\d+)", key))}
    return sorted(ks)


def retrieval_table(groups: dict, digits: int) -> tuple[list[str], list[str]]:
    """Table 2 (Recall@k per split and mean, published R@1) and its notes."""
    rows_in = {k: v for k, v in groups.items() if k[0] == "retrieval"}
    if not rows_in:
        return [], []
    ks = recall_ks(r for by_split in rows_in.values() for runs in by_split.values() for r in runs)
    header = (["Dataset", "Init", "Split"] + [f"R@{k}" for k in ks]
              + ["Paper R@1", "Release R@1"])
    rows, notes = [], []
    for (job, dataset, init, variant), by_split in rows_in.items():
        label = init_text(init, variant)
        every = [r for runs in by_split.values() for r in runs]
        means: dict[int, list[float]] = defaultdict(list)
        for s, runs in by_split.items():
            cells = []
            for k in ks:
                text, mean = seed_cell(runs, f"recall@{k}", digits)
                cells.append(text)
                if mean is not None:
                    means[k].append(mean)
            notes += consistency_notes(runs, f"Retrieval {dataset_text(dataset)} split {s} "
                                             f"({label})")
            rows.append([dataset_text(dataset), label, str(s), *cells, "", ""])
        if len(by_split) > 1:
            rows.append([dataset_text(dataset), label, "mean",
                         *[mean_cell(means[k], digits) for k in ks], "", ""])
        # the published figures go on the row that sums the group up (its last)
        rows[-1][-2] = published(job, dataset, "recall@1", every, "paper")
        rows[-1][-1] = published(job, dataset, "recall@1", every, "release")
    title = ["## Nearest-neighbour retrieval: Recall@k (%)", ""]
    return title + markdown_table(header, rows), notes


def render(results: list[dict], digits: int = 1, warnings: list[str] | None = None) -> str:
    """The whole Markdown document for a list of results.json dicts."""
    groups = group_results(results)
    parts = ["# TCLR reproduction: measured and published results", ""]
    notes = list(warnings or [])
    for table, table_notes in (classification_table(groups, digits),
                               retrieval_table(groups, digits)):
        if table:
            parts += table + [""]
            notes += table_notes
    parts += [f"Cells: one run, or mean ± sample std over seeds (n=runs). Mean: the per-split "
              f"means averaged (± = std over splits). Init: the checkpoint evaluated; [...] lists "
              f"settings that differ from the default protocol. {len(results)} runs.", "",
              SOURCES_NOTE]
    if notes:
        parts += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="results folders (searched recursively) or files")
    parser.add_argument("--out", help="also write the Markdown to this file")
    parser.add_argument("--digits", type=int, default=1, help="decimals (default: %(default)s)")
    parser.add_argument("--mini", action="store_true",
                        help="the paper's tables of a mini-scale run (reproduce_paper.sh --scale "
                             "mini): give its eval folder, OUT/eval (scripts/mini_tables.py)")
    args = parser.parse_args(argv)
    if args.mini:
        if len(args.paths) != 1:
            print("error: --mini takes one folder, the mini run's OUT/eval", file=sys.stderr)
            return 2
        try:
            text = render_mini(args.paths[0])
        except MiniTablesError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        try:
            results, warnings = find_results(args.paths)
            text = render(results, args.digits, warnings)
        except ResultsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(text, end="")
    if args.out:
        out = Path(args.out)
        try:
            write_text(out, text, "table")
        except WriteError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"(written to {out})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
