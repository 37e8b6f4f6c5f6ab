"""Multi-clip video-level evaluation of a classifier (the test protocol of TCLR_SPEC section 7).

Every video of the list is scored exactly once: ``num_clips`` evenly spaced clips, centre crop,
softmax averaged over the clips of a video. Linear evaluation and finetuning use it for their test
split and for model selection on the held-out train videos.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from config import ClassifyConfig
from engine import metrics
from engine.common import RunContext, amp_dtype, autocast, make_loader
from engine.distributed import all_gather_objects
from engine.steps import gather_failures, progress_bar


def eval_batch_size(cfg: ClassifyConfig, num_clips: int) -> int:
    """Videos per evaluation batch per process: cfg.eval_batch_size, or about as many clips as a
    training batch (per_device_batch // num_clips, at least 1)."""
    if cfg.eval_batch_size:
        return cfg.eval_batch_size
    return max(1, cfg.per_device_batch // num_clips)


def eval_loader(cfg: ClassifyConfig, ctx: RunContext, videos: list, num_clips: int):
    """A loader over ``videos`` with ``num_clips`` evenly spaced test clips per video (this
    process's shard, in order)."""
    from dataloaders import batching
    from dataloaders import datasets as ds
    dataset = ds.build_dataset(cfg.data, "eval", videos, cfg.seed, num_clips=num_clips)
    loader, _ = make_loader(dataset, cfg, ctx.dist, train=False,
                            collate_fn=batching.collate_multiclip,
                            batch_size=eval_batch_size(cfg, num_clips))
    return loader


def batch_parts(batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list, list]:
    """(clips on device, labels on device, video ids, decode failures) of a loader batch.

    Training batches (collate_clips) hold "clip" [B, 3, T, S, S]; evaluation batches
    (collate_multiclip) hold "clips" [B, C_clips, 3, T, S, S] and "video_id".
    """
    clips = batch["clip"] if "clip" in batch else batch["clips"]
    ids = batch["video_id"] if "video_id" in batch else batch.get("index", torch.zeros(0))
    return (clips.to(device, non_blocking=True), batch["label"].to(device, non_blocking=True),
            [int(i) for i in ids], list(batch.get("failures", [])))


@dataclass
class EvalResult:
    """Per-video results of a multi-clip evaluation (identical on every process)."""

    video_ids: torch.Tensor     # [V] dataset indices, sorted
    probs: torch.Tensor         # [V, classes] softmax averaged over each video's clips
    labels: torch.Tensor        # [V]
    num_listed: int             # videos in the list evaluated
    failures: list = field(default_factory=list)   # (path, reason) of videos that failed

    @property
    def num_videos(self) -> int:
        return int(self.video_ids.numel())

    def accuracy(self) -> dict[int, float]:
        return metrics.topk_accuracy(self.probs, self.labels, (1, 5))


@torch.no_grad()
def evaluate(ctx: RunContext, model: nn.Module, loader, num_classes: int, desc: str) -> EvalResult:
    """Multi-clip evaluation of every video of ``loader``'s dataset, exactly once.

    Each process scores its shard; the per-video probabilities are gathered by video id, so the
    DistributedSampler's padding copies are counted once. Pass the plain (unwrapped) model: the
    shards may differ in length by a batch, and DDP's forward would wait for the other processes.
    """
    cfg: ClassifyConfig = ctx.cfg
    device, dtype = ctx.device, amp_dtype(cfg.amp, ctx.device)
    model.eval()
    acc = metrics.VideoScoreAccumulator(num_classes)
    failures: list = []
    for batch in progress_bar(ctx, desc, iterable=loader):
        clips, labels, ids, bad = batch_parts(batch, device)     # [B, C, 3, T, S, S]
        failures.extend(tuple(f) for f in bad)
        if clips.shape[0] == 0:
            continue
        b, c = clips.shape[:2]
        with autocast(device, dtype):
            logits = model(clips.flatten(0, 1))                   # [B*C, classes]
        probs = metrics.clip_softmax_average(logits.view(b, c, -1),    # [B, classes]
                                             batch.get("clip_mask"))
        acc.add(ids, probs, labels.tolist())
    merged = metrics.VideoScoreAccumulator(num_classes)
    for state in all_gather_objects(acc.state()):
        merged.merge(metrics.VideoScoreAccumulator.from_state(state, num_classes))
    failures = sorted(set(gather_failures(failures)))
    ids, probs, labels = merged.result()
    return EvalResult(ids, probs, labels, num_listed=len(loader.dataset), failures=failures)
