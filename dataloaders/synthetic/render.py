"""Rendering and writing one synthetic video: shapes, colours, backgrounds, sprites, the encoder.

`render_frames(spec)` is a pure function of a `VideoSpec` (the frames follow from the seed, the class
and the clip's group and number); `write_video` encodes them and checks that OpenCV decodes every
frame back (dataloaders.video counts them).
"""

from __future__ import annotations

import errno
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from atomic_io import disk_full, write_error
from dataloaders.synthetic.designs import (DEFAULT_DESIGN, SPRITE_SIZE, TEMPORAL_CLASSES,
                                           TRAJECTORY_BACKGROUND,
                                           TRAJECTORY_FOREGROUND, TRAJECTORY_HALF_SIZE,
                                           TRAJECTORY_NOISE, Actor, Stage, SyntheticDatasetError,
                                           TemporalClass, Track, anchor_in_band, build_track,
                                           get_design)
from dataloaders.video import VideoDecodeError, count_frames

FOURCC_PREFERENCE = ("XVID", "MJPG")  # XviD as UCF101; MJPG where the OpenCV build lacks it


# --------------------------------------------------------------------------------------------------
# Appearance: shapes, colours, backgrounds.


def _polygon_ring(n: int, rx: float = 1.0, ry: float = 1.0) -> np.ndarray:
    a = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.stack([rx * np.cos(a), ry * np.sin(a)], axis=1)


def _star() -> np.ndarray:
    ring = _polygon_ring(10)
    return ring * np.where(np.arange(10) % 2 == 0, 1.0, 0.45)[:, None]


# Unit outlines (max radius ~1); none is a circle, so every shape shows its rotation.
SHAPES: dict[str, np.ndarray] = {
    "square": np.array([[-0.75, -0.75], [0.75, -0.75], [0.75, 0.75], [-0.75, 0.75]]),
    "triangle": np.array([[0.0, -1.0], [0.87, 0.5], [-0.87, 0.5]]),
    "bar": np.array([[-1.0, -0.35], [1.0, -0.35], [1.0, 0.35], [-1.0, 0.35]]),
    "cross": np.array([[-0.3, -1], [0.3, -1], [0.3, -0.3], [1, -0.3], [1, 0.3], [0.3, 0.3], [0.3, 1],
                       [-0.3, 1], [-0.3, 0.3], [-1, 0.3], [-1, -0.3], [-0.3, -0.3]]),
    "ell": np.array([[-0.7, -1], [-0.1, -1], [-0.1, 0.4], [0.7, 0.4], [0.7, 1], [-0.7, 1]]),
    "diamond": np.array([[0.0, -1.0], [0.6, 0.0], [0.0, 1.0], [-0.6, 0.0]]),
    "arrow": np.array([[1, 0], [0.1, -0.8], [0.1, -0.3], [-1, -0.3], [-1, 0.3], [0.1, 0.3], [0.1, 0.8]]),
    "ellipse": _polygon_ring(20, 1.0, 0.5),
    "star": _star(),
}
SHAPE_NAMES = tuple(SHAPES)


def _luma(bgr: np.ndarray) -> float:
    return float(0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2])


