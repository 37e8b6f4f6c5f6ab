"""The synthetic dataset's class designs: temporal classes as per-frame tracks of their actors.

Each class turns (rng, actor, stage) into a `Track` (per-frame position, size, angle and opacity of
one actor). Three class sets (`DESIGNS`): "varied" (`TEMPORAL_CLASSES`, the demo's and the tests'
data), "trajectory" (`TRAJECTORY_CLASSES`) and "switch" (`SWITCH_CLASSES`, the learning demo's data:
two trajectory motions per video, one after the other). The package docstring
(dataloaders/synthetic/__init__.py) says why every class survives the pretraining augmentations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from user_errors import UserError


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


def anchor_in_band(rng: np.random.Generator, actor: Actor, stage: Stage,
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


def build_track(rng: np.random.Generator, stage: Stage, x, y, scale=None, angle=None, alpha=None) -> Track:
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
        x, y = anchor_in_band(rng, actor, stage)
        values = _from_floor(rng, floor, ramp if rising else 1.0 - ramp)
        return build_track(rng, stage, x, y, **{channel: values})
    return make


def _blink(period_range: tuple[float, float]) -> Callable[[np.random.Generator, Actor, Stage], Track]:
    def make(rng: np.random.Generator, actor: Actor, stage: Stage) -> Track:
        ramp = _phase_ramp(rng, stage.frames, rng.uniform(*period_range))
        x, y = anchor_in_band(rng, actor, stage)
        # between a faint and a strong opacity of the shared marginal, never invisible: an object that
        # vanished would change the object count of single frames and give the class away
        levels = np.where(ramp < 0.5, rng.uniform(0.75, 1.0), rng.uniform(0.0, 0.25))
        return build_track(rng, stage, x, y, alpha=_from_floor(rng, ALPHA_FLOOR, levels))
    return make


def _swing(vertical: bool) -> Callable[[np.random.Generator, Actor, Stage], Track]:
    def make(rng: np.random.Generator, actor: Actor, stage: Stage) -> Track:
        amplitude = rng.uniform(0.10, 0.20) * stage.height
        wave = amplitude * np.sin(2.0 * math.pi * _phase_ramp(rng, stage.frames, rng.uniform(14.0, 28.0)))
        reach = (0.0, amplitude) if vertical else (amplitude, 0.0)
        x, y = anchor_in_band(rng, actor, stage, reach)
        return build_track(rng, stage, x, y + wave) if vertical else build_track(rng, stage, x + wave, y)
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
        return build_track(rng, stage, x, y)
    return make


def _spin(degrees_per_frame: tuple[float, float]) -> Callable[[np.random.Generator, Actor, Stage], Track]:
    def make(rng: np.random.Generator, actor: Actor, stage: Stage) -> Track:
        omega = math.radians(rng.uniform(*degrees_per_frame)) * rng.choice([-1.0, 1.0])
        angle = rng.uniform(0.0, 2.0 * math.pi) + omega * np.arange(stage.frames)
        x, y = anchor_in_band(rng, actor, stage)
        return build_track(rng, stage, x, y, angle=angle)
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
    return build_track(np.random.default_rng(0), stage, x, y, scale=1.0, angle=0.0, alpha=1.0)


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


# The "switch" design (the learning demo's data): the trajectory design's look, but every video
# holds TWO of the trajectory motions, one after the other in a random order, switching at a random
# moment in the middle half of the video; the class is the unordered pair (4 motions: 6 pairs). A
# clip shows one motion (or the switch), so the label needs clips from both halves, and the clips
# of one video differ in kind, not only in phase: what the temporal terms separate is what the
# label needs, while instance discrimination alone is pushed to ignore the motion that changes.
SWITCH_MOTIONS = ("SwingHorizontal", "SwingVertical", "Circle", "Drift")
SWITCH_MOMENT = (0.25, 0.75)  # the switch happens in this part of the video (fractions of T)
_TRACK_FIELDS = ("x", "y", "scale", "angle", "alpha")


def _switch(first: TemporalClass,
            second: TemporalClass) -> Callable[[np.random.Generator, Actor, Stage], Track]:
    """Motion `first` then `second` or the reverse (one coin), cut at a random frame."""
    def make(rng: np.random.Generator, actor: Actor, stage: Stage) -> Track:
        order = (first, second) if rng.uniform() < 0.5 else (second, first)
        a, b = (cls.make_track(rng, actor, stage) for cls in order)
        cut = int(round(stage.frames * rng.uniform(*SWITCH_MOMENT)))
        return Track(*(np.concatenate([getattr(a, f)[:cut], getattr(b, f)[cut:]])
                       for f in _TRACK_FIELDS))
    return make


def _switch_classes() -> tuple[TemporalClass, ...]:
    motions = [next(c for c in TRAJECTORY_CLASSES if c.name == name) for name in SWITCH_MOTIONS]
    return tuple(
        TemporalClass(f"{a.name.removeprefix('Swing')}And{b.name.removeprefix('Swing')}",
                      f"{a.name} and {b.name}, one after the other in either order, switching at a "
                      "random moment", _switch(a, b))
        for i, a in enumerate(motions) for b in motions[i + 1:])


SWITCH_CLASSES: tuple[TemporalClass, ...] = _switch_classes()


@dataclass(frozen=True)
class Design:
    """A class set and the appearance its videos are drawn with (see `DESIGNS`)."""

    name: str
    summary: str
    classes: tuple[TemporalClass, ...]
    look: str = "varied"  # "varied": per-group styles and sprites; "square": one plain square

    def index(self, kind: str) -> int:
        """Position of class `kind` in this design's class set (stable across --classes)."""
        return [c.name for c in self.classes].index(kind)


DESIGNS: dict[str, Design] = {
    "varied": Design("varied", "12 motion/appearance-change classes; shapes, colours, sizes, "
                     "backgrounds and noise vary within every class (the demo's and the tests' data)",
                     TEMPORAL_CLASSES),
    "trajectory": Design("trajectory", "6 classes that differ only in the path of one square; every "
                         "video has the same look", TRAJECTORY_CLASSES, look="square"),
    "switch": Design("switch", "6 classes: the pair of trajectory motions that a video holds, one "
                     "after the other in either order (the learning demo's data)", SWITCH_CLASSES,
                     look="square"),
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
