"""Datasets for TCLR pretraining, classifier training and multi-clip evaluation.

Reproducible randomness. An item is requested either by a plain index or by an (index, item_seed)
pair. EpochSeededSampler yields such pairs with item_seed = f(run seed, epoch, index), so a sample's
clip positions and augmentation parameters depend only on the run seed, the epoch and the video:
not on the number of workers, their scheduling or on resuming mid-run. With a plain index the seed is
drawn from torch's global generator, which the DataLoader seeds per worker and per epoch from its
base seed (reproducible for a fixed number of workers only).

Bad videos (the policy). For training items (TCLRPretrainDataset, ClipDataset) an unreadable,
truncated or too short video never raises into the DataLoader: the item records (path, reason) in
item["failures"] and deterministically uses the next video (index + 1, + 2, ... modulo the dataset
size) instead, up to max_retries times; only when every one of them fails does it raise DatasetError
naming all of them. The collate functions (dataloaders.batching) keep every item, so a batch never
shrinks, and concatenate the failure lists: the training loop counts them per epoch, reports the
paths and decides when to stop. Evaluation (MultiClipDataset) never substitutes: a bad video raises DatasetError with the path
and the reason.
"""
from __future__ import annotations

import random
from typing import Iterator

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

from dataloaders.augment import (EVAL_CROP, apply_clip_augmentation, apply_eval_transform,
                                 sample_strong_params, sample_weak_params)
from dataloaders.color import formula_channels
from dataloaders.sampling import (ClipSampler, EvalClipSampler, RandomClipSampler, TCLRSampler,
                                  min_eval_frames)
from dataloaders.splits import DatasetError
from dataloaders.video import DecodedFrames, VideoDecodeError, VideoReader, count_frames
from losses.tclr import NUM_VIEWS

AUGMENT_PLACES = ("cpu", "device")
_SEED_MASK = (1 << 63) - 1


def item_seed(run_seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one item of one epoch (numpy SeedSequence hashing of the three numbers)."""
    state = np.random.SeedSequence([run_seed, epoch, index]).generate_state(1, np.uint64)[0]
    return int(state) & _SEED_MASK


class EpochSeededSampler(Sampler):
    """Wraps a sampler of indices and yields (index, item_seed(seed, epoch, index)) pairs.

    Args:
        base_sampler: any sampler of dataset indices (RandomSampler, DistributedSampler, ...).
        seed: the run seed.
    Call set_epoch(epoch) before each epoch; it is forwarded to the base sampler when that has one
    (DistributedSampler shuffles by epoch).
    """

    def __init__(self, base_sampler, seed: int = 0):
        self.base_sampler = base_sampler
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.base_sampler, "set_epoch"):
            self.base_sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.base_sampler:
            yield int(index), item_seed(self.seed, self.epoch, int(index))

    def __len__(self) -> int:
        return len(self.base_sampler)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: seeds numpy and `random` from the worker's torch seed.

    The DataLoader already seeds torch in each worker with base_seed + worker_id, base_seed being
    drawn per epoch from the DataLoader's generator (seed that generator from the run seed).
    OpenCV is kept to one thread per worker: the workers are the parallelism.
    """
    info = get_worker_info()
    seed = info.seed if info is not None else torch.initial_seed()
    np.random.seed(seed % 2**32)
    random.seed(seed)
    cv2.setNumThreads(1)


def _generators(seed: int, attempt: int) -> tuple[np.random.Generator, torch.Generator]:
    """The numpy generator (clip positions) and torch generator (augmentation) of one attempt."""
    seeds = np.random.SeedSequence([seed, attempt]).generate_state(2, np.uint64)
    torch_gen = torch.Generator().manual_seed(int(seeds[1]) & _SEED_MASK)
    return np.random.default_rng(int(seeds[0])), torch_gen


def _decode_clips(reader: VideoReader, rng: np.random.Generator | None, sampler: ClipSampler
                  ) -> tuple[DecodedFrames, np.ndarray, np.ndarray]:
    """Draws clip indices for the header's frame count, decodes them once, pads at the real end.

    When the video proves shorter than its header claims, the indices are drawn again for the real
    length (from the same generator, so the result is the same whether or not this process had
    already learnt that length) and decoded again. The frame count is not trusted beforehand.

    Args:
        sampler: draws (sampler.draw) and pads (sampler.pad, may raise VideoTooShortError) the
            indices of the clips, int64 [C, T].
    Returns:
        (decoded frames, padded indices [C, T] whose frames are all in decoded, valid bool [C]).
    """
    claimed = reader.info.frame_count
    if claimed <= 0:  # some containers do not record a count
        claimed = count_frames(reader.path)
    indices = sampler.draw(claimed, rng)
    known = reader.known_real_frame_count
    decoded = None
    if known is None or indices.max() < known:
        decoded = reader.decode(indices)
        if decoded.real_frame_count is None:  # every index was decoded: nothing to pad
            return decoded, indices, np.ones(len(indices), dtype=bool)
        known = decoded.real_frame_count
    if known < claimed:
        indices = sampler.draw(known, rng)
    indices, valid = sampler.pad(indices, known)
    if decoded is None or not np.isin(indices, decoded.indices).all():
        decoded = reader.decode(indices)
    return decoded, indices, valid


def _pool_tensor(decoded: DecodedFrames) -> torch.Tensor:
    """uint8 [F, 3, H, W] view of decoded frames (channels-last memory, no copy)."""
    return torch.from_numpy(decoded.frames).permute(0, 3, 1, 2)


def _pool_positions(decoded: DecodedFrames, indices: np.ndarray) -> torch.Tensor:
    """Positions of frame indices in decoded.frames (same shape as indices)."""
    return torch.from_numpy(np.searchsorted(decoded.indices, indices))


class _RetryingVideoDataset(Dataset):
    """Shared key handling and the substitute-on-failure policy (see the module docstring)."""

    def __init__(self, videos: list[tuple[str, int]], color: str, seed: int, max_retries: int,
                 color_ops: str = "release"):
        if not videos:
            raise DatasetError("the video list is empty: check the dataset root, split and subset")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        formula_channels(color, color_ops)  # validates both
        self.videos = list(videos)
        self.color = color
        self.color_ops = color_ops
        self.seed = seed
        self.max_retries = max_retries

    def __len__(self) -> int:
        return len(self.videos)

    def _resolve_key(self, key) -> tuple[int, int]:
        if isinstance(key, (tuple, list)):
            index, seed = key
            return int(index), int(seed)
        fresh = int(torch.randint(0, 2**62, (1,)).item())  # torch's per-worker, per-epoch stream
        return int(key), item_seed(self.seed, fresh, int(key))

    def _build(self, index: int, rng: np.random.Generator, gen: torch.Generator) -> dict:
        raise NotImplementedError

    def __getitem__(self, key) -> dict:
        index, seed = self._resolve_key(key)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} videos")
        failures: list[tuple[str, str]] = []
        for attempt in range(self.max_retries + 1):
            video = (index + attempt) % len(self)
            rng, gen = _generators(seed, attempt)
            try:
                item = self._build(video, rng, gen)
            except VideoDecodeError as error:
                failures.append((self.videos[video][0], error.reason))
                continue
            item["index"] = video
            item["failures"] = failures
            return item
        listing = "; ".join(f"{path}: {reason}" for path, reason in failures)
        raise DatasetError(f"{len(failures)} consecutive videos from index {index} could not be used "
                           f"(max_retries={self.max_retries}): {listing}. Run python -m "
                           "dataloaders.check on the dataset to list every bad file.")


