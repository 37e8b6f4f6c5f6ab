"""The pretraining monitor: a downstream signal while TCLR trains (``--monitor-every N``).

At the end of every N-th epoch (and of the run) the loop calls :meth:`Monitor.at_epoch_end`, a
callback in the manner of SlowFast's kNN memory and solo-learn's online kNN, never a second
training loop. It computes, with the current backbone in eval mode, over a fixed *monitor set*:

* nearest-neighbour Recall@1/5 and weighted kNN top-1 (k = 20, cosine similarity, each of the k
  neighbours votes for its class with its similarity), leave-one-out: every monitor video is a
  query against the gallery of the other monitor videos. The set is drawn from the labelled TRAIN
  list only, so nothing about the test split can reach checkpoint choice (``--keep-best monitor``);
* temporal diversity: the mean off-diagonal timestep similarity of the backbone's feature map
  (the quantity of scripts/temporal_diversity.py, computed by engine.analysis's functions).

Features come from engine.features (the one feature path: the retrieval protocol with
``--monitor-clips`` clips); the feature maps for temporal diversity are taken from the same
backbone call by a forward hook, so every clip runs once.

The monitor set: ``--monitor-videos`` videos per class, seeded, at most one video per UCF-style
group (``_gNN_``) while the class has unused groups (so a query's neighbours are not clips of its
own recording), written to ``<run>/monitor_set.json``. A dataset with a single class (a ``folder``
of unlabelled videos) gets temporal diversity only.

State is restored exactly after each call: train/eval flags of every module, buffers (BatchNorm
statistics), the RNG states (a DataLoader iterator draws its base seed from torch's), and the
training loader is never touched; a run with the monitor trains bit-identically to one without.
Under torchrun each process embeds a shard of the set (with rank 0's BatchNorm statistics) and the
features are gathered, so every process ranks the same, whole set.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from engine import checkpoint as ckpt_io
from engine.analysis import mean_off_diagonal, timestep_similarity
from engine.distributed import all_gather_objects, get_world_size
from engine.features import FeatureProtocol, batch_features
from engine.metrics import l2_normalize, retrieval_hits
from user_errors import UserError

SET_FILE = "monitor_set.json"
BEST_FILE = "best.json"            # in checkpoints/: which rule chose best.pth
KNN_K = 20
RECALL_KS = (1, 5)
SCALARS = ("recall@1", "recall@5", "knn_top1", "timestep_similarity", "seconds", "cost_fraction")
_GROUP = re.compile(r"_g(\d+)_c\d+", re.IGNORECASE)


class MonitorError(UserError):
    """The monitor cannot run as configured (the message names the setting and the fix)."""


# --------------------------------------------------------------------------------------------
# The monitor set
# --------------------------------------------------------------------------------------------

def group_of(path: str) -> str:
    """A video's recording group: UCF101-style ``..._gNN_cMM`` names give ``gNN``; else the file."""
    match = _GROUP.search(Path(path).stem)
    return f"g{int(match.group(1))}" if match else str(path)


def draw_monitor_set(train_videos: list, per_class: int, seed: int) -> list[tuple[str, int]]:
    """``per_class`` videos of every class of the train list, seeded, in the list's order.

    Each class's videos are permuted by numpy's default_rng([seed, 30, label]); videos are taken in
    that order, first one per recording group, then (if the class has fewer groups) the rest.

    Args:
        train_videos: [(path, label)] of the TRAIN split (the only videos the monitor may see).
        per_class: videos per class (all of a class's videos when it has fewer).
        seed: the run seed.
    Returns:
        [(path, label)], a subset of ``train_videos``.
    """
    by_class: dict[int, list[int]] = {}
    for i, (_path, label) in enumerate(train_videos):
        by_class.setdefault(int(label), []).append(i)
    chosen: set[int] = set()
    for label, idx in sorted(by_class.items()):
        order = [idx[j] for j in np.random.default_rng([seed, 30, label]).permutation(len(idx))]
        groups: set[str] = set()
        first = []
        for i in order:
            group = group_of(train_videos[i][0])
            if group not in groups:
                groups.add(group)
                first.append(i)
        rest = [i for i in order if i not in set(first)]
        chosen.update((first + rest)[:per_class])
    return [v for i, v in enumerate(train_videos) if i in chosen]


def labelled(videos: list) -> bool:
    """Whether retrieval and kNN can be scored: at least two classes with two videos each."""
    counts: dict[int, int] = {}
    for _path, label in videos:
        counts[int(label)] = counts.get(int(label), 0) + 1
    return sum(c >= 2 for c in counts.values()) >= 2


# --------------------------------------------------------------------------------------------
# The scores
# --------------------------------------------------------------------------------------------

