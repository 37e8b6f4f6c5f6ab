"""Temporal diversity of backbone features: how alike the timesteps of a clip's feature map are.

TCLR (Dave et al., "TCLR: Temporal Contrastive Learning for Video Representation", CVIU 2022)
argues that its local-local and global-local losses make the T' timesteps of the final feature map
differ from each other, where plain instance-contrastive features become nearly constant over time.
The measure here: for each clip, the cosine similarity between every pair of the T' timestep
vectors of the backbone's space-pooled feature map [C, T'] gives a T' x T' matrix; it is averaged
over the clips of a video, then over videos (each video counts once). The summary number is the
mean off-diagonal entry: 1 when every timestep carries the same direction, lower when they differ.
The backbones end in ReLU, so the features are non-negative and every similarity lies in [0, 1].
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from atomic_io import write_json
from config import ConfigError, RetrievalConfig
from engine.common import (RunContext, amp_dtype, autocast, ensure_dataset, make_loader, run_job,
                           seed_everything)
from engine.rundir import checkpoint_recipe, file_sha256

RANDOM_INIT = "random"  # command-line word for a randomly initialised backbone
RESULTS_FILE = "temporal_diversity.json"


def timestep_similarity(fmap: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between the timesteps of feature maps, averaged over the maps.

    Args:
        fmap: [N, C, T'] (N clips, C channels, T' timesteps), N >= 1.

    Returns:
        float64 [T', T'] on fmap's device; entry (i, j) = mean over n of
        cos(fmap[n, :, i], fmap[n, :, j]). A timestep whose C features are all zero counts as
        similarity 0 to every timestep, itself included.
    """
    if fmap.dim() != 3 or fmap.shape[0] == 0:
        raise ValueError(f"timestep_similarity expects feature maps [N >= 1, C, T'], got {tuple(fmap.shape)}")
    unit = F.normalize(fmap.double(), dim=1)  # [N, C, T'], unit vectors along C
    return torch.einsum("nci,ncj->ij", unit, unit) / fmap.shape[0]  # [T', T']


def mean_off_diagonal(similarity: torch.Tensor) -> float:
    """Mean of the entries (i, j), i != j, of a square matrix [T', T'] with T' >= 2."""
    if similarity.dim() != 2 or similarity.shape[0] != similarity.shape[1] or similarity.shape[0] < 2:
        raise ValueError(
            f"mean_off_diagonal expects a square matrix of side >= 2, got {tuple(similarity.shape)} "
            "(a feature map with one timestep has no pairs of timesteps; use longer clips)"
        )
    t = similarity.shape[0]
    total = similarity.double().sum() - similarity.double().diagonal().sum()
    return float(total / (t * (t - 1)))


