"""The paper's tables from a mini-scale run (``scripts/reproduce_paper.sh --scale mini``), with
the mini figures in columns labelled "mini (synthetic, CPU)" beside the published ones.

``make_tables.py --mini DIR`` calls ``render_mini``. DIR is the mini run's eval folder, laid out
as scripts/mini_plan.py writes it: DIR/INIT/seedS/DATA/PROTOCOL/splitK/results.json, INIT one of
random, ic_only, ic_ll, ic_gl, tclr; DATA ucf101 (the "switch" synthetic data in the UCF101
layout; results say dataset "synthetic") or hmdb51 (the HMDB51-layout draw). The tables:

1. the main table: linear probe and finetuning top-1 on UCF101 and HMDB51, TCLR and random init;
2. the loss ablation: IC only, IC + LL, IC + GL, TCLR and random init (linear, finetune, R@1);
3. limited labels: finetuning with 10%, 50% and 100% of the training labels;
4. retrieval Recall@1/5/10/20/50;
5. transfer to HMDB51 (linear, finetune, retrieval);
6. every seed's UCF101 split-1 figures (the runs tables 2 and 3 pool).

A cell is the mean ± sample std over the runs it pools: the seeds, and for TCLR's UCF101 rows of
the main and retrieval tables also splits 1-3 (the paper averages the splits). Runs pooled as
seeds must differ in nothing but the seed (same checkpoint recipe, protocol config and split
files, engine.metrics.differences_besides_seed): mixed provenance is refused with the runs named.
Runs set side by side are checked too (check_across_cells): every evaluation of one pretraining
and seed must use one checkpoint, and one protocol (job, data, label fraction) must have the same
config for every pretraining and, besides the split, on every split.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from engine.metrics import aggregate_results, differences_besides_seed, format_mean_std

INITS = {"random": "random init", "ic_only": "IC only", "ic_ll": "IC + LL", "ic_gl": "IC + GL",
         "tclr": "TCLR (IC + LL + GL)"}
# results' "dataset" -> the table's data role
ROLES = {"synthetic": "ucf101", "hmdb51": "hmdb51"}
ROLE_NAMES = {"ucf101": "UCF101", "hmdb51": "HMDB51"}
MINI = "mini (synthetic, CPU)"
KS = (1, 5, 10, 20, 50)
FRACTIONS = (0.1, 0.5, 1.0)
# TCLR_SPEC section 9 (R3D-18 pretrained on UCF101 split 1): (job, role, metric) -> text
PUBLISHED = {("linear", "ucf101", "top1"): "69.9 (release)",
             ("finetune", "ucf101", "top1"): "82.4 (paper), 82 (release)",
             ("finetune", "hmdb51", "top1"): "52.9 (paper)",
             ("retrieval", "ucf101", "recall@1"): "56.2 (paper), 56.1 (release)"}
WARNING = ("**The mini columns are not UCF101 or HMDB51 figures.** They come from "
           "`scripts/reproduce_paper.sh --scale mini`: 64x48 synthetic videos of the \"switch\" "
           "design (6 classes; UCF101 and HMDB51 *layouts* only), a width-8 R3D-18 at 24 px "
           "pretrained on the CPU (default: 300 steps of 20 videos, the learning demo's budget). "
           "The published figures (TCLR_SPEC "
           "section 9: R3D-18 at 112 px pretrained on UCF101 split 1) are beside them to show "
           "which number of the paper each row stands for, not to be compared with them. Blank "
           "published cell: the spec quotes no figure for that row.")


class MiniTablesError(Exception):
    """A results folder that is not a mini run's, or runs that must not be pooled."""