def leave_one_out_neighbours(features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most cosine-similar other rows of every row (the row itself is left out).

    Args:
        features: [N, D], N >= 2.
        k: neighbours wanted (capped at N - 1).
    Returns:
        (indices [N, k'], similarities [N, k']), nearest first; ties go to the lower index.
    """
    unit = l2_normalize(features.double())
    sim = unit @ unit.T                                                # [N, N]
    sim.fill_diagonal_(-math.inf)
    k = min(k, features.shape[0] - 1)
    order = torch.sort(-sim, dim=1, stable=True).indices[:, :k]       # [N, k]
    return order, sim.gather(1, order)


def knn_top1(neighbours: torch.Tensor, similarities: torch.Tensor, gallery_labels: torch.Tensor,
             query_labels: torch.Tensor, num_classes: int) -> float:
    """Weighted kNN top-1 in percent: each neighbour adds its cosine similarity to its class's
    vote; the class with the largest vote is the prediction (a tie goes to the lower class index).

    Args:
        neighbours: [Q, k] gallery indices; similarities: [Q, k] their cosine similarities.
        gallery_labels: [G]; query_labels: [Q]; num_classes: C.
    """
    votes = torch.zeros(neighbours.shape[0], num_classes, dtype=torch.float64)   # [Q, C]
    votes.scatter_add_(1, gallery_labels[neighbours], similarities.double())
    predicted = votes.argmax(dim=1)              # argmax returns the first maximum: lower index
    return 100.0 * float((predicted == query_labels).double().mean())


def knn_k(labels: torch.Tensor, k: int = KNN_K) -> int:
    """The kNN vote's k for a leave-one-out set: ``k``, capped at the smallest class's size minus
    one (at least 1). With a neighbourhood larger than a query's own class can fill, class sizes
    weigh in the vote: on a set of 4 videos per class a query's class has 3 others and every other
    class 4, so with k = 20 over 24 videos and similarities that differ little (as early features'
    do) every query votes for a wrong class, however well the features rank its own class first.
    The paper presets' 101 x 4 videos keep k = 20."""
    smallest = int(torch.bincount(labels)[torch.bincount(labels) > 0].min())
    return max(1, min(k, smallest - 1))


def scores(features: torch.Tensor, labels: torch.Tensor, k: int = KNN_K) -> dict[str, float]:
    """Leave-one-out Recall@1/5 and kNN top-1 (percent) of labelled features [N, D]."""
    neighbours, sims = leave_one_out_neighbours(features, max(k, max(RECALL_KS)))
    hits = retrieval_hits(neighbours, labels, labels, RECALL_KS)        # [N, len(ks)]
    out = {f"recall@{kk}": 100.0 * float(hits[:, i].double().mean())
           for i, kk in enumerate(RECALL_KS)}
    kk = min(k, neighbours.shape[1])
    out["knn_top1"] = knn_top1(neighbours[:, :kk], sims[:, :kk], labels, labels,
                               int(labels.max()) + 1)
    return out


# --------------------------------------------------------------------------------------------
# Exact restore around a call
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def preserved(model: nn.Module):
    """Run the body with ``model``'s mode flags, buffers and every RNG state restored after."""
    modes = {name: m.training for name, m in model.named_modules()}
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    rng = ckpt_io.rng_state()
    try:
        yield
    finally:
        ckpt_io.set_rng_state(rng)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
        for name, m in model.named_modules():
            m.training = modes[name]


def _rank0_buffers(module: nn.Module) -> None:
    """Every process takes process 0's buffers (BatchNorm statistics drift apart under DDP)."""
    if get_world_size() > 1:
        import torch.distributed as dist
        for b in module.buffers():
            dist.broadcast(b.data, src=0)


# --------------------------------------------------------------------------------------------
# The callback
# --------------------------------------------------------------------------------------------

class Monitor:
    """Scores the current backbone on the monitor set; the loop calls :meth:`at_epoch_end`.

    Args:
        cfg: the PretrainConfig (monitor_every, monitor_videos, monitor_clips, eval fields).
        ctx: the RunContext (device, process group, loggers).
        train_videos: the train list the pretraining reads.
        classes: its class names.
    """

    def __init__(self, cfg, ctx, train_videos: list, classes: list):
        from dataloaders.batching import collate_features
        from engine.common import make_loader
        self.cfg, self.ctx = cfg, ctx
        self.videos = draw_monitor_set(train_videos, cfg.monitor_videos, cfg.seed)
        self.num_classes = len(classes)
        self.classes = classes
        self.ranked = labelled(self.videos)
        self.protocol = FeatureProtocol(
            kind="retrieval", num_clips=cfg.monitor_clips, clip_len=cfg.data.clip_len,
            stride=cfg.data.train_stride, resolution=cfg.data.resolution, color=cfg.data.color,
            crop=cfg.data.eval_crop, flip=cfg.data.eval_flip)
        self.diversity = cfg.data.clip_len >= 8        # T' = clip_len / 4 >= 2 timesteps
        dataset = self.protocol.dataset(self.videos, bad_videos="record")
        self.loader, _ = make_loader(dataset, cfg, ctx.dist, train=False,
                                     collate_fn=collate_features,
                                     batch_size=max(1, cfg.per_device_batch))

    def describe(self) -> str:
        what = ("Recall@1/5, kNN top-1 (k=20) leave-one-out and timestep similarity"
                if self.ranked else "timestep similarity only (fewer than 2 labelled classes)")
        return (f"monitor every {self.cfg.monitor_every} epochs: {what} on {len(self.videos)} "
                f"train videos ({self.cfg.monitor_videos} per class, seed {self.cfg.seed}), "
                f"{self.cfg.monitor_clips} clips each")

    def start(self, run_dir: Path) -> None:
        """The run folder is committed: write monitor_set.json (rank 0) and say what runs."""
        if self.ctx.dist.is_main:
            path = self.write_set(run_dir)
            self.ctx.logger.info(f"{self.describe()}; the set: {path}")

    def write_set(self, run_dir: Path) -> Path:
        """monitor_set.json: the protocol and the videos (rank 0); warns when a resumed run's
        earlier set differs (its earlier points were measured on other videos)."""
        path = Path(run_dir) / SET_FILE
        document = {"source": f"{self.cfg.data.dataset} split {self.cfg.data.split} train list "
                              f"under {self.cfg.data.data_root}",
                    "per_class": self.cfg.monitor_videos, "seed": self.cfg.seed,
                    "scored": "leave-one-out Recall@1/5 and kNN top-1" if self.ranked
                    else "timestep similarity only",
                    "protocol": self.protocol.as_dict(),
                    "videos": [[p, int(y)] for p, y in self.videos]}
        if path.is_file():
            before = json.loads(path.read_text()).get("videos")
            if before != document["videos"]:
                self.ctx.logger.warning(f"{path} held another monitor set; the monitor points "
                                        "logged before this resume were measured on it")
        path.write_text(json.dumps(document, indent=1) + "\n")
        return path

    def due(self, epochs_done: int) -> bool:
        """Whether the monitor runs after ``epochs_done`` epochs (every N-th, and the last)."""
        every = self.cfg.monitor_every
        return every > 0 and (epochs_done % every == 0 or epochs_done == self.cfg.epochs)

    def at_epoch_end(self, model: nn.Module, epoch: int, step: int,
                     epoch_seconds: float | None) -> dict[str, Any]:
        """Score ``model``'s backbone; log, TensorBoard; return the monitor dict.

        Args:
            model: the plain TCLRModel (unwrapped); its state is restored exactly after.
            epoch: the 0-based epoch just finished (-1: before the first step, at step 0);
                step: the global step.
            epoch_seconds: the epoch's wall time (for the cost fraction; None before the first
                step, whose record has no cost fraction).
        """
        start = time.perf_counter()
        with preserved(model):
            _rank0_buffers(model)
            values = self.measure(model.backbone)
        if self.ctx.device.type == "cuda":
            torch.cuda.synchronize(self.ctx.device)
        values["seconds"] = time.perf_counter() - start
        values["epoch_seconds"] = epoch_seconds
        values["cost_fraction"] = (None if epoch_seconds is None
                                   else values["seconds"] / max(epoch_seconds, 1e-9))
        self.ctx.jsonl.write({"epoch": epoch, "step": step, "monitor": values,
                              "time": time.time()})
        self.ctx.tb.scalars({k: values[k] for k in SCALARS if values.get(k) is not None}, step,
                            "monitor/")
        return values

    @torch.no_grad()
    def measure(self, backbone: nn.Module) -> dict[str, Any]:
        """The monitor's numbers for ``backbone`` (left in eval mode): every process embeds its
        shard, the shards are gathered, every process scores the whole set."""
        kept: list[torch.Tensor] = []
        hook = backbone.register_forward_hook(lambda _m, _i, out: kept.append(out.detach()))
        mine: dict[int, tuple] = {}
        failed: dict[int, str] = {}
        try:
            from engine.common import amp_dtype
            dtype = amp_dtype(self.cfg.amp, self.ctx.device)
            for batch, feats in batch_features(backbone, self.loader, self.ctx.device, dtype,
                                               self.protocol):
                failed.update({int(v): r for v, r in batch["failed"]})
                if feats.shape[0] == 0:
                    continue
                b, k = batch["clips"].shape[:2]
                fmaps = _maps(kept, b, k)                              # [B, K, C, T']
                for row, vid in enumerate(batch["video_id"].tolist()):
                    sim = None
                    if self.diversity:
                        maps = fmaps[row][batch["clip_mask"][row].to(fmaps.device)]
                        sim = timestep_similarity(maps).cpu()          # [T', T']
                    mine[vid] = (feats[row], int(batch["label"][row]), sim)
        finally:
            hook.remove()
        shards = all_gather_objects((mine, failed))
        merged: dict[int, tuple] = {}
        for part, _ in shards:
            merged.update(part)                  # a padded repeat is the same video, same values
        bad = {v: r for _, f in shards for v, r in f.items()}
        return self._summarise(merged, bad, [len(part) for part, _ in shards])

    def _summarise(self, merged: dict, bad: dict, per_process: list[int]) -> dict[str, Any]:
        ids = sorted(merged)
        out: dict[str, Any] = {"videos": len(ids), "failed": len(bad),
                               "clips": self.cfg.monitor_clips, "videos_per_process": per_process}
        if bad:
            first = sorted(bad.items())[:3]
            self.ctx.logger.warning(f"monitor: {len(bad)} videos could not be decoded and were "
                                    "left out: " + "; ".join(f"{self.videos[v][0]}: {r}"
                                                             for v, r in first))
        labels = torch.tensor([merged[i][1] for i in ids], dtype=torch.long)
        if self.ranked and labelled([(None, y) for y in labels.tolist()]):
            out.update(scores(torch.stack([merged[i][0] for i in ids]), labels,
                              knn_k(labels)))
        else:
            out.update({f"recall@{k}": None for k in RECALL_KS}, knn_top1=None)
        sims = [merged[i][2] for i in ids if merged[i][2] is not None]
        out["timestep_similarity"] = (mean_off_diagonal(torch.stack(sims).mean(dim=0))
                                      if sims else None)
        return out


def _maps(kept: list[torch.Tensor], b: int, k: int) -> torch.Tensor:
    """The feature map the hook kept for the last batch, as float [B, K, C, T']."""
    fmap = kept.pop().float()                                          # [B*K, C, T']
    kept.clear()
    return fmap.view(b, k, *fmap.shape[1:])


# --------------------------------------------------------------------------------------------
# What the loop shows and keeps
# --------------------------------------------------------------------------------------------

def epoch_text(values: dict[str, Any] | None) -> str:
    """The monitor's part of the epoch line ('' when it did not run)."""
    if values is None:
        return ""
    parts = []
    if values.get("recall@1") is not None:
        parts.append(f"R@1 {values['recall@1']:.1f} R@5 {values['recall@5']:.1f} "
                     f"kNN {values['knn_top1']:.1f}")
    if values.get("timestep_similarity") is not None:
        parts.append(f"timestep sim {values['timestep_similarity']:.3f}")
    cost = ("" if values.get("cost_fraction") is None
            else f", {values['cost_fraction']:.1%} of the epoch")
    return " | monitor " + ", ".join(parts) + f" ({values['seconds']:.1f} s{cost})"


def better(values: dict[str, Any] | None, best: float) -> bool:
    """Whether a monitor result beats the best Recall@1 so far (strictly: the first best stays)."""
    return values is not None and values.get("recall@1") is not None and \
        values["recall@1"] > best


def write_best_note(ckpt_dir: Path, rule: str, epoch: int, step: int, loss: float,
                    values: dict[str, Any] | None) -> Path:
    """checkpoints/best.json: which rule (--keep-best) chose best.pth, and its epoch and values."""
    note = {"rule": rule,
            "chosen_by": ("the lowest epoch-mean training loss" if rule == "loss" else
                          "the highest monitor Recall@1 (train-split monitor set)"),
            "epoch": epoch + 1, "step": step, "loss_total": loss,
            "monitor_recall@1": None if values is None else values.get("recall@1")}
    path = Path(ckpt_dir) / BEST_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(note, indent=1) + "\n")
    tmp.replace(path)
    return path


def build_monitor(cfg, ctx) -> Monitor | None:
    """The monitor of a pretraining run over the train list it reads, or None with
    --monitor-every 0. Builds nothing in the run folder (see :meth:`Monitor.start`).

    Raises:
        MonitorError: --keep-best monitor on a dataset without two labelled classes.
    """
    if cfg.monitor_every <= 0:
        return None
    from dataloaders.splits import build_video_list
    d = cfg.data
    train_videos, classes = build_video_list(d.dataset, d.data_root, split=d.split, subset="train")
    monitor = Monitor(cfg, ctx, train_videos, classes)
    if cfg.keep_best == "monitor" and not monitor.ranked:
        raise MonitorError(f"--keep-best monitor: the {cfg.data.dataset} train list under "
                           f"{cfg.data.data_root} has fewer than 2 classes with 2 videos, so the "
                           "monitor has no Recall@1 to choose by; use --keep-best loss")
    return monitor
