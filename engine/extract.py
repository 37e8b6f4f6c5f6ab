"""Feature extraction for any videos (extract_features.py): a folder of features for one checkpoint
and one protocol.

The output folder holds

* ``features.npy``: float32 (or float16) [N, D] ([N, K, D] with --per-clip true), row i = row i of
  index.csv; ``np.load(path, mmap_mode="r")`` maps it without reading it. Rows of videos that could
  not be decoded are zeros.
* ``index.csv``: row, path, frames, fps, seconds, status ("ok" or "failed"), reason.
* ``meta.json``: what the features are (weights: checkpoint sha256 or random seed; backbone, width,
  protocol, precision, dtype, D), the versions, the command and every run that wrote the folder.
* ``shards/``: the features as they were computed, a file per ``shard_size`` videos per process,
  keyed by each video's path, size and modification time. A rerun (after a kill, or over a folder
  with new videos) computes only the videos no shard holds; features.npy and index.csv are then
  rebuilt from the shards in the order of the input listing.

One folder holds the features of one checkpoint and protocol: a run whose weights or protocol
differ from meta.json's is refused before it writes anything (``--overwrite true`` replaces them,
keeping the old files aside until the new ones are written). The features are computed by
engine.features, exactly as nn_retrieval.py computes them.

Under torchrun each process computes every world_size-th video of what is missing and writes its
own shards (the folder must be shared by the processes); process 0 then merges.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import json
import os
import platform
import shlex
import shutil
import sys
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from config import ConfigError, ExtractConfig
from engine import checkpoint as ckpt_io
from engine.common import RunContext, amp_dtype, make_loader, run_job, seed_everything
from engine.distributed import all_gather_objects, barrier
from engine.errors import RunFolderError
from engine.features import FeatureProtocol, batch_features, video_identity
from engine.rundir import file_sha256
from user_errors import UserError

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v")
FEATURES_NAME, INDEX_NAME, META_NAME, SHARDS_DIR = "features.npy", "index.csv", "meta.json", "shards"
INDEX_COLUMNS = ("row", "path", "frames", "fps", "seconds", "status", "reason")
FORMAT = "tclr-features"
FORMAT_VERSION = 1
ASIDE_DIR = ".replaced"


class InputError(UserError):
    """The videos to extract cannot be listed (missing folder or list file, nothing in it)."""


class FeatureFolderError(RunFolderError):
    """The output folder holds features of other weights or another protocol."""


# --------------------------------------------------------------------------------------------
# Input: which videos
# --------------------------------------------------------------------------------------------

def list_videos(cfg: ExtractConfig) -> list[str]:
    """Absolute paths of the videos to extract, in output order, each once.

    --videos DIR: every file with a VIDEO_SUFFIXES extension under DIR (recursive, any letter case,
    hidden files and folders skipped), sorted by relative path. --list FILE: the listed paths in
    order. Otherwise the --dataset split's videos (--subset "all" = train then test).

    Raises:
        InputError: the folder or file does not exist, or lists no video.
    """
    if cfg.videos:
        return _walk(Path(cfg.videos))
    if cfg.list:
        return _read_list(Path(cfg.list))
    return _dataset_videos(cfg)


def _walk(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise InputError(f"--videos {folder}: no such folder; pass a folder holding videos")
    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(top, f) for f in files
                     if f.lower().endswith(VIDEO_SUFFIXES) and not f.startswith("."))
    if not found:
        raise InputError(f"--videos {folder}: no video files under it (looked for "
                         f"{' '.join(VIDEO_SUFFIXES)} in any letter case, recursively)")
    return sorted(str(Path(p).resolve()) for p in found)


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"--list {path}: no such file; pass a text file with one video path per "
                         "line")
    base = path.resolve().parent
    out: list[str] = []
    seen: set[str] = set()
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        full = str((base / Path(text).expanduser()).resolve())
        if full not in seen:
            seen.add(full)
            out.append(full)
    if not out:
        raise InputError(f"--list {path} names no video (every line is empty or a # comment)")
    return out


def _dataset_videos(cfg: ExtractConfig) -> list[str]:
    from dataloaders.splits import build_video_list
    d = cfg.data
    subsets = ("train", "test") if cfg.subset == "all" and d.dataset != "folder" else (cfg.subset,)
    out: list[str] = []
    seen: set[str] = set()
    for subset in subsets:
        videos, _classes = build_video_list(d.dataset, d.data_root, split=d.split, subset=subset,
                                            check_files=False)
        for path, _label in videos:
            if path not in seen:
                seen.add(path)
                out.append(path)
    return out


# --------------------------------------------------------------------------------------------
# What the features are: the identity a folder is owned by
# --------------------------------------------------------------------------------------------

def weights_identity(cfg: ExtractConfig) -> dict[str, Any]:
    """{"init": "checkpoint", "path", "sha256"} or {"init": "random", "seed"}.

    Raises:
        ConfigError: no --checkpoint (features of random weights only when asked for by name).
        CheckpointError: the file does not exist.
    """
    if not cfg.checkpoint:
        raise ConfigError("config key 'checkpoint': pass --checkpoint PATH (a checkpoint file) or "
                          "--checkpoint random (random initialisation, seeded by --seed)")
    if cfg.checkpoint == "random":
        return {"init": "random", "seed": cfg.seed}
    path = Path(cfg.checkpoint).resolve()
    if not path.is_file():
        raise ckpt_io.CheckpointError(f"--checkpoint {cfg.checkpoint}: no such file (pass a "
                                      "checkpoint file, or --checkpoint random)")
    return {"init": "checkpoint", "path": str(path), "sha256": file_sha256(path)}


def feature_identity(cfg: ExtractConfig, protocol: FeatureProtocol, feature_dim: int,
                     device: torch.device) -> dict[str, Any]:
    """Everything the values in features.npy depend on (meta.json's first keys)."""
    dtype = amp_dtype(cfg.amp, device)
    return {"format": FORMAT, "format_version": FORMAT_VERSION,
            "weights": weights_identity(cfg), "backbone": cfg.backbone, "width": cfg.width,
            "protocol": protocol.as_dict(), "precision": str(dtype) if dtype else "float32",
            "dtype": cfg.dtype, "feature_dim": feature_dim}


def _comparable(identity: dict[str, Any]) -> dict[str, Any]:
    """The identity without the checkpoint's path (the same content moved is the same weights)."""
    out = json.loads(json.dumps(identity))
    out.get("weights", {}).pop("path", None)
    return {k: v for k, v in out.items() if k in ("format", "format_version", "weights",
                                                   "backbone", "width", "protocol", "precision",
                                                   "dtype", "feature_dim")}


def _differences(have: dict, want: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(have) | set(want)):
        a, b = have.get(key), want.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key} {a!r} there, {b!r} now")
    return out


