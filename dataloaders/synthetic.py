"""Synthetic video dataset whose classes are defined only by temporal structure.

It writes real encoded AVI files (OpenCV VideoWriter; XviD like UCF101, MJPG where XviD is missing) in
the on-disk layout of UCF101 (default) or HMDB51 with the official split-file formats (TCLR_SPEC
section 8), so every loader, training script and evaluation runs unchanged on it. It is the dataset of
the CPU-sized demo and of the tests.

Class design (TCLR_SPEC section 11). TCLR pretraining augments every clip with a random square crop
(60-100 % of the frame height, so absolute position and size are lost), a horizontal flip (left/right
and clockwise/anticlockwise swap), grayscale / colour jitter / channel drop (colour identity is lost)
and mirror padding at the end of short videos. A class that one of these erases would ask
self-supervision to destroy its own label, so every class here is a temporal pattern that is flip-,
crop- and colour-invariant, and its single frames are distributed like those of every other class:

- 1 to 3 "actors" per video perform the class's pattern, each with its own shape, colour, size,
  position and random phase (so any window of the video shows the pattern); 0 to 3 static
  distractors of the same shapes sit on a textured, noisy background.
- Size and opacity, which some classes vary over time, follow one marginal distribution for every
  sprite of every class, and no object ever vanishes, so object size, translucency and object count
  in one frame say nothing about the class.
- Periods and speeds are set for the clips TCLR samples: 16 frames at stride 4 (64-frame span) for
  pretraining, 16 at stride 2 (32 frames) for classification, at frame sizes down to 64x48 px. Fast
  and slow variants differ by at least 2.5x, more than a crop's rescaling (up to 1.67x) can change.
- Appearance (background colour/texture/noise) is shared within a UCF-style group (gXX), so the
  group-wise splits test on unseen backgrounds as UCF101's test on unseen actors and scenes.

Two designs (`--design`, `DESIGNS`): "varied" (the default, described above: the demo's and the
tests' data) and "trajectory" (the learning demo's data): every video has the same look, one light
square on a flat grey background, and six classes differ only in the square's path (static,
horizontal / vertical / diagonal swing, circle, bouncing drift). There instance discrimination has no
appearance shortcut: the only way to tell two videos apart is motion (README "Demo and mini
ablation" has the measurements that led to it).

Run `python -m dataloaders.synthetic --out DIR` (flags in `build_parser`); `separability_check`
measures that single frames carry no class information while short clips do (also
scripts/check_synthetic.py). A manifest (synthetic_manifest.json) records the arguments, every video's
label and split roles, and the top-level entries the generator owns.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

from user_errors import UserError

GENERATOR_VERSION = 1
MANIFEST_NAME = "synthetic_manifest.json"
FOURCC_PREFERENCE = ("XVID", "MJPG")  # XviD as UCF101; MJPG where the OpenCV build lacks it
UCF_EOL = "\r\n"  # the official ucfTrainTestlist files end lines with CRLF
HMDB_EOL = " \n"  # the official HMDB51 split files end lines with a space, then LF
LAYOUTS = ("ucf101", "hmdb51")
SPLIT_FOLDERS = {"ucf101": "ucfTrainTestlist", "hmdb51": "testTrainMulti_7030_splits"}
NUM_SPLITS = 3
MIN_VIDEOS_PER_CLASS = 4  # three disjoint test groups plus one group that is always in train
UCF_TEST_GROUP_FRACTION = 7 / 25  # official UCF101: groups 1-7, 8-14, 15-21 of 25 are the test sets
HMDB_TEST_FRACTION = 0.3  # official HMDB51: 70 train / 30 test videos per class


class SyntheticDatasetError(UserError):
    """A bad argument, an unusable output folder or a video that could not be written."""


# --------------------------------------------------------------------------------------------------
# Temporal classes: each turns (rng, actor, stage) into a per-frame track of the actor.


@dataclass(frozen=True)
class Stage:
    """Frame geometry of one video."""

    width: int
    height: int
    frames: int


@dataclass(frozen=True)
class Actor:
    """Where one actor lives (a horizontal band, px) and its half-size in px at scale 1."""

    band: tuple[float, float]
    size: float


@dataclass(frozen=True)
class Track:
    """Per-frame state of one actor; every array has shape [T]."""

    x: np.ndarray  # centre, px
    y: np.ndarray  # centre, px
    scale: np.ndarray  # size multiplier
    angle: np.ndarray  # orientation, radians
    alpha: np.ndarray  # opacity in [0, 1]


@dataclass(frozen=True)
class TemporalClass:
    """A class: its UCF-style name, why the label survives the augmentations, and its dynamics."""

    name: str
    invariance: str
    make_track: Callable[[np.random.Generator, Actor, Stage], Track]


def _phase_ramp(rng: np.random.Generator, frames: int, period: float) -> np.ndarray:
    """Sawtooth in [0, 1) with the given period (frames) and a random phase. Returns [T]."""
    t = np.arange(frames, dtype=np.float64)
    return ((t + rng.uniform(0.0, period)) / period) % 1.0


def _anchor(rng: np.random.Generator, actor: Actor, stage: Stage,
            reach: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
    """Random centre in the actor's band that keeps actor and its excursion `reach` (dx, dy) inside."""
    margin_x, margin_y = actor.size + reach[0], actor.size + reach[1]
    lo = max(actor.band[0], margin_x)
    hi = max(lo, min(actor.band[1], stage.width - margin_x))
    y_hi = max(margin_y, stage.height - margin_y)
    return rng.uniform(lo, hi), rng.uniform(min(margin_y, y_hi), y_hi)


# A size or opacity ramp runs from a random floor up to 1; sprites that do not ramp draw a static
# value from the same marginal, so neither size nor translucency reveals a class in a single frame.
SCALE_FLOOR = (0.4, 0.5)
ALPHA_FLOOR = (0.3, 0.4)
SPRITE_SIZE = (0.12, 0.2)  # half-size at scale 1, in frame heights


