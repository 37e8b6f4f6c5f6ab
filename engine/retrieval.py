"""Nearest-neighbour video retrieval (TCLR_SPEC section 7).

Protocol: a video's feature is the backbone's feature map [C, T'] flattened to C*T' (2048 for the
paper's backbones), averaged over ``num_clips`` (9) evenly spaced clips (16 frames at stride 2,
centre crop 0.8, no flip), then L2-normalised. Test videos query the train gallery by cosine
similarity; Recall@k counts a query as a hit when any of its k nearest gallery videos has its
class. The backbone runs in eval mode (BatchNorm running statistics). The features are computed by
engine.features (FeatureProtocol kind "retrieval"), the one implementation that extract_features.py
uses too; ``video_features`` is re-exported here for callers of the former location.

Features are cached on disk under a key that names everything they depend on (checkpoint file
identity, architecture, dataset, split, subset and list of videos, clip protocol, channel order,
precision), so re-running with other k values does no forward pass.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from atomic_io import write_json, write_text
from config import RetrievalConfig
from engine import checkpoint as ckpt_io
from engine import metrics
from engine.common import (RunContext, amp_dtype, ensure_dataset, make_loader, run_job,
                           seed_everything)
from engine.distributed import all_gather_objects, barrier
from engine.errors import NonFiniteWeightsError
from engine.features import (FeatureProtocol, batch_features,  # noqa: F401
                             video_features, video_identity)
from engine.rundir import file_sha256, provenance
from models.weights import check_checkpoint_file

CACHE_VERSION = 2   # 2: keyed by checkpoint content and each video's size and mtime


@dataclass
class FeatureSet:
    """L2-normalised per-video features of one subset, in the order of its video list."""

    features: torch.Tensor      # [N, C*T'] float32
    labels: torch.Tensor        # [N]
    paths: list                 # [N] absolute video paths
    from_cache: bool = False


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def extract_features(ctx: RunContext, backbone: nn.Module, loader, desc: str,
                     protocol: FeatureProtocol | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of every video of ``loader``'s dataset, each exactly once
    (engine.features.batch_features: the features of extract_features.py too).

    Every process handles its DistributedSampler shard; the rows are gathered by video id (the
    sampler's padding repeats a few videos; the repeats are dropped).

    Returns:
        (features [N, D], labels [N]) in dataset order, identical on every process.
    Raises:
        RuntimeError: if a video of the dataset was not seen by any process.
    """
    cfg = ctx.cfg
    protocol = protocol or FeatureProtocol.from_config(cfg)
    rows: dict[int, tuple[torch.Tensor, int]] = {}
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True,
               disable=not (ctx.dist.is_main and cfg.progress))
    for batch, feats in batch_features(backbone, bar, ctx.device, amp_dtype(cfg.amp, ctx.device),
                                       protocol):                   # feats [B, D]
        for vid, f, y in zip(batch["video_id"].tolist(), feats, batch["label"].tolist()):
            rows.setdefault(int(vid), (f, int(y)))
    merged: dict[int, tuple[torch.Tensor, int]] = {}
    for part in all_gather_objects(rows):
        for vid, row in part.items():
            merged.setdefault(vid, row)
    n = len(loader.dataset)
    absent = sorted(set(range(n)) - set(merged))
    if absent:
        raise RuntimeError(f"{desc}: {len(absent)} of {n} videos were not processed "
                           f"(first ids {absent[:5]}); this is a bug in the sharding")
    features = torch.stack([merged[i][0] for i in range(n)])          # [N, D]
    labels = torch.tensor([merged[i][1] for i in range(n)], dtype=torch.long)
    return features, labels


# --------------------------------------------------------------------------------------------
# Feature cache
# --------------------------------------------------------------------------------------------

