"""Pictures of what was learned: retrieval grids, confusion matrices and other heatmaps.

Drawn with plain tensor operations and torchvision's make_grid: no plotting library. Images are
uint8 tensors [3, H, W] in RGB order (TensorBoard's add_image layout); PNG files are written with
OpenCV, already a dependency (torchvision 0.29 deprecates its own PNG encoder).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.utils import make_grid

GREEN = (0, 170, 0)
RED = (220, 0, 0)
QUERY = (40, 90, 230)          # blue frame around the query thumbnails
WHITE = (255, 255, 255)
# Colour map of heatmaps: 0 -> white, 1 -> dark blue (like matplotlib's "Blues" end points).
LOW = (255, 255, 255)
HIGH = (8, 48, 107)


def save_png(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write a uint8 [3, H, W] RGB image (or [1, H, W] grey) as PNG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"save_png expects uint8 [3, H, W], got {image.dtype} "
                         f"{tuple(image.shape)}")
    rgb = image.cpu().expand(3, -1, -1).permute(1, 2, 0).numpy()          # [H, W, 3]
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1])):
        raise OSError(f"could not write PNG {path}")
    return path


# --------------------------------------------------------------------------------------------
# Thumbnails
# --------------------------------------------------------------------------------------------

def middle_frame(path: str, color: str = "rgb") -> np.ndarray:
    """The middle frame of a video as uint8 [H, W, 3] (robust to headers that overstate length).

    Raises:
        dataloaders.video.VideoDecodeError: when the video cannot be read.
    """
    from dataloaders.video import decode_frames, probe_video
    n = max(1, probe_video(path).frame_count)
    decoded = decode_frames(path, [n // 2], color=color)
    if len(decoded.indices) == 0:
        real = decoded.real_frame_count or 1
        decoded = decode_frames(path, [real // 2], color=color)
    return decoded.frames[0]


def thumbnail(frame: np.ndarray | torch.Tensor, size: tuple[int, int] = (96, 128)) -> torch.Tensor:
    """Resize a frame to ``size`` (H, W): uint8 [H0, W0, 3] (numpy) or [3, H0, W0] -> [3, H, W]."""
    t = torch.as_tensor(frame)
    if t.dim() == 3 and t.shape[-1] == 3 and t.shape[0] != 3:
        t = t.permute(2, 0, 1)                                           # [3, H0, W0]
    t = F.interpolate(t.unsqueeze(0).float(), size=size, mode="bilinear", align_corners=False,
                      antialias=True)
    return t.squeeze(0).round().clamp(0, 255).to(torch.uint8)


def with_border(image: torch.Tensor, color: Sequence[int], width: int = 4) -> torch.Tensor:
    """A coloured frame of ``width`` px around a uint8 [3, H, W] image -> [3, H+2w, W+2w]."""
    _, h, w = image.shape
    out = torch.tensor(color, dtype=torch.uint8).view(3, 1, 1).repeat(1, h + 2 * width,
                                                                     w + 2 * width)
    out[:, width:width + h, width:width + w] = image
    return out


def retrieval_grid(queries: torch.Tensor, neighbours: torch.Tensor, correct: torch.Tensor,
                   border: int = 4, padding: int = 3) -> torch.Tensor:
    """One row per query: its thumbnail (blue frame), then its top-k gallery thumbnails, each framed
    green when it has the query's class and red when not.

    Args:
        queries: uint8 [Q, 3, H, W] query thumbnails.
        neighbours: uint8 [Q, k, 3, H, W] thumbnails of the k nearest gallery videos, nearest first.
        correct: bool [Q, k], True where the neighbour's class equals the query's.
        border: width of the coloured frames in px.
        padding: white space between cells in px.
    Returns:
        uint8 [3, H_grid, W_grid].
    """
    q, k = correct.shape
    if queries.shape[0] != q or neighbours.shape[:2] != (q, k):
        raise ValueError(f"retrieval_grid: queries {tuple(queries.shape)}, neighbours "
                         f"{tuple(neighbours.shape)} and correct {tuple(correct.shape)} disagree")
    cells = []
    for i in range(q):
        cells.append(with_border(queries[i], QUERY, border))
        for j in range(k):
            cells.append(with_border(neighbours[i, j], GREEN if correct[i, j] else RED, border))
    return make_grid(torch.stack(cells), nrow=k + 1, padding=padding, pad_value=255)


# --------------------------------------------------------------------------------------------
# Heatmaps
# --------------------------------------------------------------------------------------------

def heatmap(values: np.ndarray | torch.Tensor, vmin: float = 0.0, vmax: float = 1.0,
            max_side: int = 800, min_cell: int = 4, grid: bool = True) -> torch.Tensor:
    """A matrix drawn as coloured cells, white (vmin) to dark blue (vmax); NaN cells are grey.

    Args:
        values: [R, C] numbers.
        vmin, vmax: values mapped to the two ends of the colour map (clipped outside).
        max_side: cell size is chosen so that the longer side is at most this (but >= min_cell).
        grid: thin light-grey lines between cells when cells are at least 6 px.
    Returns:
        uint8 [3, R * cell, C * cell].
    """
    v = torch.as_tensor(np.asarray(values, dtype=np.float64)).float()   # [R, C]
    rows, cols = v.shape
    cell = max(min_cell, max_side // max(rows, cols, 1))
    nan = torch.isnan(v)
    t = ((v - vmin) / max(vmax - vmin, 1e-12)).clamp(0, 1).nan_to_num(0.0)  # [R, C]
    low = torch.tensor(LOW, dtype=torch.float32).view(3, 1, 1)
    high = torch.tensor(HIGH, dtype=torch.float32).view(3, 1, 1)
    img = low + (high - low) * t.unsqueeze(0)                            # [3, R, C]
    img[:, nan] = 160.0
    img = img.repeat_interleave(cell, dim=1).repeat_interleave(cell, dim=2)  # [3, R*cell, C*cell]
    if grid and cell >= 6:
        img[:, ::cell, :] = 220.0
        img[:, :, ::cell] = 220.0
    return img.round().to(torch.uint8)


def confusion_image(cm: np.ndarray, max_side: int = 800) -> torch.Tensor:
    """Row-normalised confusion matrix as a heatmap (row = true class, column = predicted):
    the diagonal is each class's recall. Rows without videos are grey.

    Returns:
        uint8 [3, H, W].
    """
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(support > 0, cm / np.maximum(support, 1), np.nan)
    return heatmap(norm, 0.0, 1.0, max_side=max_side)