def _contrasting_colour(rng: np.random.Generator, background_luma: float,
                        min_difference: float = 70.0) -> np.ndarray:
    """Random BGR colour whose luminance differs from the background's (it survives grayscale)."""
    for _ in range(64):
        colour = rng.uniform(0.0, 255.0, 3)
        if abs(_luma(colour) - background_luma) >= min_difference:
            return colour
    return np.full(3, 0.0 if background_luma > 127.0 else 255.0)


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A static grayscale texture in about [-1, 1]: flat, gradient, blobs, stripes or checker. [H, W]"""
    kind = rng.choice(["flat", "gradient", "blobs", "stripes", "checker"])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64) / height
    theta = rng.uniform(0.0, math.pi)
    along = xx * math.cos(theta) + yy * math.sin(theta)
    if kind == "flat":
        return np.zeros((height, width))
    if kind == "gradient":
        return 2.0 * (along - along.min()) / max(float(np.ptp(along)), 1e-6) - 1.0
    if kind == "blobs":
        coarse = rng.normal(size=(int(rng.integers(3, 7)), int(rng.integers(3, 9))))
        return np.clip(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), -2, 2) / 2
    cycles = rng.uniform(2.0, 6.0)
    wave = np.sin(2.0 * math.pi * cycles * along + rng.uniform(0.0, 2.0 * math.pi))
    if kind == "stripes":
        return wave
    across = -xx * math.sin(theta) + yy * math.cos(theta)
    return np.sign(wave * np.sin(2.0 * math.pi * cycles * across))


@dataclass(frozen=True)
class GroupStyle:
    """What clips of one UCF-style group share: background and camera noise."""

    background: np.ndarray  # float32 [H, W, 3], BGR in 0..255
    noise_sigma: float


def _group_style(rng: np.random.Generator, stage: Stage) -> GroupStyle:
    base = rng.uniform(30.0, 225.0, 3)
    texture = _texture(rng, stage.height, stage.width)[..., None]  # [H, W, 1]
    tint = rng.uniform(5.0, 30.0) * (1.0 + 0.3 * rng.normal(size=3))  # [3]
    background = np.clip(base + texture * tint, 0.0, 255.0).astype(np.float32)
    return GroupStyle(background, float(rng.uniform(0.0, 6.0)))


# --------------------------------------------------------------------------------------------------
# Rendering one video.


@dataclass(frozen=True)
class Sprite:
    """A drawable object: shape outline, colour and its track."""

    outline: np.ndarray  # [P, 2], unit size
    colour: np.ndarray  # [3] BGR
    size: float  # half-size, px
    track: Track


def _blend_polygon(frame: np.ndarray, points: np.ndarray, colour: np.ndarray, alpha: float) -> None:
    """Alpha-blend an anti-aliased filled polygon (sub-pixel vertices [P, 2]) into frame [H, W, 3]."""
    height, width = frame.shape[:2]
    x0, y0 = np.floor(points.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0 or alpha <= 0.0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    fixed = np.round((points - (x0, y0)) * 16.0).astype(np.int32)  # 4 fractional bits
    cv2.fillPoly(mask, [fixed], 255, lineType=cv2.LINE_AA, shift=4)
    weight = mask.astype(np.float32)[..., None] * np.float32(alpha / 255.0)  # [h, w, 1]
    roi = frame[y0:y1, x0:x1]
    roi += weight * (colour.astype(np.float32) - roi)


def _sprite_points(sprite: Sprite, t: int) -> np.ndarray:
    tr = sprite.track
    c, s = math.cos(tr.angle[t]), math.sin(tr.angle[t])
    rotated = sprite.outline @ np.array([[c, s], [-s, c]])
    return rotated * (sprite.size * tr.scale[t]) + (tr.x[t], tr.y[t])  # [P, 2]


def _make_sprites(rng: np.random.Generator, cls: TemporalClass, stage: Stage,
                  background_luma: float) -> tuple[list[Sprite], list[Sprite]]:
    """Actors (performing the class) and static distractors, appearance drawn independently of class."""
    num_actors = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    edges = np.linspace(0.0, stage.width, num_actors + 1)
    actors, distractors = [], []
    for i in range(num_actors):
        actor = Actor((float(edges[i]), float(edges[i + 1])), rng.uniform(*SPRITE_SIZE) * stage.height)
        actors.append(Sprite(SHAPES[rng.choice(SHAPE_NAMES)], _contrasting_colour(rng, background_luma),
                             actor.size, cls.make_track(rng, actor, stage)))
    for _ in range(int(rng.integers(0, 4))):
        actor = Actor((0.0, float(stage.width)), rng.uniform(*SPRITE_SIZE) * stage.height)
        x, y = anchor_in_band(rng, actor, stage)
        distractors.append(Sprite(SHAPES[rng.choice(SHAPE_NAMES)], _contrasting_colour(rng, background_luma),
                                  actor.size, build_track(rng, Stage(stage.width, stage.height, 1), x, y)))
    return actors, distractors


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render and write one video (picklable, for worker processes)."""

    path: str
    class_index: int  # position in TEMPORAL_CLASSES (stable across --classes)
    group: int  # 1-based
    clip: int  # 1-based
    seed: int
    width: int
    height: int
    frames: int
    fps: float
    fourcc: str
    design: str = DEFAULT_DESIGN


