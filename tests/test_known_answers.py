"""Known-answer tests of every protocol's aggregation, through the real code paths.

Each video is a losslessly encoded (FFV1) clip of constant-colour frames whose channels name the
video and the frame: channel 0 = 3 * frame index, channel 1 = the video's code, channel 2 = 200.
The centre crop and the resize keep a constant frame exact, so a stub model can read from its input
which video and which frames each clip holds, and answer with a value written in a table here.
The videos then go through the real datasets (MultiClipDataset, ClipDataset), the real loaders
(DistributedSampler shards, batching, ``clip_mask``) and the real aggregation (engine.evaluation,
engine.retrieval, engine.analysis, engine.classify), including the gather of the per-process
results (two processes simulated in one: each shard evaluated apart, then the gathered states
handed to rank 0). The expected per-video probabilities, features and similarities are literals
worked out by hand in the comments: any mix-up of videos, clips or timesteps changes them.
"""

from __future__ import annotations

import math
import threading
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

import config
from engine.distributed import DistInfo

WIDTH, HEIGHT, SIZE = 32, 24, 16
NUM_CLIPS = 3

# name: (frames, channel-1 code, label). Evaluation starts (16 frames at stride 2, 3 clips,
# start_i = int(linspace(0, N - 42, 3)[i]), or i where negative):
#   60 frames: 0, 9, 18; 44 frames: 0, 1, 2; 18 frames: 0, 1, 2 where the clip from 2 cannot be
#   mirror-padded (8 real frames), so clip_mask is [1, 1, 0] and the third clip repeats the first.
VIDEOS = {"v0": (60, 40, 0), "v1": (18, 80, 1), "v2": (44, 120, 2), "v3": (60, 160, 3),
          "v4": (44, 200, 0)}

# The frames each evaluation clip must hold (hand-derived from the starts above; the 18-frame
# video's clips are mirror-padded at frame 17/16: 0, 2, .., 16, 14, .., 2).
def _run(start: int) -> list[int]:
    return list(range(start, start + 32, 2))


def _mirrored(start: int, last: int) -> list[int]:
    up = list(range(start, last + 1, 2))
    return (up + up[-2::-1])[:16]


EXPECTED_FRAMES = {0: _run(0), 9: _run(9), 18: _run(18), 1: _run(1), 2: _run(2)}
EXPECTED_SHORT_FRAMES = {0: _mirrored(0, 16), 1: _mirrored(1, 17)}


@pytest.fixture(scope="module")
def coded_videos(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("coded_videos")
    paths = {}
    for name, (frames, code, _label) in VIDEOS.items():
        path = str(root / f"{name}.avi")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"FFV1"), 25, (WIDTH, HEIGHT))
        if not writer.isOpened():
            pytest.skip("this OpenCV build cannot write FFV1")
        for f in range(frames):
            frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
            frame[..., 0], frame[..., 1], frame[..., 2] = 3 * f, code, 200
            writer.write(frame)
        writer.release()
        paths[name] = path
    return paths


def video_list(paths: dict[str, str], names=tuple(VIDEOS)) -> list[tuple[str, int]]:
    return [(paths[n], VIDEOS[n][2]) for n in names]


def read_clip(clip: torch.Tensor) -> tuple[int, list[int]]:
    """(video code, frame indices) of one clip [3, T, S, S], from its constant frames."""
    levels = (clip * 255).round()                                           # [3, T, S, S]
    flat = levels.flatten(2)                                                # [3, T, S*S]
    assert torch.equal(flat.amin(2), flat.amax(2)), "a frame is not constant: crop/resize changed it"
    codes = set(levels[1, :, 0, 0].int().tolist())
    assert len(codes) == 1 and levels[2, :, 0, 0].eq(200).all(), "channels moved or mixed"
    frames = [int(v) // 3 for v in levels[0, :, 0, 0].int().tolist()]
    return codes.pop(), frames


def check_eval_frames(code: int, frames: list[int]) -> int:
    """The clip's start, after checking that its frames are the protocol's (see EXPECTED_*)."""
    short = code == VIDEOS["v1"][1]
    table = EXPECTED_SHORT_FRAMES if short else EXPECTED_FRAMES
    assert frames == table[frames[0]], f"video code {code}: unexpected clip frames {frames}"
    return frames[0]


def cpu_dist(rank: int = 0, world: int = 1) -> DistInfo:
    return DistInfo(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))