def read_mini_results(eval_dir: str | Path) -> list[dict]:
    """Every results.json under ``eval_dir``, each with "mini_init" and "mini_role" set.

    Raises:
        MiniTablesError: no results, a results.json outside an INIT folder, a dataset that is not
            the mini plan's, or a run whose seed is not its seedS folder's.
    """
    from engine.metrics import ResultsFileError, load_results
    root = Path(eval_dir)
    if not root.is_dir():
        raise MiniTablesError(f"{root} is not a folder (give the mini run's eval folder, "
                              "OUT/eval)")
    found = []
    for path in sorted(root.rglob("results.json")):
        parts = path.relative_to(root).parts
        try:
            result = load_results([path])[0]
        except ResultsFileError as exc:
            raise MiniTablesError(str(exc)) from None
        if parts[0] not in INITS:
            raise MiniTablesError(f"{path}: its folder under {root} is {parts[0]!r}, not one of "
                                  f"{', '.join(INITS)}; this is not a mini run's eval folder")
        if result.get("dataset") not in ROLES:
            raise MiniTablesError(f"{path}: dataset {result.get('dataset')!r} is not the mini "
                                  "plan's (synthetic in the UCF101 layout, or hmdb51); real-data "
                                  "results go to make_tables.py without --mini")
        seed_folder = next((p for p in parts if re.fullmatch(r"seed\d+", p)), None)
        if seed_folder is not None and f"seed{result.get('seed')}" != seed_folder:
            raise MiniTablesError(f"{path}: the run's seed is {result.get('seed')} but it lies in "
                                  f"{seed_folder}/; rerun it, or move it where it belongs")
        result["mini_init"] = parts[0]
        result["mini_role"] = ROLES[result["dataset"]]
        found.append(result)
    if not found:
        raise MiniTablesError(f"no results.json under {root} (has the mini plan run?)")
    return found


def group_cells(results: list[dict]) -> dict[tuple, list[dict]]:
    """{(init, role, job, label fraction, split): runs}.

    Raises:
        MiniTablesError: the runs of one cell differ in more than the seed (mixed provenance).
    """
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        cells[(r["mini_init"], r["mini_role"], r["job"], float(r.get("label_fraction", 1.0)),
               int(r.get("split", 1)))].append(r)
    for (init, role, job, fraction, split), runs in cells.items():
        differ = differences_besides_seed(runs)
        seeds = [r.get("seed") for r in runs]
        if len(set(seeds)) != len(seeds):
            differ.append(f"seed repeated: {seeds}")
        if differ:
            raise MiniTablesError(
                f"the {job} runs of {INITS[init]} on {role} split {split} (labels {fraction:g}) "
                f"differ in more than the seed, so they are not pooled: {'; '.join(differ[:3])}. "
                "Rerun the mini plan into this folder (it reruns stale runs), or remove them")
    return cells


def check_across_cells(cells: dict[tuple, list[dict]]) -> None:
    """Refuse runs that the tables would set side by side but that do not measure alike.

    - One backbone per pretraining and seed: every evaluation of INIT seedS names the same
      checkpoint (sha256). A pretraining rerun whose evaluations only partly reran would otherwise
      put two backbones in one row.
    - One protocol per column: the runs of one job on one data role and label fraction have the
      same protocol config and split files, whatever the pretraining, and on every split besides
      the split itself (the rows differ in the backbone only; TCLR pools splits 1-3).

    Runs without a provenance record are left to group_cells' field checks.

    Raises:
        MiniTablesError: naming the two runs and what differs.
    """
    from engine.rundir import provenance_differences
    runs = [r for group in cells.values() for r in group if isinstance(r.get("provenance"), dict)]
    backbones: dict[tuple, dict] = {}
    for r in runs:
        first = backbones.setdefault((r["mini_init"], r.get("seed")), r)
        sha_a = first["provenance"].get("checkpoint_sha256")
        sha_b = r["provenance"].get("checkpoint_sha256")
        if sha_a != sha_b:
            raise MiniTablesError(
                f"the evaluations of {INITS[r['mini_init']]} seed {r.get('seed')} use two "
                f"checkpoints: {str(sha_a)[:12]} ({first.get('run_dir', '?')}) vs "
                f"{str(sha_b)[:12]} ({r.get('run_dir', '?')}); the pretraining changed after some "
                "of them ran. Rerun the mini plan into this folder (it reruns stale runs), or "
                "remove them")
    columns: dict[tuple, dict] = {}
    for r in runs:
        key = (r["mini_role"], r["job"], float(r.get("label_fraction", 1.0)))
        first = columns.setdefault(key, r)
        same_split = int(first.get("split", 1)) == int(r.get("split", 1))
        differ = provenance_differences(
            first["provenance"], r["provenance"], ignore=("seed", "checkpoint_sha256")
            + (() if same_split else ("split_files",)),
            ignore_config=() if same_split else ("data.split",))
        if differ:
            raise MiniTablesError(
                f"the {key[1]} runs on {key[0]} (labels {key[2]:g}) do not share one protocol: "
                f"{'; '.join(differ[:3])} ({first.get('run_dir', '?')} vs "
                f"{r.get('run_dir', '?')}). Rerun the mini plan into this folder (it reruns "
                "stale runs), or remove them")


