"""Known-answer tests of evaluation metrics, label subsets, the backbone check and pictures."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data.distributed import DistributedSampler

from engine import metrics, visualize


# --------------------------------------------------------------------------------------------
# Classification metrics
# --------------------------------------------------------------------------------------------

def test_topk_accuracy_known_answers():
    scores = torch.tensor([[0.1, 0.7, 0.2],     # label 1: top1 hit
                           [0.5, 0.3, 0.2],     # label 1: top2 hit
                           [0.2, 0.3, 0.5],     # label 0: only top3
                           [0.9, 0.05, 0.05]])  # label 0: top1 hit
    labels = torch.tensor([1, 1, 0, 0])
    acc = metrics.topk_accuracy(scores, labels, (1, 2, 5))
    assert acc[1] == pytest.approx(50.0)
    assert acc[2] == pytest.approx(75.0)
    assert acc[5] == pytest.approx(100.0)       # k capped at the 3 classes


def test_clip_softmax_average_is_mean_of_softmaxes():
    logits = torch.tensor([[[10.0, 0.0], [0.0, 0.0]]])   # [B=1, C=2 clips, 2 classes]
    out = metrics.clip_softmax_average(logits)
    expected = (torch.tensor([10.0, 0.0]).softmax(0) + torch.tensor([0.5, 0.5])) / 2
    assert torch.allclose(out[0], expected)


def test_clip_softmax_average_leaves_out_masked_clips():
    """A very short video's unpaddable clips (clip_mask False) are not averaged (the release)."""
    logits = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [3.0, 3.0]],
                           [[0.0, 0.0], [10.0, 0.0], [3.0, 3.0]]])   # [B=2, C=3 clips, 2 classes]
    mask = torch.tensor([[True, False, True], [True, True, True]])
    out = metrics.clip_softmax_average(logits, mask)
    torch.testing.assert_close(out[0], torch.tensor([0.5, 0.5]))   # clips 0 and 2 only
    torch.testing.assert_close(out[1], metrics.clip_softmax_average(logits[1:])[0])


def test_every_video_counted_once_under_distributed_padding():
    """8 videos over 3 processes: DistributedSampler pads to 9; the merge counts 8."""
    num_videos, world = 8, 3
    dataset = list(range(num_videos))
    probs = torch.eye(4)[torch.arange(num_videos) % 4]          # video v predicts class v % 4
    labels = [v % 4 for v in range(num_videos)]
    shards = []
    for rank in range(world):
        ids = list(DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False))
        acc = metrics.VideoScoreAccumulator(4)
        acc.add(ids, probs[ids], [labels[i] for i in ids])
        shards.append(acc.state())
    assert sum(len(s["ids"]) for s in shards) == 9               # the padding copy exists
    merged = metrics.VideoScoreAccumulator(4)
    for state in shards:
        merged.merge(metrics.VideoScoreAccumulator.from_state(state, 4))
    ids, p, y = merged.result()
    assert ids.tolist() == list(range(num_videos))
    assert merged.duplicates == 1
    assert metrics.topk_accuracy(p, y, (1,))[1] == 100.0


