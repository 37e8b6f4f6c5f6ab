#!/usr/bin/env python
"""Temporal diversity of backbone features, several checkpoints side by side.

For the test videos of a dataset: cosine similarity between the T' timesteps of each clip's
feature map (a T' x T' matrix averaged over clips and videos) and its mean off-diagonal value
(1 = the same features at every timestep). Writes similarity_<label>.png per checkpoint,
similarity_all.png, temporal_diversity.json and TensorBoard events into --out-dir.

    python scripts/temporal_diversity.py random runs/ic_only/checkpoints/best.pth \\
        runs/tclr/checkpoints/best.pth --preset demo --out-dir runs/temporal_diversity
    python scripts/temporal_diversity.py random release.pth --dataset ucf101 --data-root data/ucf101 \\
        --trust-checkpoint true --max-videos 500

CHECKPOINT: this project's checkpoints, the release's, or bare / torchvision state dicts; the
word "random" stands for a randomly initialised backbone (from --seed). Every retrieval flag
applies (--backbone, --width, --resolution, --num-clips, --clip-len, --color, --device, ...; see
--help); the clips follow the evaluation protocol (num_clips evenly spaced clips, centre crop).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file (python scripts/temporal_diversity.py): make the repository's packages importable.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import config  # noqa: E402
from engine.cli import run_main  # noqa: E402

DEFAULT_OUT_DIR = "runs/temporal_diversity"
OWN_FLAGS = ("checkpoints", "max_videos", "config", "print_config")


def parse_args(argv: list[str] | None
               ) -> tuple[config.RetrievalConfig, list[str], int, dict[str, str] | None]:
    """(config, checkpoints, max_videos, sources) from the command line; ``sources`` (where each
    value came from, see config.value_sources) only with --print-config, else None.

    The flags are those of the retrieval job (config.RetrievalConfig, parsed and validated by
    config.parse_config) plus the positional checkpoints and --max-videos.
    """
    parser = config.build_parser("retrieval", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                        help="checkpoint files to compare; the word 'random' = random initialisation")
    parser.add_argument("--max-videos", type=int, default=0,
                        help="use at most this many test videos, evenly spread over the list (0 = all)")
    args = parser.parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    if "checkpoint" in vars(args):
        raise config.ConfigError("give the checkpoints as positional arguments, not with --checkpoint")
    if args.max_videos < 0:
        raise config.ConfigError(f"--max-videos must be >= 0, got {args.max_videos}")
    flags = ["--config", args.config] if args.config else []
    for key, value in vars(args).items():
        if key not in OWN_FLAGS:
            flags += ["--" + key.replace("_", "-"), value]
    cfg, parsed = config.parse_config("retrieval", flags)
    if "out_dir" not in vars(args) and cfg.out_dir == config.RetrievalConfig().out_dir:
        cfg.out_dir = DEFAULT_OUT_DIR  # not the retrieval job's folder, unless a config file says so
    sources = config.value_sources("retrieval", parsed) if args.print_config else None
    return cfg, list(args.checkpoints), args.max_videos, sources


def main(argv: list[str] | None = None) -> int:
    cfg, checkpoints, max_videos, sources = parse_args(argv)
    if sources is not None:
        print(config.describe(cfg, sources))
        print(f"  {'checkpoints':28s} {checkpoints!r}\n  {'max_videos':28s} {max_videos!r}")
        return 0
    from engine.analysis import run

    run(cfg, checkpoints, max_videos)
    return 0


if __name__ == "__main__":
    run_main(main)
