"""torch.hub entry points: this project's backbones with your weights, loaded strictly, no network.

    import cv2, torch
    model = torch.hub.load("path/to/this/repo", "r3d18", source="local", checkpoint="best.pth")
    cap = cv2.VideoCapture("video.mp4"); frames = [cap.read()[1] for _ in range(32)][::2]
    with torch.no_grad():
        fmap = model(model.transform(frames)[None])                       # [1, 512, 4]
    feature = torch.nn.functional.normalize(fmap.flatten(1), dim=1)      # [1, 2048]

``r3d18``, ``r2plus1d18`` and ``c3d`` take ``checkpoint`` (any file models.load_backbone_weights
reads: this project's, the release's with ``trust_checkpoint=True``, torchvision-format; or
``"random"``), ``width`` (default: the checkpoint's recorded width, else 64) and ``color`` (default:
the checkpoint's recorded channel order, else BGR). The model is the backbone in eval mode: clips
[B, 3, T, S, S] -> feature map [B, C, T/4]. ``model.transform`` turns a uint8 clip [T, H, W, 3] in
BGR (OpenCV's order; a list of frames or an array or tensor) into one model input [3, T, S, S]
exactly as the evaluation pipeline does (centre crop 0.8 of the height, resized to 112, /255).
A whole video's retrieval feature (9 clips, averaged): engine.features.feature_of_video, or
extract_features.py for many videos.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from dataloaders.augment import EVAL_CROP, apply_eval_transform
from models import CheckpointError, build_backbone, load_backbone_weights, read_checkpoint

dependencies = ["torch", "torchvision", "numpy", "cv2"]


class ClipTransform:
    """uint8 clip [T, H, W, 3] in BGR -> float32 [3, T, S, S]: the evaluation pipeline's transform
    (MultiClipDataset: the channel order ``color``, centre square of side int(crop * H), resized to
    ``size`` with antialiasing, scaled to [0, 1])."""

    def __init__(self, size: int = 112, crop: float = EVAL_CROP, color: str = "bgr",
                 flip: bool = False):
        if color not in ("bgr", "rgb"):
            raise ValueError(f"color must be 'bgr' or 'rgb', got {color!r}")
        self.size, self.crop, self.color, self.flip = size, crop, color, flip

    def __call__(self, clip) -> torch.Tensor:
        if isinstance(clip, (list, tuple)):
            clip = np.stack(clip)
        x = torch.as_tensor(np.ascontiguousarray(clip) if isinstance(clip, np.ndarray) else clip)
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[-1] != 3:
            raise ValueError(f"transform: expected a uint8 clip [T, H, W, 3] (BGR frames as OpenCV "
                             f"decodes them), got {x.dtype} {tuple(x.shape)}")
        if self.color == "rgb":
            x = x.flip(-1).contiguous()                              # BGR -> RGB
        frames = x.permute(0, 3, 1, 2)                               # [T, 3, H, W]
        return apply_eval_transform(frames, self.size, self.crop, self.flip)   # [3, T, S, S]

    def __repr__(self) -> str:
        return (f"ClipTransform(size={self.size}, crop={self.crop}, color={self.color!r}, "
                f"flip={self.flip})")


def _recorded_meta(checkpoint: str, trust_checkpoint: bool) -> dict:
    raw = read_checkpoint(checkpoint, trust_checkpoint)
    return dict(raw.get("meta") or {}) if isinstance(raw, dict) and "format" in raw else {}


def _backbone(name: str, checkpoint: str | None, width: int | None, trust_checkpoint: bool,
              color: str | None, resolution: int, crop: float) -> nn.Module:
    if not checkpoint:
        raise CheckpointError(f"torch.hub.load(..., {name!r}): pass checkpoint=PATH (a checkpoint "
                              "file) or checkpoint='random'; this entry point downloads nothing")
    report = None
    meta = {} if checkpoint == "random" else _recorded_meta(checkpoint, trust_checkpoint)
    model = build_backbone(name, width=width or meta.get("width") or 64)
    if checkpoint != "random":
        report = load_backbone_weights(model, checkpoint, trust_checkpoint=trust_checkpoint)
    learned = report.color if report is not None else None
    if color is not None and learned is not None and color != learned:
        raise CheckpointError(f"{checkpoint} was trained on {learned.upper()} frames; color="
                              f"{color!r} would feed it the other order: leave color out or pass "
                              f"color={learned!r}")
    model.eval()
    model.transform = ClipTransform(resolution, crop, color or learned or "bgr")
    model.load_report = report
    return model


def r3d18(checkpoint: str | None = None, width: int | None = None, trust_checkpoint: bool = False,
          color: str | None = None, resolution: int = 112, crop: float = EVAL_CROP) -> nn.Module:
    """R3D-18 with TCLR's layer4 (feature map [B, 8 * width, T/4]); see the module docstring."""
    return _backbone("r3d18", checkpoint, width, trust_checkpoint, color, resolution, crop)


def r2plus1d18(checkpoint: str | None = None, width: int | None = None,
               trust_checkpoint: bool = False, color: str | None = None, resolution: int = 112,
               crop: float = EVAL_CROP) -> nn.Module:
    """R(2+1)D-18 with TCLR's layer4; see the module docstring."""
    return _backbone("r2plus1d18", checkpoint, width, trust_checkpoint, color, resolution, crop)


def c3d(checkpoint: str | None = None, width: int | None = None, trust_checkpoint: bool = False,
        color: str | None = None, resolution: int = 112, crop: float = EVAL_CROP) -> nn.Module:
    """C3D; see the module docstring."""
    return _backbone("c3d", checkpoint, width, trust_checkpoint, color, resolution, crop)