def test_per_class_accuracy_and_confusion(tmp_path):
    labels = np.array([0, 0, 1, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 0, 2])
    acc, support = metrics.per_class_accuracy(preds, labels, 4)
    assert support.tolist() == [2, 3, 1, 0]
    assert acc[:3] == pytest.approx([50.0, 200 / 3, 100.0])
    assert math.isnan(acc[3])                                  # class without test videos
    cm = metrics.confusion(preds, labels, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    names = ["a", "b,c", "d", "e"]
    metrics.write_per_class_csv(tmp_path / "pc.csv", names, acc, support)
    metrics.write_confusion_csv(tmp_path / "cm.csv", names, cm)
    pc = (tmp_path / "pc.csv").read_text().splitlines()
    assert pc[0] == "class_index,class_name,num_videos,top1"
    assert pc[2] == '1,"b,c",3,66.67' and pc[4] == "3,e,0,"
    assert (tmp_path / "cm.csv").read_text().splitlines()[2] == '"b,c",1,2,0,0'


# --------------------------------------------------------------------------------------------
# Retrieval metrics
# --------------------------------------------------------------------------------------------

def test_recall_at_k_known_answers():
    # gallery: 4 directions with classes 0, 1, 2, 0; scale must not matter (cosine similarity)
    gallery = torch.tensor([[1.0, 0.0], [0.0, 5.0], [-1.0, 0.0], [0.6, 0.8]])
    g_labels = torch.tensor([0, 1, 2, 0])
    queries = torch.tensor([[2.0, 0.1],     # nearest: g0 (class 0) -> hit at 1
                            [0.1, 1.0],     # nearest: g1 (1), g3 (0), g0, g2 -> class 0 at rank 2
                            [-1.0, -0.1]])  # nearest: g2 (2), g1 (1), g3 (0) -> class 0 at rank 3
    q_labels = torch.tensor([0, 0, 0])
    recalls, nn_idx, notes = metrics.recall_at_k(queries, q_labels, gallery, g_labels,
                                                 (1, 2, 3, 10))
    assert nn_idx[1].tolist() == [1, 3, 0, 2]
    assert recalls[1] == pytest.approx(100 / 3)
    assert recalls[2] == pytest.approx(200 / 3)
    assert recalls[3] == pytest.approx(100.0)
    assert recalls[10] == pytest.approx(100.0)
    assert notes == ["k=10 is larger than the gallery (4 videos): computed as k=4"]


def test_recall_against_brute_force_reference():
    gen = torch.Generator().manual_seed(0)
    q, g = torch.randn(30, 8, generator=gen), torch.randn(50, 8, generator=gen)
    ql, gl = torch.randint(0, 5, (30,), generator=gen), torch.randint(0, 5, (50,), generator=gen)
    recalls, _, _ = metrics.recall_at_k(q, ql, g, gl, (1, 5))
    for k in (1, 5):
        hits = 0
        for i in range(30):
            sims = [float(q[i] @ g[j] / (q[i].norm() * g[j].norm())) for j in range(50)]
            top = sorted(range(50), key=lambda j: -sims[j])[:k]
            hits += any(int(gl[j]) == int(ql[i]) for j in top)
        assert recalls[k] == pytest.approx(100.0 * hits / 30)


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------

def test_aggregate_results_mean_std(tmp_path):
    runs = []
    for seed, top1 in enumerate((80.0, 82.0, 84.0)):
        run = tmp_path / f"s{seed}"
        run.mkdir()
        (run / "results.json").write_text(json.dumps(
            {"top1": top1, "top5": 95.0, "num_videos": 100, "seed": seed, "dataset": "ucf101"}))
        runs.append(run)
    agg = metrics.aggregate_results(runs)
    assert agg["n"] == 3 and agg["seeds"] == [0, 1, 2]
    assert agg["metrics"]["top1"]["mean"] == pytest.approx(82.0)
    assert agg["metrics"]["top1"]["std"] == pytest.approx(2.0)        # sample std (ddof=1)
    assert agg["metrics"]["top5"]["std"] == 0.0
    assert agg["varying"] == {}
    assert metrics.format_mean_std(agg["metrics"]["top1"]) == "82.0 \u00b1 2.0"
    mixed = metrics.aggregate_results([{"top1": 1.0, "dataset": "ucf101"},
                                       {"top1": 2.0, "dataset": "hmdb51"}])
    assert mixed["varying"] == {"dataset": ["ucf101", "hmdb51"]}
    with pytest.raises(KeyError):
        metrics.aggregate_results([{"top1": 1.0}, {"top5": 2.0}], keys=["top1"])


# --------------------------------------------------------------------------------------------
# Limited labels / validation hold-out
# --------------------------------------------------------------------------------------------

def _videos(classes=10, per_class=20):
    return [(f"c{c}/v{i}.avi", c) for c in range(classes) for i in range(per_class)]


def _cfg(**over):
    import config
    cfg = config.FinetuneConfig()
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


def test_label_subset_is_stratified_reproducible_and_nested():
    from engine.classify import split_train_videos
    videos = _videos()
    train, val = split_train_videos(videos, _cfg(label_fraction=0.1, val_fraction=0.1, seed=3))
    counts = np.bincount([y for _, y in train], minlength=10)
    assert counts.tolist() == [2] * 10                 # 10% of the 18 left after 2 held out
    assert np.bincount([y for _, y in val]).tolist() == [2] * 10
    assert not set(train) & set(val)
    again, val2 = split_train_videos(videos, _cfg(label_fraction=0.1, val_fraction=0.1, seed=3))
    assert again == train and val2 == val
    other, _ = split_train_videos(videos, _cfg(label_fraction=0.1, val_fraction=0.1, seed=4))
    assert other != train
    bigger, val3 = split_train_videos(videos, _cfg(label_fraction=0.5, val_fraction=0.1, seed=3))
    assert val3 == val and set(train) <= set(bigger)   # same val set; subsets nest
    tiny, _ = split_train_videos(videos, _cfg(label_fraction=0.01, select="last", seed=3))
    assert np.bincount([y for _, y in tiny]).tolist() == [1] * 10   # at least one per class
    full, none = split_train_videos(videos, _cfg(select="last"))
    assert full == videos and none == []


# --------------------------------------------------------------------------------------------
# Frozen-backbone check
# --------------------------------------------------------------------------------------------

def test_backbone_check_detects_changes():
    from engine.classify import backbone_snapshot, check_backbone_unchanged
    from engine.errors import TrainingError
    net = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4))
    snap = backbone_snapshot(net)
    check_backbone_unchanged(net, snap, include_buffers=True)
    net.train()
    net(torch.randn(2, 3, 2, 4, 4))                        # BatchNorm statistics drift
    check_backbone_unchanged(net, snap, include_buffers=False)
    with pytest.raises(TrainingError, match="running_mean"):
        check_backbone_unchanged(net, snap, include_buffers=True)
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0, 0] += 1e-3
    with pytest.raises(TrainingError, match=r"0\.weight"):
        check_backbone_unchanged(net, snap, include_buffers=False)