class TCLRPretrainDataset(_RetryingVideoDataset):
    """TCLR pretraining samples: one global and K local clips, each augmented twice (spec 1-2).

    Args:
        videos: list of (video path, label); labels are unused here.
        clip_len, sparse_stride, num_local: T, the global clip's stride, K.
        size: output side S.
        color: "bgr" (default, as the release and its weights) or "rgb".
        color_ops: "release" (default: PIL's RGB colour formulas on the stored channels, as the
            release) or "true_channels" (dataloaders.color.formula_channels).
        augment_on: "cpu" (the item holds augmented clips) or "device" (the item holds raw uint8
            clips and the parameters; the training step calls
            dataloaders.batching.augment_pretrain_batch(batch, device)).
        seed: run seed, used for plain integer keys.
        max_retries: substitute videos tried after a bad one.
        min_sparse, min_dense: mirror-padding thresholds (None: 14 and 8 of 16, scaled).
    Items (dict):
        "clips": float32 [V=2, 1+K, 3, T, S, S] (augment_on="cpu"), index 0 along axis 1 the global
            clip, 1..K the dense clips in time order; or "frames": uint8 [1+K, T, 3, H, W] and
            "params": AugmentParams with 2 * (1+K) rows, v-major (augment_on="device");
        "index": the video actually used; "failures": list of (path, reason) of skipped videos.
    """

    def __init__(self, videos, clip_len: int = 16, sparse_stride: int = 4, num_local: int = 4,
                 size: int = 112, color: str = "bgr", augment_on: str = "cpu", seed: int = 0,
                 max_retries: int = 10, min_sparse: int | None = None, min_dense: int | None = None,
                 color_ops: str = "release"):
        super().__init__(videos, color, seed, max_retries, color_ops)
        if augment_on not in AUGMENT_PLACES:
            raise ValueError(f"augment_on must be one of {AUGMENT_PLACES}, got {augment_on!r}")
        self.sampler = TCLRSampler(clip_len, sparse_stride, num_local, min_sparse, min_dense)
        self.size, self.augment_on = size, augment_on
        self.views = NUM_VIEWS

    def _build(self, index, rng, gen) -> dict:
        path = self.videos[index][0]
        with VideoReader(path, color=self.color) as reader:
            decoded, indices, _ = _decode_clips(reader, rng, self.sampler)
        pool = _pool_tensor(decoded)                                     # [F, 3, H, W]
        positions = _pool_positions(decoded, indices)                    # [1+K, T]
        clips, height, width = positions.shape[0], pool.shape[-2], pool.shape[-1]
        params = sample_strong_params(gen, self.views * clips, height, width, self.size)
        if self.augment_on == "device":
            # numpy gathers whole frames (memcpy); the tensor is a [1+K, T, 3, H, W] view of
            # channels-last memory, the layout the resize kernels prefer (collate keeps it).
            raw = torch.from_numpy(decoded.frames[positions.numpy()])  # [1+K, T, H, W, 3]
            return {"frames": raw.permute(0, 1, 4, 2, 3), "params": params}
        frame_index = positions.repeat(self.views, 1)                    # [V*(1+K), T], v-major
        out = apply_clip_augmentation(pool, params, self.size, self.color, frame_index,
                                      color_ops=self.color_ops)
        return {"clips": out.view(self.views, clips, *out.shape[1:])}    # [V, 1+K, 3, T, S, S]