def read_meta(folder: Path) -> dict[str, Any] | None:
    """meta.json of a features folder, None when absent.

    Raises:
        FeatureFolderError: the file is not JSON.
    """
    path = folder / META_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise FeatureFolderError(f"{path} is not valid JSON ({exc}); the folder's features cannot "
                                 "be trusted: pass another --out-dir or --overwrite true") from None


def check_folder(folder: Path, identity: dict[str, Any], overwrite: bool) -> dict | None:
    """Refuse a folder holding features of other weights or another protocol.

    Returns:
        The folder's meta.json (None when it has none, or when --overwrite replaces it).
    Raises:
        FeatureFolderError: naming the folder, what differs, and the fix.
    """
    meta = read_meta(folder)
    shards = sorted((folder / SHARDS_DIR).glob("*.npz")) if (folder / SHARDS_DIR).is_dir() else []
    if meta is None and (shards or (folder / FEATURES_NAME).exists()):
        if overwrite:
            return None
        raise FeatureFolderError(
            f"--out-dir {folder} holds features ({FEATURES_NAME} or {SHARDS_DIR}/) but no "
            f"{META_NAME} saying what they are; pass another --out-dir, or --overwrite true to "
            "replace them")
    if meta is None:
        return None
    diff = _differences(_comparable(meta), _comparable(identity))
    if not diff:
        return meta
    if overwrite:
        return None
    raise FeatureFolderError(
        f"--out-dir {folder} holds features of other weights or another protocol "
        f"({'; '.join(diff[:6])}); one folder holds one checkpoint's features of one protocol: "
        "pass another --out-dir, or --overwrite true to replace them")


