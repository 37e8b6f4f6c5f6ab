"""Labelled subsets of a train split: the held-out validation videos and the label fraction.

Both draws are stratified by class and seeded, so the same seed gives the same videos on every
machine, and smaller fractions give subsets of larger ones (TCLR_SPEC section 7).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from atomic_io import write_text


def stratified_pick(videos: list, fraction: float, seed: int, stream: int,
                    keep_min: int = 0, take_min: int = 0) -> tuple[list, list]:
    """Pick ``fraction`` of the videos of every class, at random (seeded).

    Per class with n videos, round(fraction * n) videos are picked, at least ``take_min`` and at
    most n - ``keep_min``. The class's videos are shuffled once by (seed, stream, class) and the
    first ones taken, so smaller fractions give subsets of larger ones with the same seed.

    Args:
        videos: list of (path, label).
        fraction: share of each class to pick, in [0, 1].
        seed, stream: the random seed, and a stream number that separates independent draws.
        keep_min: videos per class that must stay unpicked (when the class has more than that).
        take_min: videos per class that must be picked (when the class has that many).
    Returns:
        (picked, rest), each in the input order.
    """
    by_class: dict[int, list[int]] = {}
    for i, (_path, label) in enumerate(videos):
        by_class.setdefault(int(label), []).append(i)
    picked: set[int] = set()
    for label, idx in sorted(by_class.items()):
        n = len(idx)
        count = int(math.floor(fraction * n + 0.5))
        count = max(count, min(take_min, n))
        count = min(count, max(0, n - keep_min)) if n > keep_min else min(count, n)
        rng = np.random.default_rng([seed, stream, label])
        picked.update(idx[j] for j in rng.permutation(n)[:count])
    return ([v for i, v in enumerate(videos) if i in picked],
            [v for i, v in enumerate(videos) if i not in picked])


def split_train_videos(videos: list, cfg: Any) -> tuple[list, list]:
    """(labelled training videos, validation videos) from the train split.

    Validation (select=val): ``val_fraction`` of every class (at least one video per class, and
    at least one left for training), drawn first, so the validation set does not depend on the
    label fraction. Then ``label_fraction`` of every class of the remainder (at least one video
    per class) is kept as the labelled training set.

    Args:
        videos: the train split's (path, label) list.
        cfg: a classification config (its ``select``, ``val_fraction``, ``label_fraction`` and
            ``seed`` are read).
    """
    val: list = []
    pool = videos
    if cfg.select == "val" and cfg.val_fraction > 0:
        val, pool = stratified_pick(videos, cfg.val_fraction, cfg.seed, stream=0, keep_min=1,
                                    take_min=1)
    if cfg.label_fraction < 1.0:
        labelled, _ = stratified_pick(pool, cfg.label_fraction, cfg.seed, stream=1, take_min=1)
    else:
        labelled = list(pool)
    return labelled, val


def write_video_list(path: Path, videos: list, root: str) -> None:
    """One "<path relative to root> <0-based label>" line per video (label = the last field)."""
    write_text(path, "".join(f"{os.path.relpath(p, root)} {int(y)}\n" for p, y in videos),
               "video list")