class ClipDataset(_RetryingVideoDataset):
    """Classifier training: one clip of clip_len frames at `stride` from a random start (spec 7).

    Args:
        augment: "weak" (spec section 2's classifier family) or "none" (centre crop, resize).
        color_ops: as TCLRPretrainDataset.
    Items: "clip" float32 [3, T, S, S], "label" int, "index" (video used), "failures".
    """

    def __init__(self, videos, clip_len: int = 16, stride: int = 2, size: int = 112,
                 color: str = "bgr", augment: str = "weak", seed: int = 0, max_retries: int = 10,
                 crop: float = EVAL_CROP, color_ops: str = "release"):
        super().__init__(videos, color, seed, max_retries, color_ops)
        if augment not in ("weak", "none"):
            raise ValueError(f"augment must be 'weak' or 'none', got {augment!r}")
        self.sampler = RandomClipSampler(clip_len, stride)
        self.size, self.augment, self.crop = size, augment, crop

    def _build(self, index, rng, gen) -> dict:
        path, label = self.videos[index]
        with VideoReader(path, color=self.color) as reader:
            decoded, indices, _ = _decode_clips(reader, rng, self.sampler)
        pool = _pool_tensor(decoded)
        positions = _pool_positions(decoded, indices)                    # [1, T]
        if self.augment == "none":
            clip = apply_eval_transform(pool[positions[0]], self.size, self.crop)
        else:
            params = sample_weak_params(gen, 1, pool.shape[-2], pool.shape[-1], self.size)
            clip = apply_clip_augmentation(pool, params, self.size, self.color, positions,
                                           color_ops=self.color_ops)[0]
        return {"clip": clip, "label": int(label)}                      # clip [3, T, S, S]


def check_eval_lengths(videos: list, clip_len: int, stride: int, what: str) -> None:
    """Before any training: every evaluation video opens and its header claims enough frames.

    Reads each file's header only (milliseconds per video); a header that overstates the real
    length is caught at evaluation, and by ``python -m dataloaders.check``, which decodes all.

    Raises:
        DatasetError: naming the videos that cannot be opened or are too short.
    """
    from dataloaders.video import probe_video
    needed = min_eval_frames(clip_len, stride)
    bad = []
    for path, _label in videos:
        try:
            frames = probe_video(path).frame_count
        except VideoDecodeError as error:
            bad.append(f"{path}: {error.reason}")
            continue
        if frames < needed:
            bad.append(f"{path}: {frames} frames, {needed} needed")
    if bad:
        raise DatasetError(f"{len(bad)} of {len(videos)} {what} videos cannot be evaluated "
                           f"({clip_len}-frame clips at stride {stride}), e.g.:\n  "
                           + "\n  ".join(bad[:10]) + "\nEvaluation never skips a video: fix or "
                           "remove them from the split before training (python -m "
                           "dataloaders.check lists every one)")