def _from_floor(rng: np.random.Generator, floor: tuple[float, float], ramp) -> np.ndarray:
    """Map ramp values in [0, 1] to [f, 1] with a random floor f ~ U(floor)."""
    low = rng.uniform(*floor)
    return low + (1.0 - low) * np.asarray(ramp, dtype=np.float64)


def _track(rng: np.random.Generator, stage: Stage, x, y, scale=None, angle=None, alpha=None) -> Track:
    """Broadcast to [T] arrays; a missing scale/angle/alpha is a static random draw (shared marginals)."""
    scale = _from_floor(rng, SCALE_FLOOR, rng.uniform()) if scale is None else scale
    angle = rng.uniform(0.0, 2.0 * math.pi) if angle is None else angle
    alpha = _from_floor(rng, ALPHA_FLOOR, rng.uniform()) if alpha is None else alpha
    full = [np.broadcast_to(np.asarray(v, dtype=np.float64), (stage.frames,)).copy()
            for v in (x, y, scale, angle, alpha)]
    return Track(*full)


_RAMP_FLOORS = {"scale": SCALE_FLOOR, "alpha": ALPHA_FLOOR}


def _ramp(channel: str, rising: bool) -> Callable[[np.random.Generator, Actor, Stage], Track]:
    """A repeating ramp of size ("scale": Expand/Shrink) or opacity ("alpha": FadeIn/FadeOut)."""
    floor = _RAMP_FLOORS[channel]

    def make(rng: np.random.Generator, actor: Actor, stage: Stage) -> Track:
        ramp = _phase_ramp(rng, stage.frames, rng.uniform(20.0, 36.0))
        x, y = _anchor(rng, actor, stage)
        values = _from_floor(rng, floor, ramp if rising else 1.0 - ramp)
        return _track(rng, stage, x, y, **{channel: values})
    return make


def _blink(period_range: tuple[float, float]) -> Callable[[np.random.Generator, Actor, Stage], Track]:
    def make(rng: np.random.Generator, actor: Actor, stage: Stage) -> Track:
        ramp = _phase_ramp(rng, stage.frames, rng.uniform(*period_range))
        x, y = _anchor(rng, actor, stage)
        # between a faint and a strong opacity of the shared marginal, never invisible: an object that
        # vanished would change the object count of single frames and give the class away
        levels = np.where(ramp < 0.5, rng.uniform(0.75, 1.0), rng.uniform(0.0, 0.25))
        return _track(rng, stage, x, y, alpha=_from_floor(rng, ALPHA_FLOOR, levels))
    return make


def _swing(vertical: bool) -> Callable[[np.random.Generator, Actor, Stage], Track]:
    def make(rng: np.random.Generator, actor: Actor, stage: Stage) -> Track:
        amplitude = rng.uniform(0.10, 0.20) * stage.height
        wave = amplitude * np.sin(2.0 * math.pi * _phase_ramp(rng, stage.frames, rng.uniform(14.0, 28.0)))
        reach = (0.0, amplitude) if vertical else (amplitude, 0.0)
        x, y = _anchor(rng, actor, stage, reach)
        return _track(rng, stage, x, y + wave) if vertical else _track(rng, stage, x + wave, y)
    return make