def pooled(cells: dict, init: str, role: str, job: str, metric: str,
           splits: tuple[int, ...] = (1,), fraction: float = 1.0) -> str:
    """'mean ± std (n=N)' over the runs of the given splits; '' when none ran."""
    runs = [r for s in splits for r in cells.get((init, role, job, fraction, s), [])
            if isinstance(r.get(metric), (int, float))]
    if not runs:
        return ""
    entry = aggregate_results(runs, keys=[metric])["metrics"][metric]
    text = f"{entry['mean']:.1f}" if len(runs) == 1 else format_mean_std(entry, 1)
    return f"{text} (n={len(runs)})"


def table(header: list[str], rows: list[list[str]], text_columns: int) -> list[str]:
    align = [":---" if i < text_columns else "---:" for i in range(len(header))]
    return (["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
            + ["| " + " | ".join(r) + " |" for r in rows])


def main_table(cells: dict) -> list[str]:
    rows = []
    for job, role in (("linear", "ucf101"), ("finetune", "ucf101"), ("linear", "hmdb51"),
                      ("finetune", "hmdb51")):
        splits = (1, 2, 3) if role == "ucf101" else (1,)
        rows.append([job.capitalize(), ROLE_NAMES[role],
                     pooled(cells, "tclr", role, job, "top1", splits),
                     pooled(cells, "random", role, job, "top1"),
                     PUBLISHED.get((job, role, "top1"), "")])
    return (["## 1. Main results: top-1 accuracy (%)", "",
             "TCLR on UCF101: splits 1-3 pooled (seeds x splits); HMDB51 and random init: split "
             "1 (the mini plan does not run random init on splits 2-3). Pretraining read split "
             "1's train list, which holds the test videos of splits 2 and 3 (without labels), "
             "as in the release (docs/reproduce.md, 'Evaluation across splits').", ""]
            + table(["Protocol", "Dataset", f"TCLR, {MINI}", f"random init, {MINI}",
                     "TCLR, published"], rows, 2))


def ablation_table(cells: dict) -> list[str]:
    rows = []
    for init in ("ic_only", "ic_ll", "ic_gl", "tclr", "random"):
        published = ([PUBLISHED[("linear", "ucf101", "top1")],
                      PUBLISHED[("finetune", "ucf101", "top1")],
                      PUBLISHED[("retrieval", "ucf101", "recall@1")]]
                     if init == "tclr" else ["", "", ""])
        rows.append([INITS[init], pooled(cells, init, "ucf101", "linear", "top1"),
                     pooled(cells, init, "ucf101", "finetune", "top1"),
                     pooled(cells, init, "ucf101", "retrieval", "recall@1"), *published])
    return (["## 2. Loss ablation: UCF101 split 1 (%)", ""]
            + table(["Pretraining", f"Linear, {MINI}", f"Finetune, {MINI}", f"R@1, {MINI}",
                     "Linear, published", "Finetune, published", "R@1, published"], rows, 1))


def limited_labels_table(cells: dict) -> list[str]:
    rows = [[INITS[init], *[pooled(cells, init, "ucf101", "finetune", "top1", fraction=f)
                            for f in FRACTIONS]]
            for init in ("random", "ic_only", "ic_ll", "ic_gl", "tclr")]
    return (["## 3. Limited labels: finetuning top-1 on UCF101 split 1 (%)", "",
             "A seeded subset of every class's training videos (--label-fraction; the same seed "
             "gives the same videos, and the 10% subset lies inside the 50% one). TCLR_SPEC "
             "quotes no published limited-label figures.", ""]
            + table(["Pretraining", *[f"{100 * f:g}% labels, {MINI}" for f in FRACTIONS]],
                    rows, 1))


def retrieval_table(cells: dict) -> list[str]:
    rows = []
    specs = [(init, (1,), "split 1") for init in ("random", "ic_only", "ic_ll", "ic_gl", "tclr")]
    specs.append(("tclr", (1, 2, 3), "splits 1-3"))
    for init, splits, where in specs:
        published = PUBLISHED[("retrieval", "ucf101", "recall@1")] if init == "tclr" else ""
        rows.append([INITS[init], where,
                     *[pooled(cells, init, "ucf101", "retrieval", f"recall@{k}", splits)
                       for k in KS], published])
    return (["## 4. Nearest-neighbour retrieval on UCF101: Recall@k (%)", ""]
            + table(["Pretraining", "Splits", *[f"R@{k}, {MINI}" for k in KS],
                     "R@1, published"], rows, 2))


def transfer_table(cells: dict) -> list[str]:
    rows = [[INITS[init], pooled(cells, init, "hmdb51", "linear", "top1"),
             pooled(cells, init, "hmdb51", "finetune", "top1"),
             *[pooled(cells, init, "hmdb51", "retrieval", f"recall@{k}") for k in (1, 5)],
             PUBLISHED[("finetune", "hmdb51", "top1")] if init == "tclr" else ""]
            for init in ("random", "tclr")]
    return (["## 5. Transfer to HMDB51, split 1 (%)", "",
             "Pretrained on the UCF101-layout data, evaluated on the HMDB51-layout draw.", ""]
            + table(["Pretraining", f"Linear, {MINI}", f"Finetune, {MINI}", f"R@1, {MINI}",
                     f"R@5, {MINI}", "Finetune, published"], rows, 1))


def per_seed_table(cells: dict) -> list[str]:
    """Every seed's UCF101 split-1 figures, the runs tables 2 and 3 pool."""
    columns = [("linear", "top1", 1.0), ("finetune", "top1", 1.0), ("retrieval", "recall@1", 1.0),
               ("finetune", "top1", 0.1), ("finetune", "top1", 0.5)]

    def value(init: str, seed: int, job: str, metric: str, fraction: float) -> str:
        runs = [r for r in cells.get((init, "ucf101", job, fraction, 1), [])
                if r.get("seed") == seed and isinstance(r.get(metric), (int, float))]
        return f"{runs[0][metric]:.1f}" if runs else ""

    rows = []
    for init in ("random", "ic_only", "ic_ll", "ic_gl", "tclr"):
        seeds = sorted({r["seed"] for (i, role, _job, _f, split), runs in cells.items()
                        if i == init and role == "ucf101" and split == 1 for r in runs})
        rows += [[INITS[init], str(seed), *[value(init, seed, *c) for c in columns]]
                 for seed in seeds]
    return (["## 6. Every seed: UCF101 split 1 (%)", "",
             "The runs that tables 2 and 3 pool, one row per seed (the seed of pretraining and of "
             "the evaluation).", ""]
            + table(["Pretraining", "Seed", f"Linear, {MINI}", f"Finetune, {MINI}",
                     f"R@1, {MINI}", f"Finetune 10% labels, {MINI}",
                     f"Finetune 50% labels, {MINI}"], rows, 2))


def render_mini(eval_dir: str | Path) -> str:
    """The Markdown document of the five tables and the per-seed listing.

    Raises:
        MiniTablesError: see read_mini_results, group_cells and check_across_cells.
    """
    results = read_mini_results(eval_dir)
    cells = group_cells(results)
    check_across_cells(cells)
    parts = ["# TCLR reproduction at the mini scale: measured (mini) and published results", "",
             WARNING, ""]
    for block in (main_table, ablation_table, limited_labels_table, retrieval_table,
                  transfer_table, per_seed_table):
        parts += block(cells) + [""]
    parts += [f"Cells: mean ± sample std over the n runs pooled (seeds; splits where said). "
              f"{len(results)} runs from {eval_dir}. Published: *paper* = the abstract of Dave "
              "et al., TCLR (CVIU 2022); *release* = the release's README; as TCLR_SPEC section 9 "
              "quotes them."]
    return "\n".join(parts) + "\n"