def checkpoint_identity(cfg: RetrievalConfig) -> dict[str, Any]:
    """What identifies the weights: the checkpoint file's content (sha256; a file rewritten in
    place with other weights is another checkpoint) or, for random initialisation, the seed."""
    if not cfg.checkpoint:
        return {"init": "random", "seed": cfg.seed}
    p = Path(cfg.checkpoint).resolve()
    if p.is_dir():
        raise ckpt_io.CheckpointError(f"--checkpoint {cfg.checkpoint} is a directory, not a "
                                      "checkpoint file (a run's are in its checkpoints/ folder)")
    if not p.is_file():
        raise ckpt_io.CheckpointError(f"--checkpoint {cfg.checkpoint}: no such file")
    check_checkpoint_file(p)   # unreadable, or a JSON/text file: say so before hashing it
    return {"init": "checkpoint", "path": str(p), "sha256": file_sha256(p)}


def cache_key(cfg: RetrievalConfig, subset: str, videos: list, device: torch.device
              ) -> dict[str, Any]:
    """Everything a subset's features depend on, as a JSON-able dict."""
    d = cfg.data
    listing = hashlib.sha256("\n".join(f"{video_identity(p)}\t{y}" for p, y in videos).encode()
                             ).hexdigest()
    dtype = amp_dtype(cfg.amp, device)
    return {
        "version": CACHE_VERSION, "weights": checkpoint_identity(cfg),
        "backbone": cfg.backbone, "width": cfg.width,
        "dataset": d.dataset, "data_root": str(Path(d.data_root).resolve()), "split": d.split,
        "subset": subset, "videos_sha256": listing, "num_videos": len(videos),
        "num_clips": cfg.num_clips, "clip_len": d.clip_len, "stride": d.train_stride,
        "resolution": d.resolution, "color": d.color, "crop": d.eval_crop, "flip": d.eval_flip,
        "precision": str(dtype) if dtype is not None else "float32",
    }


def why_valid(key: dict[str, Any]) -> str:
    """Why a cache file with this key holds the features this run would compute."""
    weights = key["weights"]
    what = (f"checkpoint content sha256 {weights['sha256'][:12]}" if weights["init"] == "checkpoint"
            else f"random initialisation, seed {weights['seed']}")
    return (f"same {what}, same {key['num_videos']} videos (path, size and mtime of each), same "
            f"protocol ({key['num_clips']} clips of {key['clip_len']} frames at stride "
            f"{key['stride']}, {key['resolution']} px, {key['color']}, {key['precision']})")


def cache_file(cfg: RetrievalConfig, key: dict[str, Any]) -> Path:
    """<cache_dir>/<subset>-<hash of the key>.pt."""
    folder = Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.out_dir) / "features"
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return folder / f"{key['subset']}-{digest}.pt"


