"""Measure that the synthetic dataset's classes need time (TCLR_SPEC section 11).

Generates a dataset if --root does not hold the same one yet, then trains a classifier on single
frames and one on 16-frame clips for each requested split and prints both test accuracies:

    python scripts/check_synthetic.py --root /tmp/synthetic_check --classes 12 --videos-per-class 40
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataloaders.synthetic import (  # noqa: E402
    MAX_CLASSES, SyntheticDatasetError, generate, separability_check)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="dataset folder (generated there if absent)")
    parser.add_argument("--classes", type=int, default=MAX_CLASSES)
    parser.add_argument("--videos-per-class", type=int, default=40)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--splits", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--samples-per-video", type=int, default=4)
    args = parser.parse_args(argv)
    try:
        generate(args.root, args.classes, args.videos_per_class, args.frames, args.width, args.height,
                 args.seed, workers=args.workers)
        for split in args.splits:
            report = separability_check(args.root, split=split, samples_per_video=args.samples_per_video,
                                        seed=args.seed)
            print(f"split {split}: single frames {report.frame_accuracy:.1%}, 16-frame clips "
                  f"{report.clip_accuracy:.1%}, chance {report.chance:.1%} ({report.train_videos} train / "
                  f"{report.test_videos} test videos, {report.samples_per_video} samples each, "
                  f"{report.method})")
    except SyntheticDatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