class MultiClipDataset(Dataset):
    """Evaluation: C clips per video, evenly spaced starts, centre crop (spec section 7).

    Every video is decoded once for all its clips. In a very short video some clips may be too
    short to pad (the release's starts start_i = i); like the release, the video is then scored on
    its other clips: those clips are marked False in "clip_mask" (and hold a copy of the first
    valid clip).

    Bad videos (a stated policy, ``bad_videos``): "raise" (evaluation never skips a video: a bad
    one raises DatasetError with the path and the reason) or "record" (feature extraction: the
    item has no "clips" and holds the reason in "failure"; batching.collate_features keeps it
    out of the clips and lists it).

    Items: "clips" float32 [C, 3, T, S, S], "clip_mask" bool [C], "label" int, "video_id" (index in
    the list), "frames" (the frame count: the real one when decoding reached the end, else the
    header's), "fps" (the header's; 0.0 when unknown); or, for a recorded bad video, "video_id",
    "label", "failure" (the reason), "frames" and "fps" (0 when the file could not be opened).
    """

    BAD_VIDEO_POLICIES = ("raise", "record")

    def __init__(self, videos, num_clips: int = 10, clip_len: int = 16, stride: int = 2,
                 size: int = 112, color: str = "bgr", crop: float = EVAL_CROP, flip: bool = False,
                 bad_videos: str = "raise"):
        if not videos:
            raise DatasetError("the video list is empty: check the dataset root, split and subset")
        if bad_videos not in self.BAD_VIDEO_POLICIES:
            raise ValueError(f"bad_videos must be one of {self.BAD_VIDEO_POLICIES}, got "
                             f"{bad_videos!r}")
        self.videos = list(videos)
        self.sampler = EvalClipSampler(num_clips, clip_len, stride)
        self.size, self.color, self.crop, self.flip = size, color, crop, flip
        self.bad_videos = bad_videos

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index) -> dict:
        index = int(index[0] if isinstance(index, (tuple, list)) else index)
        path, label = self.videos[index]
        info = {"frames": 0, "fps": 0.0}
        try:
            with VideoReader(path, color=self.color) as reader:
                info = {"frames": reader.info.frame_count, "fps": reader.info.fps}
                decoded, indices, valid = _decode_clips(reader, None, self.sampler)
                info["frames"] = (decoded.real_frame_count or reader.known_real_frame_count
                                  or info["frames"])
        except VideoDecodeError as error:
            if self.bad_videos == "record":
                return {"video_id": index, "label": int(label), "failure": error.reason, **info}
            raise DatasetError(f"evaluation video {path} cannot be used: {error.reason}. Evaluation "
                               "never skips videos: repair or re-download it (python -m "
                               "dataloaders.check lists every bad file)") from None
        pool = _pool_tensor(decoded)
        frames = pool[_pool_positions(decoded, indices)]                # [C, T, 3, H, W]
        clips = apply_eval_transform(frames, self.size, self.crop, self.flip)
        return {"clips": clips, "clip_mask": torch.from_numpy(valid), "label": int(label),
                "video_id": index, **info}               # clips [C, 3, T, S, S], mask [C]


DATASET_KINDS = ("pretrain", "train", "eval")


def build_dataset(data_cfg, kind: str, videos: list[tuple[str, int]], seed: int, *,
                  num_clips: int | None = None) -> Dataset:
    """The dataset a job runs, built from its (finalised) data config: nobody unpacks cfg.data.

    Args:
        data_cfg: a config.DataConfig (read by attribute; this layer does not import config).
        kind: "pretrain" (TCLRPretrainDataset, augmentation where data_cfg.augment_on says),
            "train" (ClipDataset with the classifier's weak augmentation) or "eval"
            (MultiClipDataset: num_clips clips, centre crop data_cfg.eval_crop, eval_flip).
        videos: list of (path, label).
        seed: the run seed (plain integer keys; "eval" draws nothing at random).
        num_clips: clips per video, "eval" only (the jobs' counts differ: test, validation,
            retrieval).
    Raises:
        ValueError: an unknown kind, or num_clips missing for "eval" / given for another kind.
    """
    if kind not in DATASET_KINDS:
        raise ValueError(f"dataset kind must be one of {DATASET_KINDS}, got {kind!r}")
    if (kind == "eval") != (num_clips is not None):
        raise ValueError(f"num_clips is given for 'eval' datasets only, got {num_clips!r} for "
                         f"{kind!r}")
    d = data_cfg
    if kind == "pretrain":
        return TCLRPretrainDataset(videos, clip_len=d.clip_len, sparse_stride=d.sparse_stride,
                                   num_local=d.num_local, size=d.resolution, color=d.color,
                                   augment_on=d.augment_on, seed=seed, color_ops=d.color_ops)
    if kind == "train":
        return ClipDataset(videos, clip_len=d.clip_len, stride=d.train_stride, size=d.resolution,
                           color=d.color, augment="weak", seed=seed, crop=d.eval_crop,
                           color_ops=d.color_ops)
    return MultiClipDataset(videos, num_clips=num_clips, clip_len=d.clip_len,
                            stride=d.train_stride, size=d.resolution, color=d.color,
                            crop=d.eval_crop, flip=d.eval_flip)