def fake_ctx(cfg, dist: DistInfo):
    import logging
    return types.SimpleNamespace(cfg=cfg, dist=dist, device=dist.device,
                                 logger=logging.getLogger("test_known_answers"))


def small_data(cfg, batch: int) -> None:
    d = cfg.data
    d.resolution, d.num_workers, d.clip_len, d.train_stride = SIZE, 0, 16, 2
    cfg.per_device_batch, cfg.batch_size, cfg.seed, cfg.progress = batch, batch, 0, False
    cfg.amp, cfg.device = "off", "cpu"


def simulate_two_processes(module, run_rank):
    """Runs ``run_rank(dist)`` for ranks 0 and 1 of a world of 2 in two threads, with
    ``module.all_gather_objects`` exchanging the two ranks' objects (rank order) as
    torch.distributed.all_gather_object would; returns rank 0's result."""
    barrier = threading.Barrier(2, timeout=120)
    slots: dict[tuple[int, int], object] = {}
    local = threading.local()

    def gather(obj):
        call = local.calls
        local.calls += 1
        slots[(call, local.rank)] = obj
        barrier.wait()
        return [slots[(call, 0)], slots[(call, 1)]]

    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def worker(rank: int) -> None:
        local.rank, local.calls = rank, 0
        try:
            results[rank] = run_rank(cpu_dist(rank, 2))
        except BaseException as error:   # handed to the test's thread below
            errors.append(error)
            barrier.abort()

    original = module.all_gather_objects
    module.all_gather_objects = gather
    try:
        threads = [threading.Thread(target=worker, args=(rank,)) for rank in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        module.all_gather_objects = original
    if errors:
        raise errors[0]
    return results[0]


# ------------------------------------------------------------------------------------------------
# Multi-clip evaluation (linear probe and finetuning test and validation)
# ------------------------------------------------------------------------------------------------

def _p(k: int) -> list[float]:
    """A clip's softmax: 0.7 on class k, 0.1 on the others."""
    return [0.7 if c == k else 0.1 for c in range(4)]


# (video code, clip start) -> the stub's softmax for that clip
CLIP_PROBS = {(40, 0): _p(0), (40, 9): _p(0), (40, 18): _p(1),
              (80, 0): _p(2), (80, 1): [0.1, 0.6, 0.2, 0.1],
              (120, 0): _p(2), (120, 1): _p(2), (120, 2): _p(3),
              (160, 0): _p(3), (160, 9): _p(0), (160, 18): _p(3),
              (200, 0): _p(0), (200, 1): _p(1), (200, 2): _p(0)}

# Per-video mean of its valid clips' softmax, by hand: v0 (0.7+0.7+0.1)/3 = 0.5 on class 0,
# (0.1+0.1+0.7)/3 = 0.3 on class 1; v1 two valid clips only (the third, a copy of the first, is
# masked): (0.1+0.6)/2 = 0.35 on class 1, (0.7+0.2)/2 = 0.45 on class 2; v2 0.5 / 0.3 on classes
# 2, 3; v3 0.3 / 0.5 on 0, 3; v4 0.5 / 0.3 on classes 0, 1.
EXPECTED_PROBS = [[0.5, 0.3, 0.1, 0.1],
                  [0.1, 0.35, 0.45, 0.1],
                  [0.1, 0.1, 0.5, 0.3],
                  [0.3, 0.1, 0.1, 0.5],
                  [0.5, 0.3, 0.1, 0.1]]


class ClipTableClassifier(nn.Module):
    """Logits = log of CLIP_PROBS[(video code, start)] of each input clip [N, 3, T, S, S]."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Identity()
        self.calls = 0

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        rows = []
        for clip in clips:
            code, frames = read_clip(clip)
            rows.append(CLIP_PROBS[(code, check_eval_frames(code, frames))])
        return torch.tensor(rows).log()                                    # [N, 4]


def classify_cfg(batch: int = 2):
    cfg = config.LinearConfig()
    small_data(cfg, batch)
    cfg.eval_batch_size = batch
    return cfg


def test_multiclip_evaluation_probabilities_are_known(coded_videos):
    from engine import evaluation
    cfg = classify_cfg()
    ctx = fake_ctx(cfg, cpu_dist())
    loader = evaluation.eval_loader(cfg, ctx, video_list(coded_videos), NUM_CLIPS)
    model = ClipTableClassifier()
    result = evaluation.evaluate(ctx, model, loader, 4, "test")
    assert model.calls == 3                                   # batches of 2, 2, 1 videos
    assert result.video_ids.tolist() == [0, 1, 2, 3, 4]
    assert result.labels.tolist() == [0, 1, 2, 3, 0]
    torch.testing.assert_close(result.probs, torch.tensor(EXPECTED_PROBS), atol=1e-6, rtol=0)
    # top-1 by hand: v0 0 (right), v1 2 (label 1: wrong), v2 2, v3 3, v4 0 (right): 4 of 5;
    # top-5 of 4 classes: 5 of 5
    assert result.accuracy() == {1: 80.0, 5: 100.0}


def test_multiclip_evaluation_gathers_two_processes(coded_videos):
    """Each of two ranks scores its DistributedSampler shard (rank 1 also the padding copy of
    video 0); the gathered states are merged: every video once, with its own clips."""
    from engine import evaluation
    cfg = classify_cfg()

    def one_rank(dist):
        ctx = fake_ctx(cfg, dist)
        loader = evaluation.eval_loader(cfg, ctx, video_list(coded_videos), NUM_CLIPS)
        return evaluation.evaluate(ctx, ClipTableClassifier(), loader, 4, "test")

    result = simulate_two_processes(evaluation, one_rank)
    assert result.video_ids.tolist() == [0, 1, 2, 3, 4] and result.num_listed == 5
    torch.testing.assert_close(result.probs, torch.tensor(EXPECTED_PROBS), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------
# Retrieval features
# ------------------------------------------------------------------------------------------------

class TimeHalvesBackbone(nn.Module):
    """Feature map [N, 3, 2]: each channel's mean over space and over the first / second 8 frames."""

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        for clip in clips:
            check_eval_frames(*read_clip(clip))
        n, c, t = clips.shape[:3]
        return clips.mean(dim=(3, 4)).view(n, c, 2, t // 2).mean(3)          # [N, C, 2]


# Features by hand, in grey levels (the /255 and the L2 normalisation scale them away), flattened
# [C, T'] C-major: [ch0 first half, ch0 second half, ch1, ch1, ch2, ch2]. Channel 0 of a clip from
# s without padding: first half frames s .. s+14 (mean s+7), second s+16 .. s+30 (mean s+23),
# times 3. v0: starts 0, 9, 18 (mean 9) -> 48, 96. v2 and v4: starts 0, 1, 2 (mean 1) -> 24, 72.
# v1 (masked third clip): clip 0 frames 0..14 (mean 7) then 16,14,..,2 (mean 9); clip 1 frames
# 1..15 (mean 8) then 17,15,..,3 (mean 10): means 7.5 and 9.5 -> 22.5, 28.5.
EXPECTED_FEATURES = {"v0": [48, 96, 40, 40, 200, 200], "v1": [22.5, 28.5, 80, 80, 200, 200],
                     "v2": [24, 72, 120, 120, 200, 200], "v3": [48, 96, 160, 160, 200, 200],
                     "v4": [24, 72, 200, 200, 200, 200]}


def expected_features(names) -> torch.Tensor:
    rows = [EXPECTED_FEATURES[n] for n in names]
    return torch.tensor([[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in rows])


def retrieval_setup(tmp_path: Path, dist: DistInfo):
    from engine import retrieval
    cfg = config.RetrievalConfig()
    small_data(cfg, 2)
    cfg.num_clips, cfg.cache_dir = NUM_CLIPS, str(tmp_path / "cache")
    ctx = fake_ctx(cfg, dist)
    lazy = types.SimpleNamespace(get=lambda: TimeHalvesBackbone())
    return retrieval, cfg, ctx, lazy


def test_retrieval_features_are_known(coded_videos, tmp_path):
    retrieval, cfg, ctx, lazy = retrieval_setup(tmp_path, cpu_dist())
    names = list(VIDEOS)
    fs = retrieval.subset_features(cfg, ctx, lazy, "test", video_list(coded_videos, names))
    assert not fs.from_cache and fs.labels.tolist() == [0, 1, 2, 3, 0]
    torch.testing.assert_close(fs.features, expected_features(names), atol=1e-6, rtol=0)
    # the cache gives the same rows back (no forward pass: lazy.get is never called)
    again = retrieval.subset_features(cfg, ctx, types.SimpleNamespace(get=None), "test",
                                      video_list(coded_videos, names))
    assert again.from_cache and torch.equal(again.features, fs.features)


def test_retrieval_features_gather_two_processes(coded_videos, tmp_path):
    names = list(VIDEOS)

    def one_rank(dist):
        retrieval, cfg, ctx, lazy = retrieval_setup(tmp_path / f"rank{dist.rank}", dist)
        return retrieval.subset_features(cfg, ctx, lazy, "train", video_list(coded_videos, names))

    from engine import retrieval
    fs = simulate_two_processes(retrieval, one_rank)
    torch.testing.assert_close(fs.features, expected_features(names), atol=1e-6, rtol=0)


def test_recall_at_k_of_known_features():
    """Recall@k on the hand-worked features: queries v1 (class 1), v4 (class 0) against the
    gallery v0 (0), v2 (2), v3 (3). Cosines by hand (dot products / norms): v4 with v0
    104064/(407.1*307.8) = 0.83, with v2 0.97, with v3 0.99: nearest v3 (class 3), v2, then v0
    (class 0: a hit at k=3 only). v1's class has no gallery video: a miss at every k."""
    from engine import metrics
    q = expected_features(["v1", "v4"])
    g = expected_features(["v0", "v2", "v3"])
    recalls, neighbours, _ = metrics.recall_at_k(q, torch.tensor([1, 0]), g,
                                                 torch.tensor([0, 2, 3]), (1, 2, 3))
    assert neighbours[1].tolist() == [2, 1, 0]
    assert recalls == {1: 0.0, 2: 0.0, 3: 50.0}


# ------------------------------------------------------------------------------------------------
# Temporal diversity
# ------------------------------------------------------------------------------------------------

# (video code, clip start) -> the stub's feature map [C=2, T'=2], as two timestep vectors
TIMESTEPS = {(40, 0): ((1, 0), (0, 1)),    # cosine 0
             (40, 9): ((1, 0), (2, 0)),    # cosine 1
             (40, 18): ((3, 4), (4, 3)),   # cosine 24/25
             (80, 0): ((3, 4), (0, 5)),    # cosine 20/25
             (80, 1): ((1, 0), (0, 1))}    # cosine 0


class TimestepTableBackbone(nn.Module):
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        rows = []
        for clip in clips:
            code, frames = read_clip(clip)
            a, b = TIMESTEPS[(code, check_eval_frames(code, frames))]
            rows.append([[a[0], b[0]], [a[1], b[1]]])                     # [C, T']
        return torch.tensor(rows, dtype=torch.float32)                     # [N, 2, 2]


def test_temporal_diversity_of_known_feature_maps(coded_videos):
    """v0: clip cosines 0, 1, 0.96 -> 49/75; v1: 0.8, 0 (third clip masked) -> 2/5; the mean over
    the two videos (each counts once): (49/75 + 2/5) / 2 = 79/150."""
    from dataloaders.batching import collate_multiclip
    from dataloaders.datasets import build_dataset
    from engine import analysis
    from engine.common import make_loader
    cfg = config.RetrievalConfig()
    small_data(cfg, 2)
    cfg.num_clips = NUM_CLIPS
    dataset = build_dataset(cfg.data, "eval", video_list(coded_videos, ["v0", "v1"]), 0,
                            num_clips=NUM_CLIPS)
    loader, _ = make_loader(dataset, cfg, cpu_dist(), train=False, collate_fn=collate_multiclip,
                            batch_size=2)
    sims = analysis.temporal_similarity({"stub": TimestepTableBackbone()}, loader,
                                        torch.device("cpu"))
    acc = sims["stub"]
    assert acc.num_videos == 2
    torch.testing.assert_close(acc.result(), torch.tensor([[1.0, 79 / 150], [79 / 150, 1.0]],
                                                          dtype=torch.float64), atol=1e-9, rtol=0)
    assert analysis.mean_off_diagonal(acc.result()) == pytest.approx(79 / 150, abs=1e-12)


# ------------------------------------------------------------------------------------------------
# The classifiers' training clips (linear probe and finetuning)
# ------------------------------------------------------------------------------------------------

# video code -> the stub's softmax for any clip of that video (v0, v2, v3, v4: labels 0, 2, 3, 0).
# The true class's probabilities are 0.5 (v0), 0.8 (v2), 0.1 (v3), 0.25 (v4): the mean
# cross-entropy over the four clips of an epoch is -(ln 0.5 + ln 0.8 + ln 0.1 + ln 0.25) / 4
# = ln(100) / 4 = 1.1512925...; argmax right for v0 and v2 only: 50 % clip accuracy.
TRAIN_PROBS = {40: [0.5, 0.3, 0.1, 0.1], 120: [0.1, 0.05, 0.8, 0.05],
               160: [0.1, 0.6, 0.2, 0.1], 200: [0.25, 0.45, 0.2, 0.1]}


class TrainClipClassifier(nn.Module):
    """Logits = scale * log TRAIN_PROBS[video code]; checks that every clip is 16 consecutive
    stride-2 frames of one video (the classifier training protocol), and records the clips."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Identity()
        self.scale = nn.Parameter(torch.ones(()))
        self.seen: list[tuple[int, int]] = []

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        rows = []
        for clip in clips:
            code, frames = read_clip(clip)
            assert frames == list(range(frames[0], frames[0] + 32, 2)), frames
            self.seen.append((code, frames[0]))
            rows.append(TRAIN_PROBS[code])
        return torch.tensor(rows).log() * self.scale                      # [N, 4]


@pytest.mark.parametrize("job", ["linear", "finetune"])
def test_training_clip_loss_is_known(coded_videos, monkeypatch, job):
    """Weak augmentation's colour, flip and erase are switched off (its crop kept), so the clips
    keep their coded values through the real ClipDataset, loader and train_one_epoch."""
    from dataloaders import augment, batching, datasets
    from engine import classify
    from engine.common import make_loader, make_scaler
    original = augment.sample_weak_params

    def crop_only(*args, **kwargs):
        p = original(*args, **kwargs)
        off = torch.zeros(len(p), dtype=torch.bool)
        for name in ("hue_on", "saturation_on", "brightness_on", "grayscale", "gamma_on", "flip",
                     "erase_on"):
            setattr(p, name, off.clone())
        p.contrast_stage = torch.zeros_like(p.contrast_stage)
        p.drop_channel = torch.full_like(p.drop_channel, -1)
        return p

    monkeypatch.setattr(datasets, "sample_weak_params", crop_only)
    cfg = config.LinearConfig() if job == "linear" else config.FinetuneConfig()
    small_data(cfg, 2)
    cfg.epochs = 1
    ctx = fake_ctx(cfg, cpu_dist())
    names = ["v0", "v2", "v3", "v4"]
    dataset = datasets.build_dataset(cfg.data, "train", video_list(coded_videos, names), cfg.seed)
    loader, sampler = make_loader(dataset, cfg, ctx.dist, train=True,
                                  collate_fn=batching.collate_clips)
    sampler.set_epoch(0)
    model = TrainClipClassifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    stats = classify.train_one_epoch(ctx, model, model, loader, optimizer,
                                     make_scaler(ctx.device, None), 0)
    assert stats.steps == 2 and stats.failures == []
    assert sorted(code for code, _ in model.seen) == [40, 120, 160, 200]   # each video once
    assert stats.loss == pytest.approx(math.log(100) / 4, abs=1e-6)
    assert stats.accuracy == pytest.approx(50.0)
