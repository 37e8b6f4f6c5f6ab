#!/usr/bin/env python
"""Print one small Markdown table comparing labelled evaluation runs (used by demo.sh and
mini_ablation.sh).

    python scripts/summarize_runs.py "random init=runs/demo/random" "TCLR=runs/demo/tclr"

Each LABEL=DIR names a folder holding the runs of one initialisation; every results.json below it
contributes its metrics: linear/finetune "top1", retrieval "recall@1" and "recall@5"; every
temporal_diversity.json (scripts/temporal_diversity.py) below it with one checkpoint contributes
its mean off-diagonal timestep similarity (lower = the timesteps of a clip's features differ more).
Several results of one kind in a folder (seeds) are shown as mean +- std; results that differ in
anything but the seed (another initialisation or checkpoint, protocol, split files) are never
averaged: the script stops and says what differs (name one folder per initialisation).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.analysis import RESULTS_FILE as DIVERSITY_FILE  # noqa: E402
from engine.metrics import (MixedResultsError, ResultsFileError, aggregate_results,  # noqa: E402
                            differences_besides_seed, format_mean_std, load_results)

COLUMNS = (("linear", "top1", "linear top-1 %"), ("finetune", "top1", "finetune top-1 %"),
           ("retrieval", "recall@1", "R@1 %"), ("retrieval", "recall@5", "R@5 %"),
           ("temporal_diversity", "mean_offdiag", "timestep similarity"))


def diversity_results(folder: Path) -> list[dict]:
    """One pseudo-result {"job": "temporal_diversity", "mean_offdiag"} per temporal_diversity.json
    under ``folder`` that measured a single checkpoint (several checkpoints: a comparison figure,
    not one initialisation's value; skipped)."""
    out = []
    for path in sorted(folder.rglob(DIVERSITY_FILE)):
        document = json.loads(path.read_text())
        entries = document["checkpoints"]
        if len(entries) == 1:
            entry = entries[0]
            result = {"job": "temporal_diversity", "mean_offdiag": entry["mean_offdiag"],
                      "init": "random" if entry.get("checkpoint") == "random" else "checkpoint",
                      "checkpoint": entry.get("checkpoint"), "run_dir": str(path.parent)}
            if "checkpoint_sha256" in entry:     # written since the documents carry digests
                protocol = {k: v for k, v in document.get("protocol", {}).items()
                            if k not in ("seed", "data_root")}
                result["provenance"] = {"checkpoint_sha256": entry["checkpoint_sha256"],
                                        "checkpoint_recipe": entry.get("checkpoint_recipe"),
                                        "config": protocol}
            out.append(result)
    return out


def row(folder: Path) -> dict[str, str]:
    """Metrics of the results.json files under ``folder``, by column title."""
    results = load_results(sorted(folder.rglob("results.json"))) + diversity_results(folder)
    cells = {}
    for job, key, title in COLUMNS:
        mine = [r for r in results if r.get("job") == job and key in r]
        differ = differences_besides_seed(mine)
        if differ:
            raise MixedResultsError(
                f"the {job} results under {folder} differ in more than the seed, so they are "
                f"not averaged: {'; '.join(differ[:3])}. Name one folder per initialisation and "
                "protocol (LABEL=DIR for each)")
        if mine:
            entry = aggregate_results(mine, keys=[key])["metrics"][key]
            digits = 3 if job == "temporal_diversity" else 1  # a cosine similarity, not a percentage
            cells[title] = (format_mean_std(entry, digits) if len(mine) > 1
                            else f"{entry['mean']:.{digits}f}")
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="LABEL=DIR")
    args = parser.parse_args(argv)
    rows = []
    for spec in args.runs:
        label, sep, folder = spec.partition("=")
        if not sep or not Path(folder).is_dir():
            parser.error(f"expected LABEL=DIR with an existing folder, got {spec!r}")
        try:
            rows.append((label, row(Path(folder))))
        except (ResultsFileError, MixedResultsError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    titles = [t for _j, _k, t in COLUMNS if any(t in cells for _l, cells in rows)]
    print("| init | " + " | ".join(titles) + " |")
    print("| --- | " + " | ".join("---:" for _ in titles) + " |")
    for label, cells in rows:
        print(f"| {label} | " + " | ".join(cells.get(t, "") for t in titles) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