# --------------------------------------------------------------------------------------------
# Shards: the features as they are computed
# --------------------------------------------------------------------------------------------

def _shard_paths(folder: Path) -> list[Path]:
    shards = folder / SHARDS_DIR
    return sorted(shards.glob("*.npz")) if shards.is_dir() else []


def shard_index(folder: Path, logger=None) -> dict[str, tuple[Path, int, dict]]:
    """video key -> (shard file, row in it, its index.csv fields), over every readable shard
    (a later shard wins; a damaged one is skipped with a warning, its videos computed again)."""
    out: dict[str, tuple[Path, int, dict]] = {}
    for path in _shard_paths(folder):
        try:
            with np.load(path, allow_pickle=False) as data:
                rows = json.loads(str(data["rows"]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            if logger is not None:
                logger.warning(f"skipping damaged shard {path} ({exc}); its videos are computed "
                               "again")
            continue
        for i, row in enumerate(rows):
            out[row["key"]] = (path, i, row)
    return out


class ShardWriter:
    """Collects (key, feature, fields) rows and writes them ``size`` at a time as one .npz file,
    atomically (a temporary name, then a rename)."""

    def __init__(self, folder: Path, stem: str, size: int, dtype: str):
        self.folder, self.stem, self.size, self.dtype = folder / SHARDS_DIR, stem, size, dtype
        self.rows: list[dict] = []
        self.features: list[np.ndarray] = []
        self.count = 0

    def add(self, key: str, feature: np.ndarray, fields: dict) -> None:
        self.rows.append({"key": key, **fields})
        self.features.append(feature.astype(self.dtype))
        if len(self.rows) >= self.size:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.stem}-{self.count:05d}.npz"
        tmp = self.folder / f".{path.name}.tmp"
        with open(tmp, "wb") as handle:
            np.savez(handle, features=np.stack(self.features), rows=np.array(json.dumps(self.rows)))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        self.count += 1
        self.rows, self.features = [], []


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

def run(cfg: ExtractConfig) -> dict:
    """Extraction as configured; returns a summary (also in meta.json)."""
    return run_job(cfg, "feature extraction", _run)


def build_backbone(cfg: ExtractConfig, ctx: RunContext):
    """The configured backbone with its weights (``random``: seeded by --seed), eval mode, on the
    run's device."""
    from models import build_initialised_backbone
    seed_everything(cfg.seed)
    init_cfg = dataclasses.replace(cfg, checkpoint="" if cfg.checkpoint == "random"
                                   else cfg.checkpoint)
    backbone, _ = build_initialised_backbone(init_cfg, ctx.logger, ckpt_io.require_finite)
    return backbone.to(ctx.device).eval()


def _run(cfg: ExtractConfig, ctx: RunContext) -> dict:
    folder = Path(cfg.out_dir)
    weights_identity(cfg)                   # a missing --checkpoint fails before anything else
    videos = list_videos(cfg)
    keys = {path: video_identity(path) for path in videos}
    protocol = FeatureProtocol.from_config(cfg, kind=cfg.feature, per_clip=cfg.per_clip)
    backbone = build_backbone(cfg, ctx)
    identity = feature_identity(cfg, protocol, protocol.feature_dim(backbone), ctx.device)
    meta = check_folder(folder, identity, cfg.overwrite) if ctx.dist.is_main else None
    listing = hashlib.sha256("\n".join(keys[p] for p in videos).encode()).hexdigest()
    plan = None
    if ctx.dist.is_main:
        done = shard_index(folder, ctx.logger) if meta is not None else {}
        todo = [p for p in videos if keys[p] not in done]
        up_to_date = (meta is not None and not todo and bool(meta.get("complete"))
                      and meta.get("listing") == listing)
        plan = (todo, up_to_date)
    todo, up_to_date = all_gather_objects(plan)[0]   # process 0's plan: all share it out alike
    ctx.commit()                            # start-up succeeded: from here on the folder is written
    if up_to_date:
        if ctx.dist.is_main:
            ctx.logger.info(f"{folder}: all {len(videos)} videos already have features "
                            f"({meta.get('num_failed', 0)} of them failed to decode); nothing to "
                            "do")
        return summary(meta or {})
    record = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": command_line(),
              "world_size": ctx.dist.world_size, "videos": len(videos), "computed": len(todo)}
    aside = None
    if ctx.dist.is_main:
        aside = _move_aside(folder) if cfg.overwrite and meta is None else None
        write_meta(folder, {**identity, **_provenance(), "complete": False,
                            "runs": (meta or {}).get("runs", []) + [record]})
    barrier()
    ctx.logger.info(f"{len(videos)} videos listed, {len(videos) - len(todo)} already in "
                    f"{folder / SHARDS_DIR}, {len(todo)} to compute; {protocol.describe()}")
    t0 = time.time()
    compute(cfg, ctx, backbone, protocol, todo, keys)
    barrier()
    result: dict = {}
    if ctx.dist.is_main:
        result = merge(folder, videos, keys, identity, protocol, listing, record,
                       (meta or {}).get("runs", []), cfg.dtype)
        if aside is not None:
            shutil.rmtree(aside)
        result.update(computed=len(todo), seconds=time.time() - t0)   # compute and merge
        rate = len(todo) / max(result["seconds"], 1e-9)
        ctx.logger.info(f"features of {result['num_videos']} videos -> {folder / FEATURES_NAME} "
                        f"{tuple(result['shape'])}: {len(todo)} computed ({rate:.2f} videos/s), "
                        f"{result['num_failed']} could not be decoded (index.csv says why)")
    barrier()
    return result