# --------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------

def test_retrieval_grid_borders_and_png(tmp_path):
    q = torch.full((2, 3, 10, 12), 128, dtype=torch.uint8)
    n = torch.full((2, 3, 3, 10, 12), 50, dtype=torch.uint8)
    correct = torch.tensor([[True, False, True], [False, False, True]])
    img = visualize.retrieval_grid(q, n, correct, border=2, padding=1)
    cell_w = 12 + 2 * 2
    assert img.shape == (3, 2 * (10 + 4) + 3, 4 * cell_w + 5)
    # top-left pixel of each cell's frame (padding 1 px before every cell)
    def frame(row, col):
        return tuple(img[:, 1 + row * (14 + 1), 1 + col * (cell_w + 1)].tolist())
    assert frame(0, 0) == visualize.QUERY
    assert frame(0, 1) == visualize.GREEN and frame(0, 2) == visualize.RED
    assert frame(1, 3) == visualize.GREEN and frame(1, 1) == visualize.RED
    path = visualize.save_png(img, tmp_path / "g.png")
    back = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]           # BGR -> RGB
    assert torch.equal(torch.from_numpy(back.copy()).permute(2, 0, 1), img)


def test_confusion_image():
    cm = np.array([[4, 0], [1, 3]])
    img = visualize.confusion_image(cm, max_side=20)
    assert img.shape == (3, 20, 20) and img.dtype == torch.uint8
    assert tuple(img[:, 5, 5].tolist()) == visualize.HIGH        # row 0: all on the diagonal
    assert tuple(img[:, 5, 15].tolist()) == visualize.LOW        # never predicted


def test_retrieval_feature_leaves_out_masked_clips():
    """video_features averages the flattened [C, T'] maps over the unmasked clips, then L2-normalises."""
    from engine.retrieval import video_features

    class Identity(torch.nn.Module):  # a "backbone" whose feature map is its input's first pixels
        def forward(self, x):                      # [N, 3, T, S, S] -> [N, 3, T]
            return x[:, :, :, 0, 0]

    clips = torch.zeros(1, 3, 3, 2, 1, 1)          # [B=1, K=3, 3, T=2, 1, 1]
    clips[0, 0, 0, 0] = 3.0                        # clip 0 feature: [3, 0, 0, 0, 0, 0]
    clips[0, 1, 1, 1] = 4.0                        # clip 1 (masked out): [0, 0, 0, 4, 0, 0]
    clips[0, 2, 0, 0] = 1.0                        # clip 2: [1, 0, 0, 0, 0, 0]
    out = video_features(Identity(), clips, torch.tensor([[True, False, True]]))
    torch.testing.assert_close(out, torch.tensor([[1.0, 0, 0, 0, 0, 0]]))
    everything = video_features(Identity(), clips)     # mean [4/3, 0, 0, 4/3, 0, 0] -> normalised
    torch.testing.assert_close(everything, torch.tensor([[0.5 ** 0.5, 0, 0, 0.5 ** 0.5, 0, 0]]))