class SimilarityAccumulator:
    """Running per-video average of timestep_similarity: each video's clips are averaged first,
    then the videos, so a video counts once whatever its number of clips."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None  # [T', T'] float64, sum over videos
        self.num_videos = 0

    def add(self, fmaps: torch.Tensor, clip_mask: torch.Tensor | None = None) -> None:
        """Add a batch of videos.

        Args:
            fmaps: [B, clips, C, T'] feature maps of B videos.
            clip_mask: bool [B, clips], the clips to use (MultiClipDataset's "clip_mask"); None = all.
        """
        for row, video in enumerate(fmaps):  # [clips, C, T']
            if clip_mask is not None:
                video = video[clip_mask[row].to(video.device)]
            matrix = timestep_similarity(video).cpu()  # [T', T']
            self.total = matrix if self.total is None else self.total + matrix
            self.num_videos += 1

    def result(self) -> torch.Tensor:
        """The average matrix [T', T'] (float64, CPU)."""
        if self.total is None:
            raise ValueError("no videos were added: the test list is empty")
        return self.total / self.num_videos


@torch.no_grad()
def clip_feature_maps(
    backbone: nn.Module, clips: torch.Tensor, amp: torch.dtype | None = None
) -> torch.Tensor:
    """Space-pooled feature maps of every clip of a batch of videos (backbone in its current mode).

    Args:
        backbone: [N, 3, T, H, W] -> [N, C, T'].
        clips: [B, clips, 3, T, H, W] on the backbone's device.
        amp: autocast dtype, or None for float32.

    Returns:
        float32 [B, clips, C, T'].
    """
    b, c = clips.shape[:2]
    with autocast(clips.device, amp):
        fmap = backbone(clips.flatten(0, 1))  # [B * clips, C, T']
    return fmap.float().view(b, c, *fmap.shape[1:])  # [B, clips, C, T']


def temporal_similarity(
    backbones: Mapping[str, nn.Module],
    loader,
    device: torch.device,
    amp: torch.dtype | None = None,
    progress: bool = False,
) -> dict[str, SimilarityAccumulator]:
    """Timestep similarity of several backbones over the same videos, each video decoded once.

    Args:
        backbones: label -> backbone (already on `device`; put in eval mode here).
        loader: yields batches with "clips" [B, clips, 3, T, S, S] (e.g. MultiClipDataset's).
        device: where the backbones run.
        amp: autocast dtype or None.
        progress: show a tqdm bar.

    Returns:
        label -> SimilarityAccumulator (call .result() for the [T', T'] matrix).
    """
    results = {label: SimilarityAccumulator() for label in backbones}
    for backbone in backbones.values():
        backbone.eval()
    for batch in tqdm(loader, desc="videos", disable=not progress, leave=False, dynamic_ncols=True):
        clips = batch["clips"].to(device, non_blocking=True)  # [B, clips, 3, T, S, S]
        for label, backbone in backbones.items():
            results[label].add(clip_feature_maps(backbone, clips, amp), batch.get("clip_mask"))
    return results


def evenly_spaced(items: Sequence, limit: int) -> list:
    """At most `limit` items spread evenly over the list (all of them when limit <= 0 or larger).

    Test lists are ordered by class, so an even spread keeps every class represented.
    """
    if limit <= 0 or limit >= len(items):
        return list(items)
    picks = np.unique(np.linspace(0, len(items) - 1, limit).round().astype(int))
    return [items[i] for i in picks]


def similarity_figure(document: Mapping[str, Any], labels: Sequence[str] | None = None):
    """The similarity heatmaps of a temporal_diversity document (all checkpoints, or ``labels``)
    side by side on the shared scale [0, 1], as a matplotlib figure."""
    from engine.visualize import similarity_figure as figure

    entries = [e for e in document["checkpoints"] if labels is None or e["label"] in labels]
    videos = document["protocol"]["videos"]
    title = (f"cosine similarity of the {len(entries[0]['matrix'])} feature-map timesteps, mean "
             f"over {videos} test videos\n(1 = timesteps alike; lower off-diagonal = more "
             "temporal diversity)")
    return figure({e["label"]: np.asarray(e["matrix"]) for e in entries},
                  {e["label"]: e["mean_offdiag"] for e in entries}, title)


# --------------------------------------------------------------------------------------------
# The job: several checkpoints over the test videos of one dataset
# --------------------------------------------------------------------------------------------


def checkpoint_labels(checkpoints: Sequence[str]) -> list[str]:
    """Short unique names for file names and TensorBoard tags.

    "random" stays "random"; runs/tclr/checkpoints/best.pth becomes "tclr_best" (the run folder
    names files that every run has); other paths give their stem. Repeats get a "_2", "_3", ...
    """
    labels: list[str] = []
    for name in checkpoints:
        path = Path(name)
        if name == RANDOM_INIT:
            label = RANDOM_INIT
        elif path.parent.name == "checkpoints" and path.parent.parent.name:
            label = f"{path.parent.parent.name}_{path.stem}"
        else:
            label = path.stem or "checkpoint"
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)
        unique, n = label, 1
        while unique in labels:
            n += 1
            unique = f"{label}_{n}"
        labels.append(unique)
    return labels


def load_backbones(cfg: RetrievalConfig, checkpoints: Sequence[str], ctx: RunContext) -> dict[str, tuple]:
    """label -> (backbone on ctx.device, init info from models.weights.init_backbone).

    Every backbone is built from cfg.seed, so "random" is the same network on every run.
    """
    from engine.checkpoint import require_finite
    from models import build_initialised_backbone

    loaded = {}
    for label, name in zip(checkpoint_labels(checkpoints), checkpoints):
        seed_everything(cfg.seed)
        one = dataclasses.replace(cfg, checkpoint="" if name == RANDOM_INIT else name)
        backbone, info = build_initialised_backbone(one, ctx.logger, require_finite)
        loaded[label] = (backbone.to(ctx.device).eval(), info)
    return loaded


def build_test_loader(cfg: RetrievalConfig, ctx: RunContext, max_videos: int = 0):
    """The evaluation clip protocol (spec section 7) over the test list: num_clips clips per video,
    clip_len frames at train_stride, centre crop 0.8; at most max_videos videos, evenly spread."""
    from dataloaders.batching import collate_multiclip
    from dataloaders.datasets import build_dataset
    from dataloaders.splits import build_video_list

    d = cfg.data
    ensure_dataset(cfg, ctx.logger)
    videos, _ = build_video_list(d.dataset, d.data_root, split=d.split, subset="test")
    videos = evenly_spaced(videos, max_videos)
    dataset = build_dataset(d, "eval", videos, cfg.seed, num_clips=cfg.num_clips)
    loader, _ = make_loader(dataset, cfg, ctx.dist, train=False, collate_fn=collate_multiclip,
                            batch_size=cfg.batch_size)
    return loader


def run(cfg: RetrievalConfig, checkpoints: Sequence[str], max_videos: int = 0) -> dict[str, Any]:
    """Measure temporal diversity for each checkpoint ("random" = random initialisation); write
    similarity_<label>.png, similarity_all.png, temporal_diversity.json and TensorBoard to cfg.out_dir.

    Returns:
        The JSON document: {"protocol": {...}, "checkpoints": [{"label", "checkpoint", "matrix",
        "mean_offdiag", "num_videos", "init"}, ...]} in the order given.
    """
    if not checkpoints:
        raise ConfigError("name at least one checkpoint (or 'random' for a randomly initialised backbone)")
    if cfg.data.clip_len < 8:
        raise ConfigError(f"config key 'clip_len': {cfg.data.clip_len} leaves one timestep (clip_len / 4); "
                          "temporal diversity needs at least 2, i.e. clip_len >= 8")

    def body(cfg: RetrievalConfig, ctx: RunContext) -> dict[str, Any]:
        if ctx.dist.distributed:
            raise ConfigError("temporal_diversity runs as one process: launch it with python, not torchrun")
        backbones = load_backbones(cfg, checkpoints, ctx)  # first: a bad checkpoint fails fast
        loader = build_test_loader(cfg, ctx, max_videos)
        ctx.commit()  # start-up succeeded: from here on the run folder is written
        sims = temporal_similarity({label: bb for label, (bb, _) in backbones.items()}, loader, ctx.device,
                                   amp_dtype(cfg.amp, ctx.device), progress=cfg.progress)
        entries = [
            {"label": label, "checkpoint": name, "matrix": acc.result().tolist(),
             "mean_offdiag": mean_off_diagonal(acc.result()), "num_videos": acc.num_videos,
             "init": backbones[label][1],
             "checkpoint_sha256": "random" if name == RANDOM_INIT else file_sha256(name),
             "checkpoint_recipe": None if name == RANDOM_INIT else checkpoint_recipe(name)}
            for (label, acc), name in zip(sims.items(), checkpoints)
        ]
        document = {"protocol": _protocol(cfg, len(loader.dataset)), "checkpoints": entries}
        write_outputs(ctx, document)
        return document

    return run_job(cfg, "temporal diversity", body, kind="temporal_diversity",
                   checkpoints=tuple(checkpoints),
                   extra_banner={"checkpoints": ", ".join(checkpoints)})


def _protocol(cfg: RetrievalConfig, num_videos: int) -> dict[str, Any]:
    d = cfg.data
    return {"dataset": d.dataset, "data_root": d.data_root, "split": d.split, "subset": "test",
            "videos": num_videos, "backbone": cfg.backbone, "width": cfg.width, "clip_len": d.clip_len,
            "stride": d.train_stride, "num_clips": cfg.num_clips, "resolution": d.resolution,
            "color": d.color, "crop": f"centre {d.eval_crop:g}", "seed": cfg.seed}


def write_outputs(ctx: RunContext, document: dict[str, Any]) -> None:
    """Heatmap PNGs (one per checkpoint, and all side by side), the JSON, TensorBoard, a log table."""
    from engine.visualize import save_figure

    lines = [f"{'checkpoint':40s} {'mean off-diagonal similarity':>28s} {'videos':>7s}"]
    for step, entry in enumerate(document["checkpoints"]):
        label = entry["label"]
        save_figure(similarity_figure(document, [label]), ctx.run_dir / f"similarity_{label}.png",
                    ctx.tb.writer, f"temporal_diversity/{label}")
        # one scalar tag for all checkpoints (x = position on the command line) and one per label
        ctx.tb.scalars({"temporal_diversity/mean_offdiag": entry["mean_offdiag"]}, step)
        ctx.tb.scalars({f"temporal_diversity/mean_offdiag_{label}": entry["mean_offdiag"]}, 0)
        lines.append(f"{label:40s} {entry['mean_offdiag']:28.4f} {entry['num_videos']:7d}")
    save_figure(similarity_figure(document), ctx.run_dir / "similarity_all.png")
    path = ctx.run_dir / RESULTS_FILE
    write_json(path, document)
    ctx.logger.info("temporal diversity (lower = timesteps differ more):\n" + "\n".join(lines)
                    + f"\nwrote {path} and similarity_*.png in {ctx.run_dir}")