def command_line() -> str:
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


@functools.lru_cache(maxsize=1)
def _provenance() -> dict[str, Any]:
    """Versions and code revision (once per process: the git call costs a subprocess)."""
    import cv2
    import torchvision

    from engine.logging import git_revision
    return {"versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "torchvision": torchvision.__version__, "numpy": np.__version__,
                         "opencv": cv2.__version__}, "git": git_revision()}


def _move_aside(folder: Path) -> Path | None:
    """--overwrite: the earlier features into <folder>/.replaced/ (removed once the new ones are
    written); None when there were none."""
    names = [n for n in (FEATURES_NAME, INDEX_NAME, META_NAME, SHARDS_DIR) if (folder / n).exists()]
    if not names:
        return None
    aside = folder / ASIDE_DIR
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir(parents=True)
    for name in names:
        os.replace(folder / name, aside / name)
    return aside


def compute(cfg: ExtractConfig, ctx: RunContext, backbone, protocol: FeatureProtocol,
            todo: list[str], keys: dict[str, str]) -> None:
    """This process's share of ``todo`` (every world_size-th video), written into shards."""
    from dataloaders.batching import collate_features
    mine = todo[ctx.dist.rank::ctx.dist.world_size]
    if not mine:
        return
    dataset = protocol.dataset([(path, 0) for path in mine], bad_videos="record")
    one_process = dataclasses.replace(ctx.dist, rank=0, world_size=1)   # the share is already cut
    loader, _ = make_loader(dataset, cfg, one_process, train=False, collate_fn=collate_features,
                            batch_size=cfg.per_device_batch)
    # unique per run and process: two runs within one second (or one pid) must not share names
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}-r{ctx.dist.rank}"
    writer = ShardWriter(Path(cfg.out_dir), stem, cfg.shard_size, cfg.dtype)
    shape = ((protocol.num_clips,) if protocol.per_clip else ()) + (
        protocol.feature_dim(backbone),)
    bar = tqdm(total=len(mine), unit="video", dynamic_ncols=True,
               desc=f"features (process {ctx.dist.rank} of {ctx.dist.world_size})"
               if ctx.dist.distributed else "features",
               disable=not (ctx.dist.is_main and cfg.progress))
    failed_count = 0
    for batch, feats in batch_features(backbone, loader, ctx.device,
                                       amp_dtype(cfg.amp, ctx.device), protocol, progress=bar):
        computed = dict(zip(batch["video_id"].tolist(), feats.numpy()))
        failed = dict(batch["failed"])
        for vid, frames, fps in batch["info"]:
            path = mine[vid]
            fields = {"path": path, "frames": int(frames), "fps": float(fps),
                      "status": "ok", "reason": ""}
            feature = computed.get(vid)
            if vid in failed:
                fields.update(status="failed", reason=failed[vid])
            elif not np.isfinite(feature).all():
                fields.update(status="failed", reason="the feature holds NaN or inf values")
            if fields["status"] != "ok":
                feature = np.zeros(shape, np.float32)
                failed_count += 1
                ctx.logger.warning(f"{path}: {fields['reason']} (a row with status failed)")
            writer.add(keys[path], feature, fields)
    writer.flush()
    bar.close()


