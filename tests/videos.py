"""Tiny encoded-video fixtures for the data-pipeline tests (written with cv2.VideoWriter).

Every frame carries its own index as 8 binary blocks along its top rows (white = 1), so a test can
tell which frame it got back even through lossy codecs; the rest of the frame is a moving, coloured
pattern so that consecutive frames differ everywhere and codecs produce real inter frames.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

# Container extension for each fourcc the tests use.
EXTENSION = {"XVID": ".avi", "MJPG": ".avi", "FFV1": ".avi", "mp4v": ".mp4"}
BITS = 8  # frame indices up to 255 are encoded


def frame_pattern(index: int, width: int, height: int) -> np.ndarray:
    """The BGR uint8 frame [height, width, 3] that make_video writes at `index`."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.empty((height, width, 3), np.float32)
    frame[..., 0] = 128 + 100 * np.sin((xx + 3 * index) / 7.0)
    frame[..., 1] = 128 + 100 * np.cos((yy - 2 * index) / 5.0)
    frame[..., 2] = (xx * 2 + yy + 5 * index) % 256
    block_w = width // BITS
    block_h = max(height // 6, 4)
    for bit in range(BITS):
        value = 255.0 if (index >> bit) & 1 else 0.0
        frame[:block_h, bit * block_w:(bit + 1) * block_w] = value
    return np.clip(frame, 0, 255).astype(np.uint8)


def decode_index(frame: np.ndarray) -> int:
    """Reads back the frame index that frame_pattern encoded ([H, W, 3] uint8, any channel order)."""
    height, width = frame.shape[:2]
    block_w = width // BITS
    block_h = max(height // 6, 4)
    index = 0
    for bit in range(BITS):
        block = frame[1:block_h - 1, bit * block_w + 1:(bit + 1) * block_w - 1]
        if block.mean() > 127:
            index |= 1 << bit
    return index


def make_video(path: str, num_frames: int, width: int = 64, height: int = 48,
               fourcc: str = "XVID", fps: float = 25.0) -> str:
    """Writes `num_frames` frames of frame_pattern to `path` and returns the path.

    Raises:
        RuntimeError: when this OpenCV build cannot write the codec.
    """
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} to {path}")
    for index in range(num_frames):
        writer.write(frame_pattern(index, width, height))
    writer.release()
    return path


def sequential_frames(path: str) -> np.ndarray:
    """Every frame of `path` by plain sequential cv2 decoding: [N, H, W, 3] uint8 BGR."""
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


def write_truncated(source: str, path: str, fraction: float = 0.5) -> str:
    """Copies the first `fraction` of the bytes of `source` to `path` (a truncated download)."""
    with open(source, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[: int(len(data) * fraction)])
    return path


def write_bytes(path: str, data: bytes) -> str:
    """Writes raw bytes (a zero-byte file, random bytes, a text file named .avi)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return path