def load_cached(path: Path, key: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(features, labels) from a cache file whose stored key equals ``key``; None otherwise."""
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError):
        return None              # a damaged cache file is recomputed, never trusted
    if not isinstance(data, dict) or data.get("key") != json.loads(json.dumps(key)):
        return None
    return data["features"], data["labels"]


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

class _LazyBackbone:
    """Builds and loads the backbone only when some features are not cached."""

    def __init__(self, cfg: RetrievalConfig, ctx: RunContext):
        self.cfg, self.ctx = cfg, ctx
        self.module: nn.Module | None = None
        self.init: dict[str, Any] | None = None

    def get(self) -> nn.Module:
        if self.module is None:
            from models import build_initialised_backbone
            seed_everything(self.cfg.seed)
            backbone, self.init = build_initialised_backbone(self.cfg, self.ctx.logger,
                                                             ckpt_io.require_finite)
            self.module = backbone.to(self.ctx.device).eval()
        return self.module


def require_finite_features(features: torch.Tensor, cfg: RetrievalConfig, what: str) -> None:
    """Recall@k of NaN features is a number that means nothing: refuse them, naming the weights."""
    rows = int((~torch.isfinite(features)).any(dim=1).sum())
    if rows:
        source = cfg.checkpoint or f"the random initialisation (seed {cfg.seed})"
        raise NonFiniteWeightsError(f"{what}: {rows} of {features.shape[0]} videos have NaN or "
                                    f"inf features from {source}; nothing was reported")


def feature_loader(cfg: RetrievalConfig, ctx: RunContext, videos: list):
    """The loader of retrieval's feature pass over ``videos``: the protocol's clips, this
    process's DistributedSampler shard, ``per_device_batch`` videos per batch."""
    from dataloaders import batching
    dataset = FeatureProtocol.from_config(cfg).dataset(videos)
    loader, _ = make_loader(dataset, cfg, ctx.dist, train=False,
                            collate_fn=batching.collate_multiclip, batch_size=cfg.per_device_batch)
    return loader


def subset_features(cfg: RetrievalConfig, ctx: RunContext, lazy: _LazyBackbone, subset: str,
                    videos: list) -> FeatureSet:
    """Features of one subset, from the cache when its key matches, else computed and cached."""
    key = cache_key(cfg, subset, videos, ctx.device)
    path = cache_file(cfg, key)
    cached = load_cached(path, key)
    if cached is not None:
        require_finite_features(cached[0], cfg, f"{subset} features cached in {path}")
        ctx.logger.info(f"{subset}: reusing cached features {path}: {why_valid(key)}")
        return FeatureSet(cached[0], cached[1], [p for p, _ in videos], from_cache=True)
    t0 = time.time()
    features, labels = extract_features(ctx, lazy.get(), feature_loader(cfg, ctx, videos),
                                        f"features {subset}")
    require_finite_features(features, cfg, f"{subset} features")
    ctx.logger.info(f"{subset}: extracted features of {len(videos)} videos x {cfg.num_clips} clips "
                    f"in {time.time() - t0:.1f} s -> {path}")
    if ctx.dist.is_main:
        ckpt_io.atomic_save({"key": key, "features": features, "labels": labels}, path,
                            "feature cache")
    barrier()
    return FeatureSet(features, labels, [p for p, _ in videos])


def run(cfg: RetrievalConfig) -> dict:
    """Retrieval as configured; returns the results dict (also results.json)."""
    return run_job(cfg, "nearest-neighbour retrieval", _run)


def _run(cfg: RetrievalConfig, ctx: RunContext) -> dict:
    from dataloaders.datasets import check_eval_lengths
    from dataloaders.splits import build_video_list, check_split_lists, require_classes
    from engine.rundir import check_writable_dir
    ensure_dataset(cfg, ctx.logger)
    d = cfg.data
    gallery_videos, class_names = build_video_list(d.dataset, d.data_root, split=d.split,
                                                   subset="train")
    query_videos, _ = build_video_list(d.dataset, d.data_root, split=d.split, subset="test")
    for note in check_split_lists(gallery_videos, query_videos,
                                  f"{d.dataset} split {d.split} under {d.data_root}"):
        ctx.logger.warning(note)
    require_classes(gallery_videos, query_videos, f"{d.dataset} split {d.split} under {d.data_root}")
    check_writable_dir(cache_file(cfg, {"subset": ""}).parent, "--cache-dir")
    lazy = _LazyBackbone(cfg, ctx)
    to_extract = [(subset, videos) for subset, videos in (("train", gallery_videos),
                                                          ("test", query_videos))
                  if not cache_file(cfg, cache_key(cfg, subset, videos, ctx.device)).is_file()]
    if to_extract:   # checked now, so that a bad video or checkpoint is a failed start
        for subset, videos in to_extract:
            check_eval_lengths(videos, d.clip_len, d.train_stride,
                               f"{d.dataset} split {d.split} {subset}")
        lazy.get()
    ctx.commit()     # start-up succeeded: from here on the run folder is written
    gallery = subset_features(cfg, ctx, lazy, "train", gallery_videos)
    queries = subset_features(cfg, ctx, lazy, "test", query_videos)
    recalls, neighbours, notes = metrics.recall_at_k(queries.features, queries.labels,
                                                     gallery.features, gallery.labels, cfg.ks)
    hits = metrics.retrieval_hits(neighbours, queries.labels, gallery.labels, cfg.ks)  # [Q, ks]
    results = build_results(cfg, recalls, queries, gallery, notes, hits)
    if ctx.dist.is_main:
        write_outputs(ctx, results, queries, gallery, class_names, hits)
    return results


def protocol_text(cfg: RetrievalConfig) -> str:
    d = cfg.data
    return (f"nearest-neighbour retrieval: backbone feature map [C, T'] flattened, averaged over "
            f"{cfg.num_clips} clips/video ({d.clip_len} frames stride {d.train_stride}, centre "
            f"crop {d.eval_crop:g} -> {d.resolution}px, {'flipped' if d.eval_flip else 'no flip'}), "
            "L2-normalised; test videos query the train "
            "gallery by cosine similarity; Recall@k = any of the k nearest has the query's class")


def build_results(cfg: RetrievalConfig, recalls: dict[int, float], queries: FeatureSet,
                  gallery: FeatureSet, notes: list[str], hits: torch.Tensor | None = None) -> dict:
    """results.json: Recall@k rounded to 0.01 points, with the exact hit counts beside them
    (``recall@k_hits`` of ``num_queries``; ``hits`` is bool [Q, len(ks)] from
    ``metrics.retrieval_hits``)."""
    d = cfg.data
    ident = checkpoint_identity(cfg)
    results: dict[str, Any] = {"job": "retrieval"}
    results.update({f"recall@{k}": metrics.round_percent(v) for k, v in recalls.items()})
    if hits is not None:
        results.update({f"recall@{k}_hits": int(hits[:, i].sum()) for i, k in enumerate(cfg.ks)})
    results.update({
        "num_queries": int(queries.features.shape[0]),
        "num_gallery": int(gallery.features.shape[0]),
        "protocol": protocol_text(cfg), "checkpoint": cfg.checkpoint or None,
        "init": ident["init"], "dataset": d.dataset, "data_root": d.data_root, "split": d.split,
        "seed": cfg.seed, "backbone": cfg.backbone, "width": cfg.width, "color": d.color,
        "resolution": d.resolution, "num_clips": cfg.num_clips,
        "feature_dim": int(queries.features.shape[1]),
        "features_from_cache": bool(queries.from_cache and gallery.from_cache),
        "notes": notes,
        # what made this result: checkpoint sha256 / "random", seed, protocol config, split files
        "provenance": provenance(cfg),
    })
    return results


def summary_line(results: dict, ks) -> str:
    recalls = " ".join(f"R@{k} {results[f'recall@{k}']:.2f}%" for k in ks)
    return (f"retrieval | {results['dataset']} split {results['split']} | init {results['init']}"
            f"{' ' + results['checkpoint'] if results['checkpoint'] else ''} | {recalls} | "
            f"{results['num_queries']} queries vs {results['num_gallery']} gallery videos")


def write_outputs(ctx: RunContext, results: dict, queries: FeatureSet, gallery: FeatureSet,
                  class_names: list, hits: torch.Tensor | None = None) -> None:
    """results.json, per_class_recall.csv, the Recall@k curve and the picture grid (PNG +
    TensorBoard) and the embedding projector data."""
    cfg: RetrievalConfig = ctx.cfg
    if cfg.num_grid_queries > 0:
        write_grid(ctx, queries, gallery, class_names)
    if hits is not None:
        recall, support = metrics.per_class_recall(hits, queries.labels, len(class_names))
        metrics.write_per_class_recall_csv(ctx.run_dir / "per_class_recall.csv", class_names,
                                           cfg.ks, recall, support)
    write_recall_curve(ctx, results, queries, gallery)
    if cfg.embedding_points > 0 and ctx.tb.writer is not None:
        pick = np.unique(np.linspace(0, len(queries.paths) - 1,
                                     min(cfg.embedding_points, len(queries.paths))).astype(int))
        # a rerun into the same folder replaces the projector data instead of warning about it
        shutil.rmtree(Path(ctx.tb.writer.log_dir) / "00000" / "test_features", ignore_errors=True)
        ctx.tb.writer.add_embedding(queries.features[pick],
                                    metadata=[class_names[int(queries.labels[i])] for i in pick],
                                    tag="test_features", global_step=0)
    if ctx.tb.writer is not None:
        ctx.tb.scalars({k: v for k, v in results.items()
                        if k.startswith("recall@") and not k.endswith("_hits")}, 0, "retrieval/")
    write_json(ctx.run_dir / "results.json", results)
    for note in results["notes"]:
        ctx.logger.info(f"note: {note}")
    ctx.logger.info(summary_line(results, cfg.ks))


def write_recall_curve(ctx: RunContext, results: dict, queries: FeatureSet,
                       gallery: FeatureSet) -> Path:
    """recall_at_k.png: Recall@k against k beside a random ranking's (also in TensorBoard)."""
    from engine import visualize
    cfg: RetrievalConfig = ctx.cfg
    recalls = {k: results[f"recall@{k}"] for k in cfg.ks}
    chance = metrics.chance_recall_at_k(queries.labels, gallery.labels, cfg.ks)
    init = f"checkpoint {cfg.checkpoint}" if cfg.checkpoint else "random init"
    title = (f"Recall@k, {init}\n{results['dataset']} split {results['split']}: "
             f"{results['num_queries']} test queries vs {results['num_gallery']} train videos")
    fig = visualize.recall_curve_figure(recalls, chance, title)
    return visualize.save_figure(fig, ctx.run_dir / "recall_at_k.png", ctx.tb.writer,
                                 "retrieval/recall_at_k")


def grid_queries(num_queries: int, count: int) -> list[int]:
    """Evenly spaced query indices (deterministic, spread over the classes of an ordered list)."""
    if count <= 0 or num_queries == 0:
        return []
    picks = np.linspace(0, num_queries - 1, min(count, num_queries)).astype(int)
    return sorted(set(picks.tolist()))


def write_grid(ctx: RunContext, queries: FeatureSet, gallery: FeatureSet,
               class_names: list) -> Path:
    """retrieval_grid.png: rows of query + top-k gallery videos as filmstrips (several frames
    across each video), tick + solid frame = same class; and retrieval_grid.txt naming the videos
    and classes of every cell."""
    from engine import visualize
    cfg: RetrievalConfig = ctx.cfg
    chosen = grid_queries(len(queries.paths), cfg.num_grid_queries)
    k = min(cfg.grid_topk, len(gallery.paths))
    nn_idx = metrics.nearest_neighbours(queries.features[chosen], gallery.features, k)  # [Q, k]
    strips: dict[str, np.ndarray] = {}

    def strip(path: str) -> np.ndarray:
        if path not in strips:
            strips[path] = visualize.filmstrip(path)                 # [h, w, 3] uint8 RGB
        return strips[path]

    def name(label) -> str:
        return class_names[int(label)]

    correct = (gallery.labels[nn_idx] == queries.labels[chosen].view(-1, 1)).numpy()  # [Q, k]
    init = f"checkpoint {cfg.checkpoint}" if cfg.checkpoint else "random init"
    fig = visualize.retrieval_figure(
        [strip(queries.paths[i]) for i in chosen],
        [[strip(gallery.paths[j]) for j in row.tolist()] for row in nn_idx], correct,
        [name(queries.labels[i]) for i in chosen],
        [[name(gallery.labels[j]) for j in row.tolist()] for row in nn_idx],
        title=f"nearest-neighbour retrieval, {init}: test queries (left) and their {k} nearest "
              "train videos, nearest first")
    path = visualize.save_figure(fig, ctx.run_dir / "retrieval_grid.png", ctx.tb.writer,
                                 "retrieval/grid")
    lines = ["# row: query -> nearest gallery videos, most similar first; "
             "+ same class (tick, solid frame), - other class (cross, dashed frame)"]
    for row, (qi, nbrs) in enumerate(zip(chosen, nn_idx.tolist())):
        cells = [f"{'+' if gallery.labels[j] == queries.labels[qi] else '-'}"
                 f"{name(gallery.labels[j])} ({Path(gallery.paths[j]).name})" for j in nbrs]
        query = f"{name(queries.labels[qi])} ({Path(queries.paths[qi]).name})"
        lines.append(f"{row}: {query} -> " + ", ".join(cells))
    write_text(ctx.run_dir / "retrieval_grid.txt", "\n".join(lines) + "\n", "retrieval grid")
    ctx.logger.info(f"retrieval picture grid ({len(chosen)} queries x top-{k} filmstrips; tick + "
                    f"solid frame = same class, cross + dashed = other class) -> {path}")
    return path
