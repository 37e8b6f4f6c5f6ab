"""Separability check of a generated synthetic dataset (TCLR_SPEC section 11).

Single frames must not tell the classes apart, short clips must: `separability_check` trains one
random forest on single augmented frames and one on hand-made temporal features of clips, and
reports both test accuracies (scripts/check_synthetic.py prints them per split).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dataloaders.synthetic.designs import SyntheticDatasetError
from dataloaders.synthetic.generator import read_manifest
from dataloaders.video import VideoDecodeError, count_frames, read_frames


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


def load_video(path: str | Path) -> np.ndarray:
    """All frames of a video, uint8 [T, H, W, 3] BGR, as sequential decoding returns them
    (dataloaders.video). Raises SyntheticDatasetError when no frame can be decoded."""
    try:
        count = count_frames(str(path), remember=False)
    except VideoDecodeError:
        count = 0  # it cannot be opened: the same error as a file without a decodable frame
    if count == 0:
        raise SyntheticDatasetError(f"{path}: OpenCV decodes no frame from it")
    return read_frames(str(path), np.arange(count))


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
