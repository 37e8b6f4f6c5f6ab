#!/usr/bin/env python
"""Draw the pretraining monitor's curves of several runs in one picture (e.g. IC only vs TCLR).

Recall@1 on the train-split monitor set and the timestep similarity against the training step,
from each run's log.jsonl (``--monitor-every``); runs sharing a label (seeds) share a colour and
their mean is drawn thick. scripts/learning_demo.sh draws IC only vs TCLR with it.

    python scripts/plot_monitor_curves.py "IC only=runs/a,runs/b" "TCLR=runs/c,runs/d" --out m.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as a file (python scripts/plot_monitor_curves.py): make the repository's packages importable.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def parse_runs(specs: list[str]) -> dict[str, list[str]]:
    """'LABEL=DIR[,DIR...]' arguments -> {label: [run folders]} (a repeated label adds folders)."""
    runs: dict[str, list[str]] = {}
    for spec in specs:
        label, sep, dirs = spec.partition("=")
        if not sep or not label or not dirs:
            raise SystemExit(f"error: {spec!r} is not LABEL=RUN_DIR[,RUN_DIR...], e.g. "
                             "\"TCLR=runs/learning_demo/pretrain/tclr_seed0\"")
        runs.setdefault(label, []).extend(d for d in dirs.split(",") if d)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR[,RUN_DIR...]")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--title", default="", help="figure title")
    args = parser.parse_args(argv)
    from engine.visualize import monitor_curves_figure, read_monitor_log, save_figure
    series = {}
    for label, dirs in parse_runs(args.runs).items():
        try:
            series[label] = [read_monitor_log(d) for d in dirs]
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        empty = [d for d, recs in zip(dirs, series[label]) if not recs]
        if empty:       # e.g. a run made before the monitor existed, reused by learning_demo.sh
            print(f"warning: no monitor record in the log.jsonl of {', '.join(empty)}; left out "
                  "(pretrain with --monitor-every N: the learning and paper presets turn it on)",
                  file=sys.stderr)
            series[label] = [recs for recs in series[label] if recs]
            if not series[label]:
                del series[label]
    if not series:
        print("error: none of the runs has monitor records; nothing to draw", file=sys.stderr)
        return 2
    path = save_figure(monitor_curves_figure(series, args.title), args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