def _fold(position: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect an unbounded 1-D path into [lo, hi] (an object bouncing off the walls). Returns [T]."""
    span = max(hi - lo, 1e-6)
    u = np.mod(position - lo, 2.0 * span)
    return lo + np.where(u > span, 2.0 * span - u, u)


def _drift(speed_range: tuple[float, float]) -> Callable[[np.random.Generator, Actor, Stage], Track]:
    def make(rng: np.random.Generator, actor: Actor, stage: Stage) -> Track:
        speed = rng.uniform(*speed_range) * stage.height  # px per frame
        # diagonal-ish directions: a flip maps them onto each other, and they never look like a swing
        heading = math.radians(45.0 + 90.0 * rng.integers(4) + rng.uniform(-20.0, 20.0))
        t = np.arange(stage.frames, dtype=np.float64)
        m = actor.size
        x0, y0 = rng.uniform(m, stage.width - m), rng.uniform(m, stage.height - m)
        x = _fold(x0 + speed * math.cos(heading) * t, m, stage.width - m)
        y = _fold(y0 + speed * math.sin(heading) * t, m, stage.height - m)
        return _track(rng, stage, x, y)
    return make


def _spin(degrees_per_frame: tuple[float, float]) -> Callable[[np.random.Generator, Actor, Stage], Track]:
    def make(rng: np.random.Generator, actor: Actor, stage: Stage) -> Track:
        omega = math.radians(rng.uniform(*degrees_per_frame)) * rng.choice([-1.0, 1.0])
        angle = rng.uniform(0.0, 2.0 * math.pi) + omega * np.arange(stage.frames)
        x, y = _anchor(rng, actor, stage)
        return _track(rng, stage, x, y, angle=angle)
    return make


# Order matters: `--classes N` takes the first N, so the strongest, simplest contrasts come first.
TEMPORAL_CLASSES: tuple[TemporalClass, ...] = (
    TemporalClass("Expand", "size grows from 40-50 % to 100 % over 20-36 frames, then restarts small; "
                  "crops rescale size but keep its growth, flips and colour changes do not touch it",
                  _ramp("scale", rising=True)),
    TemporalClass("Shrink", "time reverse of Expand; same invariances", _ramp("scale", rising=False)),
    TemporalClass("BlinkFast", "opacity toggles strong/faint with period 8-12 frames; blinking has no "
                  "direction, size or colour, and the same duty cycle as BlinkSlow", _blink((8.0, 12.0))),
    TemporalClass("BlinkSlow", "toggles with period 28-40 frames (>=2.3x BlinkFast)", _blink((28.0, 40.0))),
    TemporalClass("SwingVertical", "sinusoidal up-down oscillation (period 14-28 frames); square crops "
                  "and horizontal flips keep the axis vertical", _swing(vertical=True)),
    TemporalClass("SwingHorizontal", "left-right oscillation; a horizontal flip only shifts its phase",
                  _swing(vertical=False)),
    TemporalClass("DriftFast", "straight diagonal motion bouncing off the walls at 2.5-4 % of the "
                  "height per frame; direction is random (flip-invariant)", _drift((0.025, 0.04))),
    TemporalClass("DriftSlow", "as DriftFast at 0.5-0.9 %/frame (>=2.8x slower: more than a crop's "
                  "1.67x rescaling)", _drift((0.005, 0.009))),
    TemporalClass("SpinFast", "rotation in place at 6-9 deg/frame, direction random, so a flip "
                  "(which reverses it) changes nothing; rotation speed survives crops",
                  _spin((6.0, 9.0))),
    TemporalClass("SpinSlow", "rotation at 1.2-2.2 deg/frame (>=2.7x slower)", _spin((1.2, 2.2))),
    TemporalClass("FadeIn", "opacity ramps from 30-40 % to 100 % over 20-36 frames, then drops back "
                  "at once; contrast/brightness/grayscale act on the whole clip, so the ramp stays",
                  _ramp("alpha", rising=True)),
    TemporalClass("FadeOut", "time reverse of FadeIn (appears at once, then fades)",
                  _ramp("alpha", rising=False)),
)
CLASS_REGISTRY: dict[str, TemporalClass] = {c.name: c for c in TEMPORAL_CLASSES}
CLASS_INDEX: dict[str, int] = {c.name: i for i, c in enumerate(TEMPORAL_CLASSES)}
MAX_CLASSES = len(TEMPORAL_CLASSES)


# The "trajectory" design (the learning demo's data): every video has the same kind of look, a
# light square on a flat grey background with a little camera noise, and the classes differ only in
# the square's path. The look varies between videos only within what the pretraining augmentations
# already vary (the square's size within a crop's rescaling range, grey levels within the
# brightness / contrast jitter), so it is no reliable shortcut for instance discrimination, which has
# to use motion; but it does move random-init features, which pretraining can learn to ignore. The
# square's position changes between the four dense clips of a window, which gives the temporal
# terms a difference that survives crops, flips and colour jitter. The centre (or the middle of the
# path) stays in the middle 30 % of the frame, so that every pretraining crop (at least 60 % of the
# height) sees the square.
TRAJECTORY_BACKGROUND = (80.0, 130.0)  # grey level of the flat background, per video
TRAJECTORY_FOREGROUND = (190.0, 240.0)  # grey level of the square, per video
TRAJECTORY_HALF_SIZE = (0.14, 0.22)  # half-size of the square, frame heights, per video
TRAJECTORY_NOISE = 3.0  # sigma of the Gaussian camera noise, grey levels
TRAJECTORY_CENTRE = 0.3  # the centre starts in the middle 30 % of the frame (width and height)
TRAJECTORY_AMPLITUDE = (0.12, 0.20)  # swing / orbit amplitude, frame heights
TRAJECTORY_PERIOD = (16.0, 28.0)  # swing / orbit period, frames
TRAJECTORY_SPEED = (0.024, 0.04)  # drift speed, frame heights per frame
TRAJECTORY_DRIFT_BOX = 0.6  # a drifting square bounces inside the middle 60 % of the frame


def _middle(rng: np.random.Generator, stage: Stage) -> tuple[float, float]:
    """A random point in the middle TRAJECTORY_CENTRE fraction of the frame (px)."""
    half = TRAJECTORY_CENTRE / 2.0
    return (stage.width * rng.uniform(0.5 - half, 0.5 + half),
            stage.height * rng.uniform(0.5 - half, 0.5 + half))


def _plain_track(stage: Stage, x, y) -> Track:
    """A trajectory-design track: full size, no rotation, opaque. Returns a Track of [T] arrays."""
    return _track(np.random.default_rng(0), stage, x, y, scale=1.0, angle=0.0, alpha=1.0)


def _oscillation(axes: str) -> Callable[[np.random.Generator, Actor, Stage], Track]:
    """Sinusoidal motion about a middle point: axes "x", "y", "diagonal" (either one) or "orbit"
    (a circle, either direction, so that a flip maps the class onto itself)."""
    def make(rng: np.random.Generator, actor: Actor, stage: Stage) -> Track:
        amplitude = rng.uniform(*TRAJECTORY_AMPLITUDE) * stage.height
        phase = 2.0 * math.pi * _phase_ramp(rng, stage.frames, rng.uniform(*TRAJECTORY_PERIOD))
        x, y = _middle(rng, stage)
        if axes == "orbit":
            turn = rng.choice([-1.0, 1.0])
            return _plain_track(stage, x + amplitude * np.cos(phase), y + turn * amplitude * np.sin(phase))
        wave = amplitude * np.sin(phase)
        if axes == "x":
            return _plain_track(stage, x + wave, y)
        if axes == "y":
            return _plain_track(stage, x, y + wave)
        slope = rng.choice([-1.0, 1.0]) / math.sqrt(2.0)
        return _plain_track(stage, x + wave / math.sqrt(2.0), y + slope * wave)
    return make


def _static(rng: np.random.Generator, actor: Actor, stage: Stage) -> Track:
    return _plain_track(stage, *_middle(rng, stage))


def _bounce(rng: np.random.Generator, actor: Actor, stage: Stage) -> Track:
    speed = rng.uniform(*TRAJECTORY_SPEED) * stage.height  # px per frame
    heading = math.radians(45.0 + 90.0 * rng.integers(4) + rng.uniform(-20.0, 20.0))
    t = np.arange(stage.frames, dtype=np.float64)
    x0, y0 = _middle(rng, stage)
    margin = (1.0 - TRAJECTORY_DRIFT_BOX) / 2.0
    x = _fold(x0 + speed * math.cos(heading) * t, margin * stage.width, (1.0 - margin) * stage.width)
    y = _fold(y0 + speed * math.sin(heading) * t, margin * stage.height, (1.0 - margin) * stage.height)
    return _plain_track(stage, x, y)


TRAJECTORY_CLASSES: tuple[TemporalClass, ...] = (
    TemporalClass("Static", "the square does not move (only the camera noise changes)", _static),
    TemporalClass("SwingHorizontal", "left-right sinusoid, amplitude 12-20 % of the height, period "
                  "16-28 frames; a flip only shifts its phase", _oscillation("x")),
    TemporalClass("SwingVertical", "up-down sinusoid; crops and flips keep the axis vertical",
                  _oscillation("y")),
    TemporalClass("SwingDiagonal", "sinusoid along either diagonal (a flip swaps the two)",
                  _oscillation("diagonal")),
    TemporalClass("Circle", "orbit of the same amplitude and period, either direction (a flip "
                  "reverses it)", _oscillation("orbit")),
    TemporalClass("Drift", "straight motion at 2.4-4 % of the height per frame in a random diagonal "
                  "heading, bouncing inside the middle 60 % of the frame", _bounce),
)


@dataclass(frozen=True)
class Design:
    """A class set and the appearance its videos are drawn with (see `DESIGNS`)."""

    name: str
    summary: str
    classes: tuple[TemporalClass, ...]

    def index(self, kind: str) -> int:
        """Position of class `kind` in this design's class set (stable across --classes)."""
        return [c.name for c in self.classes].index(kind)


DESIGNS: dict[str, Design] = {
    "varied": Design("varied", "12 motion/appearance-change classes; shapes, colours, sizes, "
                     "backgrounds and noise vary within every class (the demo's and the tests' data)",
                     TEMPORAL_CLASSES),
    "trajectory": Design("trajectory", "6 classes that differ only in the path of one square; every "
                         "video has the same look (the learning demo's data)", TRAJECTORY_CLASSES),
}
DEFAULT_DESIGN = "varied"


def get_design(name: str) -> Design:
    """The design called `name`. Raises SyntheticDatasetError naming the known ones."""
    if name not in DESIGNS:
        raise SyntheticDatasetError(f"design={name!r}: choose one of {', '.join(DESIGNS)}")
    return DESIGNS[name]


def class_names(num_classes: int, design: str = DEFAULT_DESIGN) -> list[str]:
    """The first `num_classes` class names of a design in registry order (not yet sorted)."""
    classes = get_design(design).classes
    if not 2 <= num_classes <= len(classes):
        raise SyntheticDatasetError(
            f"classes={num_classes}: the {design!r} synthetic design has 2 to {len(classes)} classes "
            f"({', '.join(c.name for c in classes)})")
    return [c.name for c in classes[:num_classes]]


def hmdb_class_name(name: str) -> str:
    """HMDB51-style folder name for a class: 'BlinkFast' -> 'blink_fast'."""
    return "".join("_" + ch.lower() if ch.isupper() and i else ch.lower() for i, ch in enumerate(name))


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
        x, y = _anchor(rng, actor, stage)
        distractors.append(Sprite(SHAPES[rng.choice(SHAPE_NAMES)], _contrasting_colour(rng, background_luma),
                                  actor.size, _track(rng, Stage(stage.width, stage.height, 1), x, y)))
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
    if spec.design == "trajectory":
        yield from _render_trajectory(spec)
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


def _render_trajectory(spec: VideoSpec) -> Iterator[np.ndarray]:
    """Frames of a "trajectory" design video: one square, one look for every video. [H, W, 3] uint8."""
    stage = Stage(spec.width, spec.height, spec.frames)
    clip_rng = np.random.default_rng([spec.seed, 2, spec.class_index, spec.group, spec.clip])
    noise_rng = np.random.default_rng([spec.seed, 3, spec.class_index, spec.group, spec.clip])
    size = clip_rng.uniform(*TRAJECTORY_HALF_SIZE) * stage.height
    grey = np.full(3, clip_rng.uniform(*TRAJECTORY_FOREGROUND))
    background = np.full((stage.height, stage.width, 3), clip_rng.uniform(*TRAJECTORY_BACKGROUND),
                         np.float32)
    track = TRAJECTORY_CLASSES[spec.class_index].make_track(clip_rng, Actor((0.0, stage.width), size),
                                                           stage)
    square = Sprite(SHAPES["square"] / 0.75, grey, size, track)
    for t in range(spec.frames):
        frame = background.copy()
        _blend_polygon(frame, _sprite_points(square, t), square.colour, 1.0)
        frame += noise_rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(TRAJECTORY_NOISE)
        yield np.clip(frame, 0.0, 255.0).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Writing and verifying video files.


def count_decoded_frames(path: str | Path) -> int:
    """Number of frames OpenCV can actually decode from the file (by reading, not the header)."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return 0
        count = 0
        while capture.grab():
            count += 1
        return count
    finally:
        capture.release()


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
    decoded = count_decoded_frames(path)
    if decoded != written:
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
                        and count_decoded_frames(probe) == 3:
                    return fourcc
            except SyntheticDatasetError:
                continue
    finally:
        probe.unlink(missing_ok=True)
    raise SyntheticDatasetError(
        f"this OpenCV build ({cv2.__version__}) cannot write and read back AVI with any of "
        f"{FOURCC_PREFERENCE}; install opencv-python-headless (which bundles FFmpeg)")


# --------------------------------------------------------------------------------------------------
# Groups and splits.


def group_layout(videos_per_class: int) -> list[int]:
    """Clips per UCF-style group (len = number of groups), like UCF101's 25 groups of 4-7 clips.

    The number of groups G is chosen so that a test band of n = round(7/25 * G) groups (official:
    7 of 25) leaves train groups after three disjoint bands (3n < G), with at least 3 clips per group
    where possible, and n/G as close to 7/25 as possible.
    """
    if videos_per_class < MIN_VIDEOS_PER_CLASS:
        raise SyntheticDatasetError(
            f"videos_per_class={videos_per_class}: need at least {MIN_VIDEOS_PER_CLASS} so that each of "
            f"the {NUM_SPLITS} splits has train and test videos of every class")
    best = None
    for groups in range(MIN_VIDEOS_PER_CLASS, min(25, videos_per_class) + 1):
        if groups > MIN_VIDEOS_PER_CLASS and videos_per_class / groups < 3:
            break
        band = _test_band(groups)
        score = (abs(band / groups - UCF_TEST_GROUP_FRACTION), groups)
        best = score if best is None or score < best else best
    groups = best[1]
    base, extra = divmod(videos_per_class, groups)
    return [base + (1 if g < extra else 0) for g in range(groups)]


def _test_band(groups: int) -> int:
    """Groups per test band: about 7/25 of them, leaving at least one train group."""
    return max(1, min(round(groups * UCF_TEST_GROUP_FRACTION), (groups - 1) // NUM_SPLITS))


def ucf_roles(group: int, groups: int) -> dict[int, str]:
    """'train' or 'test' of a 1-based group for splits 1..3 (split k tests band k of groups)."""
    band = _test_band(groups)
    return {k: "test" if (k - 1) * band < group <= k * band else "train" for k in range(1, NUM_SPLITS + 1)}


def hmdb_roles(rng: np.random.Generator, num_videos: int) -> list[dict[int, str]]:
    """Per video, 'train'/'test'/'unused' for splits 1..3: disjoint ~30 % test sets, 10 % unused."""
    order = rng.permutation(num_videos)
    unused = num_videos // 10
    test = max(1, round(HMDB_TEST_FRACTION * (num_videos - unused)))
    roles = [dict() for _ in range(num_videos)]
    for k in range(1, NUM_SPLITS + 1):
        start = (k - 1) * test
        for offset in range(num_videos):
            video = int(order[(start + offset) % num_videos])
            roles[video][k] = "test" if offset < test else "unused" if offset < test + unused else "train"
    return roles


@dataclass
class VideoEntry:
    """One video of the dataset as the manifest records it."""

    path: str  # relative to the dataset root
    class_name: str  # as the layout spells it: 'BlinkFast' (UCF101) or 'blink_fast' (HMDB51)
    kind: str  # TEMPORAL_CLASSES name that rendered it
    label: int  # 0-based, alphabetical order of class_name (classInd.txt holds label + 1)
    group: int
    clip: int
    roles: dict[int, str] = field(default_factory=dict)  # split -> train | test | unused


def _video_path(layout: str, class_name: str, group: int, clip: int) -> str:
    if layout == "ucf101":
        return f"UCF-101/{class_name}/v_{class_name}_g{group:02d}_c{clip:02d}.avi"
    return f"{class_name}/{class_name}_g{group:02d}_c{clip:02d}.avi"


def plan_videos(kinds: Sequence[str], videos_per_class: int, layout: str, seed: int,
                design: str = DEFAULT_DESIGN) -> list[VideoEntry]:
    """All videos of the dataset with relative paths, labels and split roles (no I/O).

    Args:
        kinds: class names of the design to include.
        videos_per_class, layout, seed, design: as in `generate`.
    """
    shown = {k: k if layout == "ucf101" else hmdb_class_name(k) for k in kinds}
    labels = {name: i for i, name in enumerate(sorted(shown.values()))}
    sizes = group_layout(videos_per_class)
    entries = []
    for kind in kinds:
        name = shown[kind]
        per_class = [VideoEntry(_video_path(layout, name, group, clip), name, kind, labels[name], group, clip,
                                ucf_roles(group, len(sizes)) if layout == "ucf101" else {})
                     for group, clips in enumerate(sizes, start=1) for clip in range(1, clips + 1)]
        if layout == "hmdb51":
            rng = np.random.default_rng([seed, 4, get_design(design).index(kind)])
            for entry, roles in zip(per_class, hmdb_roles(rng, len(per_class))):
                entry.roles = roles
        entries.extend(per_class)
    return entries


def _write_text(path: Path, lines: Sequence[str], eol: str) -> None:
    # newline="" so Python writes the line ends exactly as given
    with open(path, "w", encoding="ascii", newline="") as handle:
        handle.write("".join(line + eol for line in lines))


def write_split_files(root: Path, entries: Sequence[VideoEntry], layout: str) -> None:
    """Write the split files in the official formats (TCLR_SPEC section 8) under `root`."""
    rows = sorted(entries, key=lambda e: e.path)
    if layout == "ucf101":
        folder = root / SPLIT_FOLDERS["ucf101"]
        folder.mkdir(parents=True, exist_ok=True)
        names = sorted({e.class_name for e in rows})
        _write_text(folder / "classInd.txt", [f"{i} {n}" for i, n in enumerate(names, start=1)], UCF_EOL)
        in_list = [e.path.removeprefix("UCF-101/") for e in rows]  # "<Class>/<file>.avi"
        for k in range(1, NUM_SPLITS + 1):
            train = [f"{p} {e.label + 1}" for p, e in zip(in_list, rows) if e.roles[k] == "train"]
            _write_text(folder / f"trainlist0{k}.txt", train, UCF_EOL)
            test = [p for p, e in zip(in_list, rows) if e.roles[k] == "test"]
            _write_text(folder / f"testlist0{k}.txt", test, UCF_EOL)
        return
    folder = root / SPLIT_FOLDERS["hmdb51"]
    folder.mkdir(parents=True, exist_ok=True)
    ids = {"unused": 0, "train": 1, "test": 2}
    for name in sorted({e.class_name for e in rows}):
        for k in range(1, NUM_SPLITS + 1):
            _write_text(folder / f"{name}_test_split{k}.txt",
                        [f"{Path(e.path).name} {ids[e.roles[k]]}" for e in rows if e.class_name == name],
                        HMDB_EOL)


# --------------------------------------------------------------------------------------------------
# Output folder handling (manifest, refusing foreign folders, skipping identical datasets).


def _arguments(num_classes: int, videos_per_class: int, frames: int, width: int, height: int,
               seed: int, layout: str, fps: float, design: str) -> dict:
    return {"classes": num_classes, "videos_per_class": videos_per_class, "frames": frames,
            "width": width, "height": height, "seed": seed, "layout": layout, "fps": fps,
            "design": design, "generator_version": GENERATOR_VERSION}


def read_manifest(root: str | Path) -> dict:
    """The manifest of a generated dataset. Raises SyntheticDatasetError if absent or unreadable."""
    path = Path(root) / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SyntheticDatasetError(
            f"{path} not found: {root} is not a generated synthetic dataset") from None
    except json.JSONDecodeError as err:
        raise SyntheticDatasetError(
            f"{path} is not valid JSON ({err}); regenerate with --overwrite") from None


def _prepare_folder(out: Path, arguments: dict, overwrite: bool) -> bool:
    """Make `out` ready for writing. Returns True when the same complete dataset is already there."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        out.mkdir(parents=True, exist_ok=True)
        return False
    if not out.is_dir():
        raise SyntheticDatasetError(f"--out {out} exists and is not a folder")
    if not (out / MANIFEST_NAME).is_file():
        raise SyntheticDatasetError(
            f"--out {out} is not empty and has no {MANIFEST_NAME}, so it is not a synthetic dataset: "
            f"refusing to write into it (even with --overwrite); choose a new or empty folder")
    old = read_manifest(out)
    same = old.get("arguments") == arguments
    if same and old.get("complete"):
        return True
    if not same and not overwrite:
        changed = {k: (old.get("arguments", {}).get(k), v) for k, v in arguments.items()
                   if old.get("arguments", {}).get(k) != v}
        raise SyntheticDatasetError(
            f"--out {out} holds a different synthetic dataset (changed old -> new: {changed}); pass "
            f"--overwrite to replace it, or choose another --out")
    for name in old.get("entries", []):  # only what the previous generation wrote itself
        target = out / name
        if Path(name).name != name or name in ("", ".", ".."):
            raise SyntheticDatasetError(f"{out / MANIFEST_NAME}: refusing to delete odd entry {name!r}")
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    (out / MANIFEST_NAME).unlink()
    return False


def _write_manifest(out: Path, arguments: dict, fourcc: str, entries: Sequence[VideoEntry],
                    top_level: Sequence[str], complete: bool) -> None:
    manifest = {"generator": "dataloaders.synthetic", "arguments": arguments, "complete": complete,
                "fourcc": fourcc, "class_names": sorted({e.class_name for e in entries}),
                "entries": sorted(top_level), "videos": [asdict(e) for e in entries]}
    tmp = out / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    tmp.replace(out / MANIFEST_NAME)


# --------------------------------------------------------------------------------------------------
# Public entry points.


@dataclass(frozen=True)
class GenerationSummary:
    """What `generate` made (or found already made)."""

    root: str
    layout: str
    class_names: list[str]  # alphabetical = label order (0-based label = position)
    num_videos: int
    frames: int
    width: int
    height: int
    fourcc: str
    skipped: bool  # True when the identical dataset already existed
    seconds: float
    split_sizes: dict[int, tuple[int, int]]  # split -> (train videos, test videos)


def _validate(num_classes: int, videos_per_class: int, frames: int, width: int, height: int,
              layout: str, fps: float, workers: int, design: str) -> None:
    class_names(num_classes, design)
    group_layout(videos_per_class)
    if layout not in LAYOUTS:
        raise SyntheticDatasetError(f"layout={layout!r}: choose one of {LAYOUTS}")
    if frames < 2:
        raise SyntheticDatasetError(f"frames={frames}: need at least 2 frames per video")
    for label, value in (("width", width), ("height", height)):
        if value < 16 or value % 2:
            raise SyntheticDatasetError(f"{label}={value}: must be an even number >= 16 (video codecs "
                                        f"need even frame sizes)")
    if fps <= 0:
        raise SyntheticDatasetError(f"fps={fps}: must be positive")
    if workers < 1:
        raise SyntheticDatasetError(f"workers={workers}: must be >= 1")


def _summary(out: Path, manifest: dict, skipped: bool, seconds: float) -> GenerationSummary:
    args = manifest["arguments"]
    videos = manifest["videos"]
    sizes = {k: (sum(v["roles"][str(k)] == "train" for v in videos),
                 sum(v["roles"][str(k)] == "test" for v in videos)) for k in range(1, NUM_SPLITS + 1)}
    return GenerationSummary(str(out), args["layout"], manifest["class_names"], len(videos),
                             args["frames"], args["width"], args["height"], manifest["fourcc"],
                             skipped, seconds, sizes)


def _run_jobs(specs: Sequence[VideoSpec], workers: int, progress: bool) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(specs), desc="synthetic videos", unit="video", disable=not progress)
    try:
        if workers == 1:
            for spec in specs:
                write_video(spec)
                bar.update()
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(write_video, specs, chunksize=max(1, len(specs) // (4 * workers))):
                bar.update()
    finally:
        bar.close()


def generate(out: str | Path, classes: int = 10, videos_per_class: int = 12, frames: int = 150,
             width: int = 320, height: int = 240, seed: int = 0, layout: str = "ucf101",
             fps: float = 25.0, workers: int = 1, progress: bool = True,
             overwrite: bool = False, design: str = DEFAULT_DESIGN) -> GenerationSummary:
    """Generate the synthetic dataset under `out` (see the module docstring for the design).

    Args:
        out: dataset root. UCF101 layout: out/UCF-101/<Class>/v_<Class>_gXX_cYY.avi and
            out/ucfTrainTestlist/{classInd,trainlist0k,testlist0k}.txt; HMDB51 layout:
            out/<class>/<file>.avi and out/testTrainMulti_7030_splits/<class>_test_split{k}.txt.
        classes: number of classes: the first ones of the design's class set (2..12 for
            "varied", 2..6 for "trajectory").
        videos_per_class: >= 4, spread over UCF-style groups.
        frames, width, height, fps: video length and size (even width/height); defaults like UCF101.
        seed: everything (appearance, dynamics, splits, hence the decoded frames) follows from it.
        layout: "ucf101" or "hmdb51".
        workers: processes that render and encode videos in parallel.
        progress: show a tqdm bar.
        overwrite: replace a different synthetic dataset found in `out` (never a foreign folder).
        design: "varied" (appearance varies within every class) or "trajectory" (one look for every
            video, classes differ only in the path of a square); see DESIGNS.

    Returns:
        GenerationSummary; `skipped` is True when the identical dataset was already complete in `out`.
    """
    start = time.perf_counter()
    _validate(classes, videos_per_class, frames, width, height, layout, fps, workers, design)
    out = Path(out)
    arguments = _arguments(classes, videos_per_class, frames, width, height, seed, layout, fps, design)
    if _prepare_folder(out, arguments, overwrite):
        return _summary(out, read_manifest(out), True, time.perf_counter() - start)
    fourcc = pick_fourcc(out, width, height, fps)
    entries = plan_videos(class_names(classes, design), videos_per_class, layout, seed, design)
    # the top-level entries this generation owns (and a later --overwrite may delete)
    owned = sorted({e.path.split("/")[0] for e in entries}) + [SPLIT_FOLDERS[layout]]
    _write_manifest(out, arguments, fourcc, entries, owned, complete=False)
    specs = []
    for entry in entries:
        (out / entry.path).parent.mkdir(parents=True, exist_ok=True)
        specs.append(VideoSpec(str(out / entry.path), get_design(design).index(entry.kind), entry.group,
                               entry.clip, seed, width, height, frames, fps, fourcc, design))
    _run_jobs(specs, workers, progress)
    write_split_files(out, entries, layout)
    _write_manifest(out, arguments, fourcc, entries, owned, complete=True)
    return _summary(out, read_manifest(out), False, time.perf_counter() - start)


# --------------------------------------------------------------------------------------------------
# Separability check (TCLR_SPEC section 11): single frames must not tell the classes apart, clips must.


@dataclass(frozen=True)
class SeparabilityReport:
    """Test accuracies of a classifier on single frames and of one on short clips."""

    frame_accuracy: float
    clip_accuracy: float
    chance: float  # 1 / number of classes
    train_videos: int
    test_videos: int
    samples_per_video: int
    method: str


def load_video(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """All frames of a video, uint8 [T, H, W, 3] BGR, optionally resized to size=(w, h) (area filter)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        ok, frame = capture.read()
        while ok:
            frames.append(frame if size is None else cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
            ok, frame = capture.read()
    finally:
        capture.release()
    if not frames:
        raise SyntheticDatasetError(f"{path}: OpenCV decodes no frame from it")
    return np.stack(frames)


def _augment(rng: np.random.Generator, clip: np.ndarray, side: int) -> np.ndarray:
    """Pretraining-style augmentation of uint8 [T, H, W, 3]: square crop of 60-100 % of the height at a
    random place, resize to side x side, flip p 0.5, brightness/contrast jitter, grayscale p 0.15,
    channel drop p 0.125. Returns float32 [T, side, side, 3] in [0, 1]."""
    _, height, width, _ = clip.shape
    crop = int(round(rng.uniform(0.6, 1.0) * height))
    y0, x0 = int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))
    out = np.stack([cv2.resize(f[y0:y0 + crop, x0:x0 + crop], (side, side), interpolation=cv2.INTER_AREA)
                    for f in clip]).astype(np.float32) / 255.0
    if rng.uniform() < 0.5:
        out = out[:, :, ::-1]
    out = (out - out.mean()) * rng.uniform(0.75, 1.25) + out.mean() * rng.uniform(0.75, 1.25)
    draw = rng.uniform()
    if draw < 0.15:
        out = np.repeat(out.mean(axis=-1, keepdims=True), 3, axis=-1)
    elif draw < 0.275:
        out[..., int(rng.integers(3))] = 0.0
    return np.clip(out, 0.0, 1.0)


def _skew(values: np.ndarray) -> float:
    return float(((values - values.mean()) ** 3).mean() / (values.std() ** 3 + 1e-6))


def _ramp_features(series: np.ndarray) -> list[float]:
    """Time-direction cues of a [T] series: a slow rise with a sudden fall has negative skewed steps."""
    steps = np.diff(series)
    total = np.abs(steps).sum() + 1e-6
    return [_skew(steps), steps.clip(0).sum() / total, steps.max() / total, steps.min() / total,
            series.std() / (abs(series.mean()) + 1e-6)]


def clip_descriptor(clip: np.ndarray) -> np.ndarray:
    """Hand-made temporal features of a clip [T, h, w, 3] float, invariant to flips, position, scale,
    brightness and colour: motion energy and its spectrum, direction-of-change ratios, the signed
    asymmetry of edge energy over time, and the correlation of frame differences across lags.
    Returns [F]."""
    gray = clip.mean(axis=-1)
    gray = (gray - gray.mean()) / (gray.std() + 1e-3)  # [T, h, w]
    diff = np.diff(gray, axis=0)  # [T-1, h, w]
    energy = np.abs(diff).mean(axis=(1, 2))  # [T-1]
    spectrum = np.abs(np.fft.rfft(energy - energy.mean()))
    grad_x = np.stack([cv2.Sobel(f, cv2.CV_32F, 1, 0) for f in gray])  # [T, h, w]
    grad_y = np.stack([cv2.Sobel(f, cv2.CV_32F, 0, 1) for f in gray])
    along_x = np.abs(diff * grad_x[:-1]).mean() + 1e-6  # change where edges are vertical: x motion
    along_y = np.abs(diff * grad_y[:-1]).mean() + 1e-6
    edges = np.sqrt(grad_x ** 2 + grad_y ** 2)  # [T, h, w]
    at_edges = [np.corrcoef(a.ravel(), e.ravel())[0, 1] if a.std() > 0 and e.std() > 0 else 0.0
                for a, e in zip(np.abs(diff), edges[:-1])]  # moving edges vs changing interiors
    flat = diff.reshape(len(diff), -1)
    norms = np.linalg.norm(flat, axis=1) + 1e-6
    lags = [np.mean((flat[:-k] * flat[k:]).sum(1) / (norms[:-k] * norms[k:])) for k in range(1, 7)]
    return np.concatenate([
        [energy.mean(), energy.std() / (energy.mean() + 1e-6), np.log(along_x / along_y),
         abs(np.log(along_x / along_y)), float(np.mean(at_edges))],
        spectrum / (spectrum.sum() + 1e-6), _ramp_features(edges.mean(axis=(1, 2))), lags])


def _frame_descriptor(frame: np.ndarray) -> np.ndarray:
    """Pixels of one augmented frame [h, w, 3] at 12x12 plus its colour histogram. Returns [F]."""
    small = cv2.resize(frame, (12, 12), interpolation=cv2.INTER_AREA).ravel()
    hist = np.concatenate([np.histogram(frame[..., c], bins=8, range=(0, 1))[0] for c in range(3)])
    return np.concatenate([small, hist / frame[..., 0].size])


def _sample_descriptors(rng: np.random.Generator, video: np.ndarray, clip_len: int, stride: int,
                        samples: int, side: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`samples` (frame descriptor, clip descriptor) pairs from random starts of one video [T, H, W, 3]."""
    span = (clip_len - 1) * stride + 1
    frames, clips = [], []
    for _ in range(samples):
        start = int(rng.integers(0, max(len(video) - span, 0) + 1))
        index = np.minimum(np.arange(start, start + span, stride), len(video) - 1)
        clip = _augment(rng, video[index], side)  # [clip_len, side, side, 3]
        clips.append(clip_descriptor(clip))
        frames.append(_frame_descriptor(clip[int(rng.integers(clip_len))]))
    return frames, clips


def separability_check(root: str | Path, split: int = 1, clip_len: int = 16, stride: int = 2,
                       samples_per_video: int = 4, side: int = 32, trees: int = 100,
                       seed: int = 0) -> SeparabilityReport:
    """Train a classifier on single frames and one on clips of a generated dataset; test on the split.

    Both see the same augmented crops (pretraining-style: square crop, flip, colour jitter) at
    side x side px; both are random forests (scikit-learn). The frame classifier gets raw pixels and
    colour histograms of one frame per sample, the clip one flip/position/colour-invariant temporal
    features of `clip_len` frames at `stride` (the classification clip of TCLR_SPEC section 7). On a
    good dataset the first stays near chance and the second is far above it.

    Args:
        root: a dataset written by `generate` (its manifest lists videos, labels and split roles).
        split: 1..3; train on its train videos, test on its test videos.
        clip_len, stride: clip sampling; side: crop size in px after resizing.
        samples_per_video: random samples (frame, clip) per video, train and test.
        trees: trees per random forest.
        seed: sampling and forest seed.

    Returns:
        SeparabilityReport with accuracies over test samples.
    """
    from sklearn.ensemble import RandomForestClassifier

    manifest = read_manifest(root)
    rng = np.random.default_rng(seed)
    data = {"train": ([], [], []), "test": ([], [], [])}  # frame descriptors, clip descriptors, labels
    for video in manifest["videos"]:
        role = video["roles"][str(split)]
        if role not in data:
            continue
        frames, clips = _sample_descriptors(rng, load_video(Path(root) / video["path"]), clip_len, stride,
                                            samples_per_video, side)
        data[role][0].extend(frames)
        data[role][1].extend(clips)
        data[role][2].extend([video["label"]] * samples_per_video)
    accuracy = []
    for kind in (0, 1):
        forest = RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=1)
        forest.fit(np.stack(data["train"][kind]), data["train"][2])
        accuracy.append(float(forest.score(np.stack(data["test"][kind]), data["test"][2])))
    return SeparabilityReport(accuracy[0], accuracy[1], 1.0 / len(manifest["class_names"]),
                              len(data["train"][2]) // samples_per_video,
                              len(data["test"][2]) // samples_per_video, samples_per_video, "random-forest")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dataloaders.synthetic",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,  # every flag shows its default
        description="Write a synthetic video dataset (real AVI files, UCF101 or HMDB51 layout and split "
                    "files) whose classes differ only in temporal structure. Classes, in order: "
                    + ", ".join(CLASS_REGISTRY) + ".")
    parser.add_argument("--out", required=True, default=argparse.SUPPRESS,
                        help="dataset root folder (created if missing); required")
    parser.add_argument("--classes", type=int, default=10,
                        help=f"number of classes, 2..{MAX_CLASSES} (varied) or 2..{len(TRAJECTORY_CLASSES)} "
                             f"(trajectory)")
    parser.add_argument("--design", choices=tuple(DESIGNS), default=DEFAULT_DESIGN,
                        help="; ".join(f"{d.name}: {d.summary}" for d in DESIGNS.values()))
    parser.add_argument("--videos-per-class", type=int, default=12, help="videos per class, >= 4")
    parser.add_argument("--frames", type=int, default=150, help="frames per video")
    parser.add_argument("--width", type=int, default=320, help="frame width in px (even)")
    parser.add_argument("--height", type=int, default=240, help="frame height in px (even)")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything (videos and splits)")
    parser.add_argument("--layout", choices=LAYOUTS, default="ucf101", help="on-disk layout")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate written into the files")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a different synthetic dataset already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (2 with a one-line message on bad input)."""
    args = build_parser().parse_args(argv)
    try:
        summary = generate(args.out, args.classes, args.videos_per_class, args.frames, args.width,
                           args.height, args.seed, args.layout, args.fps, args.workers,
                           progress=not args.quiet, overwrite=args.overwrite, design=args.design)
    except SyntheticDatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    verb = "already present, skipped" if summary.skipped else f"written in {summary.seconds:.1f} s"
    sizes = ", ".join(f"split {k}: {tr} train / {te} test" for k, (tr, te) in summary.split_sizes.items())
    print(f"{summary.layout} synthetic dataset at {summary.root}: {len(summary.class_names)} classes, "
          f"{summary.num_videos} videos of {summary.frames} frames at {summary.width}x{summary.height} "
          f"({summary.fourcc}), {verb}; {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