def render_frames(spec: VideoSpec) -> Iterator[np.ndarray]:
    """Yield the video's frames, uint8 [H, W, 3] BGR; a pure function of the spec (deterministic)."""
    if get_design(spec.design).look == "square":
        yield from _render_square(spec)
        return
    stage = Stage(spec.width, spec.height, spec.frames)
    cls = TEMPORAL_CLASSES[spec.class_index]
    style = _group_style(np.random.default_rng([spec.seed, 1, spec.class_index, spec.group]), stage)
    clip_rng = np.random.default_rng([spec.seed, 2, spec.class_index, spec.group, spec.clip])
    noise_rng = np.random.default_rng([spec.seed, 3, spec.class_index, spec.group, spec.clip])
    # clips of a group share the background up to a small colour shift
    background = np.clip(style.background + clip_rng.uniform(-10.0, 10.0, 3).astype(np.float32), 0, 255)
    actors, distractors = _make_sprites(clip_rng, cls, stage, _luma(background.mean(axis=(0, 1))))
    for sprite in distractors:
        _blend_polygon(background, _sprite_points(sprite, 0), sprite.colour, float(sprite.track.alpha[0]))
    for t in range(spec.frames):
        frame = background.copy()
        for sprite in actors:
            _blend_polygon(frame, _sprite_points(sprite, t), sprite.colour, float(sprite.track.alpha[t]))
        if style.noise_sigma > 0.0:
            frame += noise_rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(style.noise_sigma)
        yield np.clip(frame, 0.0, 255.0).astype(np.uint8)


def _render_square(spec: VideoSpec) -> Iterator[np.ndarray]:
    """Frames of a "trajectory" or "switch" design video: one square, one look for every video.
    [H, W, 3] uint8."""
    stage = Stage(spec.width, spec.height, spec.frames)
    clip_rng = np.random.default_rng([spec.seed, 2, spec.class_index, spec.group, spec.clip])
    noise_rng = np.random.default_rng([spec.seed, 3, spec.class_index, spec.group, spec.clip])
    size = clip_rng.uniform(*TRAJECTORY_HALF_SIZE) * stage.height
    grey = np.full(3, clip_rng.uniform(*TRAJECTORY_FOREGROUND))
    background = np.full((stage.height, stage.width, 3), clip_rng.uniform(*TRAJECTORY_BACKGROUND),
                         np.float32)
    kind = get_design(spec.design).classes[spec.class_index]
    track = kind.make_track(clip_rng, Actor((0.0, stage.width), size), stage)
    square = Sprite(SHAPES["square"] / 0.75, grey, size, track)
    for t in range(spec.frames):
        frame = background.copy()
        _blend_polygon(frame, _sprite_points(square, t), square.colour, 1.0)
        frame += noise_rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(TRAJECTORY_NOISE)
        yield np.clip(frame, 0.0, 255.0).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Writing and verifying video files.


def _decodable_frames(path: Path) -> int:
    """Number of frames OpenCV can actually decode from the file (by reading, not the header); 0 when
    it cannot open it. Not kept in dataloaders.video's per-process cache of real frame counts: a later
    generation in this process may write another video under the same path."""
    try:
        return count_frames(str(path), remember=False)
    except VideoDecodeError:
        return 0


def _write_frames(path: Path, frames: Iterator[np.ndarray], fourcc: str, fps: float,
                  size: tuple[int, int]) -> int:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise SyntheticDatasetError(f"OpenCV could not open a {fourcc} VideoWriter for {path}")
    written = 0
    try:
        for frame in frames:
            writer.write(frame)
            written += 1
    finally:
        writer.release()
    return written


def write_video(spec: VideoSpec) -> str:
    """Render, encode and verify one video; returns its path. Raises SyntheticDatasetError."""
    path = Path(spec.path)
    written = _write_frames(path, render_frames(spec), spec.fourcc, spec.fps, (spec.width, spec.height))
    decoded = _decodable_frames(path)
    if decoded != written:
        if disk_full(path):   # OpenCV's writer drops what the disk refuses without a word
            raise write_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "video",
                              kept=False)
        raise SyntheticDatasetError(
            f"{path}: wrote {written} frames with fourcc {spec.fourcc} but OpenCV decodes {decoded}")
    return spec.path


def pick_fourcc(folder: Path, width: int, height: int, fps: float) -> str:
    """First codec of FOURCC_PREFERENCE that this OpenCV build both writes and decodes."""
    probe = folder / ".fourcc_probe.avi"
    frames = [np.full((height, width, 3), v, np.uint8) for v in (0, 128, 255)]
    try:
        for fourcc in FOURCC_PREFERENCE:
            try:
                if _write_frames(probe, iter(frames), fourcc, fps, (width, height)) == 3 \
                        and _decodable_frames(probe) == 3:
                    return fourcc
            except SyntheticDatasetError:
                continue
    finally:
        probe.unlink(missing_ok=True)
    raise SyntheticDatasetError(
        f"this OpenCV build ({cv2.__version__}) cannot write and read back AVI with any of "
        f"{FOURCC_PREFERENCE}; install opencv-python-headless (which bundles FFmpeg)")