def merge(folder: Path, videos: list[str], keys: dict[str, str], identity: dict,
          protocol: FeatureProtocol, listing: str, record: dict, runs: list, dtype: str) -> dict:
    """features.npy, index.csv and meta.json from the shards, in the order of ``videos``."""
    index = shard_index(folder)
    absent = [p for p in videos if keys[p] not in index]
    if absent:
        raise RuntimeError(f"{len(absent)} of {len(videos)} videos have no shard row after "
                           f"extraction (first {absent[:3]}); this is a bug")
    shape = (len(videos),) + ((protocol.num_clips,) if protocol.per_clip else ()) + (
        identity["feature_dim"],)
    tmp = folder / f".{FEATURES_NAME}.tmp"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
    by_shard: dict[Path, list[tuple[int, int]]] = {}
    for row, path in enumerate(videos):
        shard, i, _fields = index[keys[path]]
        by_shard.setdefault(shard, []).append((row, i))
    for shard, pairs in by_shard.items():
        with np.load(shard, allow_pickle=False) as data:
            feats = data["features"]
            rows, picks = zip(*pairs)
            out[list(rows)] = feats[list(picks)]
    out.flush()
    del out
    os.replace(tmp, folder / FEATURES_NAME)
    failed = write_index(folder, videos, [index[keys[p]][2] for p in videos])
    meta = {**identity, **_provenance(), "complete": True, "checkpoint": identity["weights"].get(
        "path"), "protocol_text": protocol.describe(), "shape": list(shape),
        "num_videos": len(videos), "num_failed": failed, "listing": listing,
        "command": record["command"], "runs": runs + [record]}
    write_meta(folder, meta)
    return summary(meta)


def write_index(folder: Path, videos: list[str], rows: list[dict]) -> int:
    """index.csv (INDEX_COLUMNS); returns the number of failed rows."""
    tmp = folder / f".{INDEX_NAME}.tmp"
    failed = 0
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(INDEX_COLUMNS)
        for row, (path, fields) in enumerate(zip(videos, rows)):
            fps, frames = fields["fps"], fields["frames"]
            seconds = f"{frames / fps:.3f}" if fps > 0 and frames > 0 else ""
            failed += fields["status"] != "ok"
            writer.writerow([row, path, frames, f"{fps:g}", seconds, fields["status"],
                             fields["reason"]])
    os.replace(tmp, folder / INDEX_NAME)
    return failed


def write_meta(folder: Path, meta: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{META_NAME}.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, folder / META_NAME)


def summary(meta: dict) -> dict:
    return {"num_videos": meta.get("num_videos"), "num_failed": meta.get("num_failed"),
            "shape": meta.get("shape"), "feature_dim": meta.get("feature_dim"),
            "weights": meta.get("weights"), "protocol": meta.get("protocol")}


def read_index(folder: str | os.PathLike) -> list[dict[str, str]]:
    """index.csv's rows as dicts (INDEX_COLUMNS)."""
    with open(Path(folder) / INDEX_NAME, newline="") as handle:
        return list(csv.DictReader(handle))
