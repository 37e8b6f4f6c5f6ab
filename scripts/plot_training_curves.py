#!/usr/bin/env python
"""Draw training_curves.png of finished or running runs from their log.jsonl.

Every loss term and the learning rate against the training step (pretraining) or the epoch
(linear probe, finetuning); the PNG is written into each run folder (pretraining and
classification runs also write it themselves when they end).

    python scripts/plot_training_curves.py runs/demo/pretrain [runs/demo/tclr/linear ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as a file (python scripts/plot_training_curves.py): make the repository's packages importable.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run folders with a log.jsonl")
    args = parser.parse_args(argv)
    from engine.logging import JsonlError
    from engine.visualize import write_training_curves
    from user_errors import UserError
    for run_dir in args.run_dirs:
        try:
            path = write_training_curves(run_dir)
        except (FileNotFoundError, JsonlError, UserError) as exc:   # UserError: unwritable picture
            print(f"error: {exc}", file=sys.stderr)
            return 2
        done = f"wrote {path}" if path else "no epoch finished yet, nothing drawn"
        print(f"{run_dir}: {done}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
