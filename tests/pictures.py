"""Checks shared by the picture tests: a PNG that exists, has a size and is not blank."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def assert_picture(path: str | Path, min_h: int, min_w: int) -> np.ndarray:
    """The PNG at ``path`` exists, is at least min_h x min_w and is not blank: a real share of
    its pixels is not white and it holds many colours (text, colour map, lines).

    Returns:
        The image as uint8 [H, W, 3] (BGR).
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not a readable PNG"
    assert image.shape[0] >= min_h and image.shape[1] >= min_w, image.shape
    ink = (image < 245).any(axis=2).mean()                     # share of non-white pixels
    assert ink > 0.03, f"{path}: only {ink:.1%} of the pixels are drawn"
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50, f"{path}: too few colours"
    return image
