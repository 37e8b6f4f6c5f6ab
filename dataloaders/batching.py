"""Batches of the datasets' items: the collate functions and the model input of a pretraining batch.

Every collate function keeps all its items (a batch never shrinks; see dataloaders.datasets for the
bad-video policy) and concatenates their "failures" lists. A pretraining batch holds either the
workers' augmented clips (augment_on="cpu") or raw frames plus the parameters the workers drew
(augment_on="device"); pretrain_input turns either into the model input on the training device.
"""
from __future__ import annotations

import torch
from torch.utils.data import default_collate

from dataloaders.augment import AugmentParams, augment_pretrain_clips


def _pad_frames(frames: list[torch.Tensor]) -> torch.Tensor:
    """Stacks uint8 [..., 3, H, W] clips, zero-padding to the largest H and W (crops stay inside).

    Works on the channels-last memory of the items (movedim views), so the copy is a plain memcpy
    and the result is again a [B, ..., 3, H, W] view of channels-last memory.
    """
    last = [f.movedim(-3, -1) for f in frames]                          # [..., H, W, 3] views
    height = max(f.shape[-3] for f in last)
    width = max(f.shape[-2] for f in last)
    if all(f.shape[-3:-1] == (height, width) for f in last):
        return _stack(last).movedim(-1, -3)
    out = last[0].new_zeros((len(last), *last[0].shape[:-3], height, width, last[0].shape[-1]))
    for row, f in enumerate(last):
        out[row, ..., :f.shape[-3], :f.shape[-2], :] = f
    return out.movedim(-1, -3)


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """torch.stack, into shared memory inside a DataLoader worker (default_collate's way: the batch
    then crosses to the main process without another copy)."""
    return default_collate(tensors)


def _failures(items: list[dict]) -> list[tuple[str, str]]:
    return [failure for item in items for failure in item["failures"]]


def collate_pretrain(items: list[dict]) -> dict:
    """Batches TCLRPretrainDataset items without dropping any.

    Returns:
        {"clips": [B, V, 1+K, 3, T, S, S]} or {"frames": uint8 [B, 1+K, T, 3, H, W] (zero-padded to
        the largest frame), "params": AugmentParams of B * V * (1+K) rows}, plus "index" int64 [B]
        and "failures" (all items' lists, concatenated).
    """
    batch = {"index": torch.tensor([item["index"] for item in items]), "failures": _failures(items)}
    if _augmented(items[0]):
        batch["clips"] = _stack([item["clips"] for item in items])
    else:
        batch["frames"] = _pad_frames([item["frames"] for item in items])
        batch["params"] = AugmentParams.cat([item["params"] for item in items])
    return batch


def _augmented(item_or_batch: dict) -> bool:
    """Whether the workers augmented (augment_on="cpu", the dataset's decision: "clips") or left it
    to the training device ("frames" and "params"). The one test of that; everything downstream
    (collate, pretrain_input) asks here."""
    return "clips" in item_or_batch


def pretrain_input(batch: dict, device: torch.device, size: int = 112, color: str = "bgr",
                   color_ops: str = "release") -> torch.Tensor:
    """The model input of any collate_pretrain batch on `device`: float32 [B, V, 1+K, 3, T, S, S].

    Workers' clips (augment_on="cpu") are moved; raw frames (augment_on="device") are augmented on
    `device` by augment_pretrain_batch.
    """
    if _augmented(batch):
        return batch["clips"].to(device, non_blocking=True)
    return augment_pretrain_batch(batch, device, size, color, color_ops)


def augment_pretrain_batch(batch: dict, device: torch.device, size: int = 112,
                           color: str = "bgr", color_ops: str = "release") -> torch.Tensor:
    """The model input of a collate_pretrain batch made with augment_on="device".

    Moves the uint8 frames to `device` (non-blocking: pinned by the DataLoader) and augments them
    there with the parameters the workers drew (kept on the CPU: reading them needs no device sync).

    Returns:
        float32 [B, V, 1+K, 3, T, S, S] on `device`, equal (up to float rounding) to what
        augment_on="cpu" gives for the same items.
    """
    frames = batch["frames"].to(device, non_blocking=True)             # [B, 1+K, T, 3, H, W]
    return augment_pretrain_clips(frames, batch["params"], size, color, color_ops)


def collate_clips(items: list[dict]) -> dict:
    """Batches ClipDataset items: "clip" [B, 3, T, S, S], "label" [B], "index" [B], "failures"."""
    return {"clip": _stack([item["clip"] for item in items]),
            "label": torch.tensor([item["label"] for item in items]),
            "index": torch.tensor([item["index"] for item in items]),
            "failures": _failures(items)}


def collate_multiclip(items: list[dict]) -> dict:
    """Batches MultiClipDataset items: "clips" [B, C, 3, T, S, S], "clip_mask" bool [B, C],
    "label" [B], "video_id" [B]."""
    return {"clips": _stack([item["clips"] for item in items]),
            "clip_mask": torch.stack([item["clip_mask"] for item in items]),
            "label": torch.tensor([item["label"] for item in items]),
            "video_id": torch.tensor([item["video_id"] for item in items])}


def collate_features(items: list[dict]) -> dict:
    """Batches MultiClipDataset items made with bad_videos="record" (feature extraction).

    Returns:
        collate_multiclip's dict over the decoded items ("clips" [B', C, 3, T, S, S], "clip_mask",
        "label", "video_id"; B' may be 0), plus "info" [(video_id, frames, fps)] of every item and
        "failed" [(video_id, reason)] of the items that could not be decoded.
    """
    good = [item for item in items if "failure" not in item]
    if good:
        batch = collate_multiclip(good)
    else:
        batch = {"clips": torch.zeros(0), "clip_mask": torch.zeros(0, dtype=torch.bool),
                 "label": torch.zeros(0, dtype=torch.long),
                 "video_id": torch.zeros(0, dtype=torch.long)}
    batch["info"] = [(item["video_id"], item["frames"], item["fps"]) for item in items]
    batch["failed"] = [(item["video_id"], item["failure"]) for item in items if "failure" in item]
    return batch
