"""Loader benchmark: TCLR pretraining samples per second, one process, one thread.

    python scripts/bench_loader.py [--video PATH] [--seconds S]

Three ways to build one TCLR sample (5 clips of 16 frames, each augmented twice) from a video:
  project      dataloaders.datasets.TCLRPretrainDataset (augment_on="cpu"): decode the 64-frame
               window once, build the 10 clips from it with batched tensor augmentation.
  naive        the release's cost structure, written here: decode the whole video sequentially and
               push every frame of the 10 clips through PIL (torchvision's PIL functional ops).
  decode_only  the ceiling: decode just the 64-frame window the way the project does, nothing else.
Also printed (not a target): the worker-side cost of augment_on="device" (decode + raw clips).
The methods run in interleaved rounds so that load changes on a shared machine hit them alike.
The last line is a JSON object {"project", "naive", "decode_only"} in samples/s (plus
"project_device_mode").
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as PF

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataloaders.datasets import TCLRPretrainDataset  # noqa: E402
from dataloaders.sampling import TCLRSampler  # noqa: E402
from dataloaders.video import decode_frames, probe_video  # noqa: E402


def make_test_video(path: str, frames: int = 175, width: int = 320, height: int = 240) -> str:
    """An XviD AVI like UCF101's: a panning smooth texture with a moving object, 25 fps."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (height * 2, width * 2, 3)).astype(np.float32),
                               (0, 0), 6)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"XVID"), 25.0, (width, height))
    if not writer.isOpened():
        raise RuntimeError("this OpenCV build cannot write XviD")
    for t in range(frames):
        x0, y0 = int(40 + 30 * np.sin(t / 20)), int(30 + t * 0.4)
        frame = texture[y0:y0 + height, x0:x0 + width].copy()
        cv2.circle(frame, (int(60 + t * 1.2) % width, 120 + int(40 * np.sin(t / 7))), 25,
                   (40, 200, 220), -1)
        writer.write(frame)
    writer.release()
    return path


# ----------------------------------------------------------------------------- naive reference
def naive_augment_frame(frame: np.ndarray, p: dict) -> torch.Tensor:
    """One decoded frame through PIL with one clip's parameters, as the release does it: converted to
    a PIL image for every clip it belongs to, the release's operation order, then to a tensor."""
    image = PF.to_pil_image(frame)
    image = PF.resized_crop(image, p["y0"], p["x0"], p["side"], p["side"], [112, 112],
                            interpolation=PF.InterpolationMode.BILINEAR)
    r = p["r"]
    if r[0] < 0.125:
        image = PF.adjust_contrast(image, p["contrast"])
    if r[1] < 0.3:
        image = PF.adjust_hue(image, p["hue"])
    if r[2] < 0.3:
        image = PF.adjust_saturation(image, p["saturation"])
    if r[3] < 0.3:
        image = PF.adjust_brightness(image, p["brightness"])
    if 0.125 <= r[0] < 0.25:
        image = PF.adjust_contrast(image, p["contrast"])
    if 0.7 < r[4] < 0.875:
        image = PF.to_grayscale(image, num_output_channels=3)
        if r[5] > 0.25:
            image = PF.adjust_gamma(image, p["gamma"])
    elif r[4] >= 0.875:
        tensor = PF.to_tensor(image)
        tensor[p["channel"]] = 0
        image = PF.to_pil_image(tensor)
    if r[6] > 0.5:
        image = PF.hflip(image)
    tensor = PF.to_tensor(image)
    if r[7] < 0.5:
        tensor = PF.erase(tensor, p["ey"], p["ex"], p["eh"], p["ew"], 0)
    return tensor


def naive_params(rng, height, width):
    c = rng.uniform(0.6, 1.0)
    return {"r": rng.random(8), "side": int(height * c),
            "x0": int(rng.integers(0, int(width - width * c) + 1)),
            "y0": int(rng.integers(0, int(height - height * c) + 1)),
            "contrast": rng.uniform(0.75, 1.25), "hue": rng.uniform(-0.1, 0.1),
            "saturation": rng.uniform(0.75, 1.25), "brightness": rng.uniform(0.75, 1.25),
            "gamma": rng.uniform(0.75, 1.25), "channel": int(rng.integers(0, 3)),
            "ey": int(rng.integers(0, 112)), "ex": int(rng.integers(0, 112)),
            "eh": int(rng.integers(9, 19)), "ew": int(rng.integers(9, 19))}


def naive_sample(path: str, rng: np.random.Generator) -> list[torch.Tensor]:
    """Decode every frame, augment the frames of the 10 clips one by one: 10 tensors [16, 3, 112, 112]."""
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    drawn = TCLRSampler().draw(total, rng)                              # [1+K, T]
    sparse, dense = drawn[0], drawn[1:]
    clips = [sparse, sparse] + [d for d in dense for _ in range(2)]  # 10 clips (index lists)
    params = [naive_params(rng, int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                           int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))) for _ in clips]
    wanted = {int(i) for clip in clips for i in clip}
    out = [[] for _ in clips]
    index = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index in wanted:
            for k, clip in enumerate(clips):
                if index in clip:
                    out[k].append(naive_augment_frame(frame, params[k]))
        index += 1
    cap.release()
    return [torch.stack(frames) for frames in out]


# ----------------------------------------------------------------------------- timing
def decode_only_sample(path: str, total: int, rng: np.random.Generator) -> None:
    indices, _ = TCLRSampler()(total, rng)                              # [1+K, T], padded
    decode_frames(path, indices.ravel())


def measure(methods: dict, seconds: float, rounds: int = 4) -> dict:
    """Interleaved rounds; returns samples/s per method."""
    counts = {name: 0 for name in methods}
    spent = {name: 0.0 for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            begin = time.perf_counter()
            while time.perf_counter() - begin < seconds / rounds:
                fn()
                counts[name] += 1
            spent[name] += time.perf_counter() - begin
    return {name: counts[name] / spent[name] for name in methods}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", help="a video to read (default: a generated 320x240 XviD AVI)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per method")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as folder:
        path = args.video or make_test_video(os.path.join(folder, "bench.avi"))
        info = probe_video(path)
        print(f"video: {path} {info.width}x{info.height}, {info.frame_count} frames, {info.fourcc}, "
              f"{os.path.getsize(path) * 8 / max(info.frame_count, 1) * info.fps / 1000:.0f} kbit/s")
        project = TCLRPretrainDataset([(path, 0)], augment_on="cpu")
        device_mode = TCLRPretrainDataset([(path, 0)], augment_on="device")
        keys = iter(range(10**9))
        rng = np.random.default_rng(0)
        methods = {
            "project": lambda: project[(0, next(keys))],
            "naive": lambda: naive_sample(path, rng),
            "decode_only": lambda: decode_only_sample(path, info.frame_count, rng),
            "project_device_mode": lambda: device_mode[(0, next(keys))],
        }
        for fn in methods.values():  # warm-up: imports, seek verification, allocator
            fn()
        rates = measure(methods, args.seconds)
    for name, rate in rates.items():
        print(f"{name:>20}: {rate:7.2f} samples/s  ({1000 / rate:6.1f} ms/sample)")
    print(f"project / naive: {rates['project'] / rates['naive']:.1f}x; "
          f"project / decode_only: {rates['project'] / rates['decode_only']:.2f}")
    print(json.dumps({name: round(rate, 3) for name, rate in rates.items()}))


if __name__ == "__main__":
    main()
