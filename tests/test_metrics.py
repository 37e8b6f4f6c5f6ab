"""Known-answer tests of evaluation metrics, label subsets, the backbone check and pictures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data.distributed import DistributedSampler

from engine import metrics, visualize
from tests.pictures import assert_picture


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
    from dataloaders.subsets import split_train_videos
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
    from engine.classify import check_backbone_unchanged, cpu_state
    from engine.errors import TrainingError
    net = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4))
    snap = cpu_state(net)
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

def fake_confusion(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cm = rng.integers(0, 3, size=(n, n))
    cm[np.arange(n), np.arange(n)] += rng.integers(0, 20, size=n)
    return cm


# UCF101's and HMDB51's sizes take seconds to render (hundreds of tick labels): slow-marked; the
# sorted layout of large sets is also covered at 40 classes below
@pytest.mark.parametrize("n", [6, pytest.param(51, marks=pytest.mark.slow),
                               pytest.param(101, marks=pytest.mark.slow)])
def test_confusion_figure_png_for_small_and_large_class_sets(tmp_path, n):
    names = [f"Class{i}_{'x' * (i % 15)}" for i in range(n)]
    fig = visualize.confusion_figure(fake_confusion(n), names, title="linear, random init")
    axes = fig.get_axes()
    matrix = axes[0]
    assert matrix.get_xlabel() == "predicted class" and matrix.get_ylabel().startswith("true class")
    assert len(matrix.get_yticklabels()) == n                  # every class named
    assert any(ax.get_label() == "<colorbar>" for ax in axes)
    assert "linear, random init" in matrix.get_title()
    # large sets: sorted by accuracy and a worst-classes panel; small ones keep the class order
    if n > 30:
        assert "sorted by accuracy" in matrix.get_ylabel()
        assert any("worst classes" in ax.get_title() for ax in axes)
    else:
        assert [t.get_text() for t in matrix.get_yticklabels()] == names
    assert_picture(visualize.save_figure(fig, tmp_path / f"cm{n}.png"), 400, 400)


def test_confusion_figure_sorts_by_accuracy_and_names_the_worst():
    cm = np.zeros((40, 40), dtype=int)
    cm[np.arange(40), np.arange(40)] = 10       # every class right...
    cm[7, 7], cm[7, 3] = 2, 8                   # ...but class 7: 20% right, mostly taken for 3
    names = [f"c{i}" for i in range(40)]
    fig = visualize.confusion_figure(cm, names)
    matrix, worst = fig.get_axes()[0], [ax for ax in fig.get_axes() if "worst" in ax.get_title()][0]
    assert matrix.get_yticklabels()[-1].get_text() == "c7"          # worst class last
    assert worst.get_yticklabels()[0].get_text() == "c7"            # and first in the panel
    assert "20% " in worst.texts[0].get_text() and "c3 (80%)" in worst.texts[0].get_text()


def test_retrieval_figure_png(tmp_path):
    rng = np.random.default_rng(0)
    strips = [rng.integers(0, 255, (24, 4 * 32 + 6, 3), dtype=np.uint8) for _ in range(2)]
    rows = [[rng.integers(0, 255, (24, 4 * 32 + 6, 3), dtype=np.uint8) for _ in range(3)]
            for _ in range(2)]
    correct = np.array([[True, False, True], [False, False, True]])
    fig = visualize.retrieval_figure(strips, rows, correct, ["Swing", "Spin"],
                                     [["Swing", "Spin", "Swing"], ["Swing", "Drift", "Spin"]])
    axes = np.array(fig.get_axes()).reshape(2, 5)                   # query | gap | 3 neighbours
    assert axes[0, 0].get_xlabel() == "query: Swing"
    assert axes[0, 2].get_xlabel() == f"{visualize.TICK} Swing"
    assert axes[0, 3].get_xlabel() == f"{visualize.CROSS} Spin"
    # same class: solid frame; other class: dashed, so the marks survive greyscale
    assert axes[0, 2].spines["top"].get_linestyle() == "-"
    assert axes[0, 3].spines["top"].get_linestyle() != "-"
    assert "1 of 2 queries" in fig._suptitle.get_text()
    image = assert_picture(visualize.save_figure(fig, tmp_path / "grid.png"), 100, 300)
    assert image.shape[1] > image.shape[0]                         # filmstrips are wide
    with pytest.raises(ValueError, match="disagree"):
        visualize.retrieval_figure(strips, rows[:1], correct, ["a", "b"], [["a"] * 3])


def test_filmstrip_spans_the_video():
    assert visualize.filmstrip_indices(100, 4) == [12, 37, 62, 87]
    assert visualize.filmstrip_indices(2, 4) == [0, 1]


def test_similarity_training_and_recall_figures_png(tmp_path):
    fig = visualize.similarity_figure({"random": np.full((4, 4), 0.9), "tclr": np.eye(4)},
                                      {"random": 0.9, "tclr": 0.0})
    titles = [ax.get_title() for ax in fig.get_axes()]
    assert "random\nmean off-diagonal 0.900" in titles and "tclr\nmean off-diagonal 0.000" in titles
    assert fig.get_axes()[0].get_xlabel() == "timestep"
    # one colour scale [0, 1] for every panel
    assert {im.get_clim() for ax in fig.get_axes() for im in ax.images} == {(0.0, 1.0)}
    assert_picture(visualize.save_figure(fig, tmp_path / "sim.png"), 300, 500)

    records = [{"epoch": e, "step": 3 * (e + 1), "lr": 1e-3 * (e + 1), "loss_total": 9.0 - e,
                "loss_ic_global": 3.0 - e, "samples_per_s": 1.0} for e in range(3)]
    records.append({"epoch": 1, "step": 6, "lr": 2e-3, "loss_total": 5.0, "loss_ic_global": 1.0})
    fig = visualize.training_curves_figure(records, "run")
    total_ax, terms_ax, lr_ax = fig.get_axes()         # the total apart: terms keep their scale
    assert [line.get_label() for line in total_ax.get_lines()] == ["total"]
    assert [line.get_label() for line in terms_ax.get_lines()] == ["ic_global"]
    assert list(total_ax.get_lines()[0].get_ydata()) == [9.0, 5.0, 7.0]  # a resumed epoch: last
    assert list(lr_ax.get_lines()[0].get_xdata()) == [3, 6, 9] and lr_ax.get_yscale() == "log"
    assert_picture(visualize.save_figure(fig, tmp_path / "curves.png"), 300, 400)

    fig = visualize.recall_curve_figure({1: 40.0, 5: 70.0, 10: 90.0}, {1: 10.0, 5: 40.0, 10: 65.0})
    ax = fig.get_axes()[0]
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "Recall@k (%)"
    assert [line.get_label() for line in ax.get_lines()] == ["this backbone",
                                                             "random ranking (chance)"]
    assert_picture(visualize.save_figure(fig, tmp_path / "recall.png"), 300, 400)


def test_write_training_curves_from_log(tmp_path):
    with pytest.raises(FileNotFoundError, match="log.jsonl"):
        visualize.write_training_curves(tmp_path)
    (tmp_path / "log.jsonl").write_text(json.dumps({"final": True, "top1": 1.0}) + "\n")
    assert visualize.write_training_curves(tmp_path) is None           # no epoch yet
    lines = [{"epoch": e, "lr": 0.01, "loss": 2.0 - e, "train_clip_acc": 50.0} for e in range(2)]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert_picture(visualize.write_training_curves(tmp_path), 300, 400)


def test_topk_correct_and_rounding():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    assert metrics.topk_correct(scores, torch.tensor([1, 1, 0]), (1, 2, 3)) == {1: 1, 2: 2, 3: 3}
    assert metrics.round_percent(100 * 2 / 3) == 66.67 and metrics.round_percent(None) is None


def test_chance_recall_and_per_class_recall_known_answers(tmp_path):
    gallery = torch.tensor([0, 0, 1, 1])
    # a class-0 query misses at k with probability C(2, k) / C(4, k): 1/2, 1/6, 0
    chance = metrics.chance_recall_at_k(torch.tensor([0]), gallery, (1, 2, 3, 9))
    assert chance[1] == pytest.approx(50.0) and chance[2] == pytest.approx(100 * 5 / 6)
    assert chance[3] == pytest.approx(100.0) and chance[9] == pytest.approx(100.0)
    neighbours = torch.tensor([[2, 0], [0, 1], [0, 2]])      # query labels 0, 1, 1
    hits = metrics.retrieval_hits(neighbours, torch.tensor([0, 1, 1]), gallery, (1, 2))
    assert hits.tolist() == [[False, True], [False, False], [False, True]]
    recall, support = metrics.per_class_recall(hits, torch.tensor([0, 1, 1]), 3)
    assert support.tolist() == [1, 2, 0]
    assert recall[0].tolist() == [0.0, 100.0] and recall[1].tolist() == [0.0, 50.0]
    assert np.isnan(recall[2]).all()
    path = metrics.write_per_class_recall_csv(tmp_path / "r.csv", ["a", "b,c", "d"], (1, 2),
                                              recall, support)
    assert path.read_text().splitlines() == ["class_index,class_name,num_queries,recall@1,recall@2",
                                             "0,a,1,0.00,100.00", '1,"b,c",2,0.00,50.00',
                                             "2,d,0,,"]


def test_eta_and_duration_text():
    from engine.logging import eta_text, format_duration, steps_text
    assert format_duration(42.4) == "42 s" and format_duration(125) == "2 min 05 s"
    assert format_duration(3 * 3600 + 7 * 60 + 20) == "3 h 07 min"
    assert eta_text(2, 5, 65.0) == "epoch time 1 min 05 s, ETA 3 min 15 s"   # 3 epochs left
    assert eta_text(5, 5, 65.0) == "epoch time 1 min 05 s, done"
    assert steps_text(12, 0) == "12 steps per epoch" and steps_text(12, 20) == "12 steps per epoch"
    assert steps_text(12, 3) == "3 steps per epoch (--max-steps-per-epoch 3; a full epoch has 12)"


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
