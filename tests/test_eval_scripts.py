"""End-to-end runs of train_linear.py, train_finetune.py and nn_retrieval.py on the tiny synthetic
dataset (narrow R3D-18, 32 px, one short epoch), plus checkpoint loading and the backbone check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.pictures import assert_picture
from tests.checkpoints import tiny_pretrain_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def common_args(root: Path, out: Path) -> list[str]:
    """Flags shared by every run: the tiny_ucf fixture's generation settings, tiny model/clips."""
    return ["--dataset", "synthetic", "--data-root", str(root), "--synthetic-classes", "4",
            "--synthetic-videos-per-class", "6", "--synthetic-frames", "72",
            "--synthetic-width", "64", "--synthetic-height", "48",
            "--backbone", "r3d18", "--width", "8", "--resolution", "32", "--batch-size", "4",
            "--num-workers", "0", "--device", "cpu", "--progress", "false", "--out-dir", str(out)]


def classify_args(root: Path, out: Path, *extra: str) -> list[str]:
    return common_args(root, out) + ["--epochs", "1", "--max-steps-per-epoch", "2",
                                     "--num-test-clips", "2", *extra]


def split_size(root: Path, subset: str) -> int:
    return len((root / "ucfTrainTestlist" / f"{subset}list01.txt").read_text().split("\n")) - 1


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions run fastest on one thread, above all on a shared, busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pretrain_checkpoint(tmp_path_factory) -> Path:
    """A pretraining checkpoint in this project's format (backbone + head, width 8, BGR)."""
    return tiny_pretrain_checkpoint(tmp_path_factory.mktemp("pretrain") / "latest.pth", seed=123)


def read_results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


# ------------------------------------------------------------------------------------------------
# Independent recomputation of the reported numbers: frames decoded sequentially with OpenCV, the
# test clips cut, centre-cropped and resized here (torchvision), the model run one clip at a time,
# the clip softmax averaged, top-k and Recall@k counted in plain Python.
# ------------------------------------------------------------------------------------------------

def independent_clips(path: str, num_clips: int, size: int = 32) -> list[torch.Tensor]:
    """The protocol's test clips of a video (spec section 7), each float [3, 16, S, S] BGR."""
    import numpy as np
    import torchvision.transforms.v2.functional as TF
    from tests.videos import sequential_frames
    frames = sequential_frames(path)                                   # [N, H, W, 3] BGR
    n, height = frames.shape[0], frames.shape[1]
    starts = [int(x) for x in np.linspace(0, n - 2 * 16 - 10, num_clips)]
    clips = []
    for i, start in enumerate(starts):
        start = start if start >= 0 else i
        index = [start + 2 * t for t in range(16)]
        assert index[-1] < n, "the tiny videos are long enough to need no padding"
        clip = torch.from_numpy(frames[index]).permute(0, 3, 1, 2)         # [T, 3, H, W]
        side = int(0.8 * height)
        clip = TF.resize(TF.center_crop(clip, [side, side]), [size, size], antialias=True)
        clips.append(clip.permute(1, 0, 2, 3).float() / 255)              # [3, T, S, S]
    return clips


def split_videos(root: Path, subset: str) -> list[tuple[str, int]]:
    from dataloaders.splits import build_video_list
    return build_video_list("synthetic", str(root), split=1, subset=subset)[0]


@torch.no_grad()
def independent_topk_correct(checkpoint: Path, root: Path, num_clips: int) -> tuple[int, int, int]:
    """(top-1 correct, top-5 correct, videos) of a classifier checkpoint on the test split."""
    from models import build_backbone
    from models.classifier import Classifier
    model = Classifier(build_backbone("r3d18", width=8), 4)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    model.load_state_dict(state, strict=True)
    model.eval()
    top1 = top5 = 0
    videos = split_videos(root, "test")
    for path, label in videos:
        probs = [model(clip[None]).softmax(dim=1)[0] for clip in independent_clips(path, num_clips)]
        mean = [sum(p[c].item() for p in probs) / len(probs) for c in range(4)]
        ranked = sorted(range(4), key=lambda c: -mean[c])
        top1 += ranked[0] == label
        top5 += label in ranked[:5]
    return top1, top5, len(videos)


def check_classifier_results(res: dict, out: Path, root: Path, num_clips: int = 2) -> None:
    top1, top5, n = independent_topk_correct(out / "checkpoints" / "best.pth", root, num_clips)
    assert (res["top1_correct"], res["top5_correct"], res["num_videos"]) == (top1, top5, n)
    assert res["top1"] == pytest.approx(100 * top1 / n, abs=0.005)
    assert res["top5"] == pytest.approx(100 * top5 / n, abs=0.005) == 100.0   # 4 classes


@torch.no_grad()
def independent_recall_hits(checkpoint: Path, root: Path, num_clips: int, ks) -> dict[int, int]:
    """Recall@k hit counts of the pretraining checkpoint's backbone, test queries vs train gallery."""
    from models import build_backbone
    backbone = build_backbone("r3d18", width=8)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    backbone.load_state_dict({k[len("backbone."):]: v for k, v in state.items()
                              if k.startswith("backbone.")}, strict=True)
    backbone.eval()

    def features(videos):
        rows = []
        for path, _ in videos:
            maps = [backbone(clip[None]).flatten() for clip in independent_clips(path, num_clips)]
            mean = sum(maps) / len(maps)
            rows.append(mean / mean.norm())
        return rows

    gallery, queries = split_videos(root, "train"), split_videos(root, "test")
    g, q = features(gallery), features(queries)
    hits = dict.fromkeys(ks, 0)
    for qi, (_, label) in enumerate(queries):
        sims = [float(q[qi] @ g[j]) for j in range(len(g))]
        order = sorted(range(len(g)), key=lambda j: (-sims[j], j))
        for k in ks:
            hits[k] += any(gallery[j][1] == label for j in order[:k])
    return hits


def test_linear_end_to_end_from_pretraining_checkpoint(tiny_ucf, tmp_path, pretrain_checkpoint):
    import train_linear
    from models import build_backbone, load_backbone_weights
    out = tmp_path / "linear"
    assert train_linear.main(classify_args(tiny_ucf, out, "--checkpoint",
                                           str(pretrain_checkpoint))) == 0
    res = read_results(out)
    n_test = split_size(tiny_ucf, "test")
    assert res["num_videos"] == res["num_videos_listed"] == n_test
    # top-1 / top-5 and their counts as recomputed here from the selected checkpoint
    check_classifier_results(res, out, tiny_ucf)
    assert res["init"] == "checkpoint" and res["init_source"] == "tclr-repro"
    assert res["checkpoint"] == str(pretrain_checkpoint)
    assert res["select"].startswith("val") and res["selected_epoch"] == 0
    assert res["bn_mode"] == "frozen" and res["split"] == 1 and res["seed"] == 0
    log = (out / "log.txt").read_text()
    assert f"evaluated {n_test} / {n_test} test videos" in log
    assert "frozen-backbone check passed" in log
    # the hold-out and labelled lists are disjoint and cover the train split
    listed = lambda name: (out / name).read_text().splitlines()
    train, val = listed("labelled_videos.txt"), listed("val_videos.txt")
    assert len(val) == 4 and not set(train) & set(val)           # one per class (4 classes)
    assert len(train) + len(val) == split_size(tiny_ucf, "train")
    # per-class table, confusion matrix
    rows = (out / "per_class_accuracy.csv").read_text().splitlines()
    assert len(rows) == 1 + 4
    assert sum(int(r.split(",")[2]) for r in rows[1:]) == n_test
    assert_picture(out / "confusion_matrix.png", 300, 300)
    assert (out / "confusion_matrix.csv").is_file()
    assert_picture(out / "training_curves.png", 300, 400)        # loss and lr per epoch
    assert "epoch 1/1: loss" in log and "epoch time" in log and "done" in log
    # the start line states the steps an epoch really runs: 12 labelled videos / batch 4 = 3
    assert "2 steps per epoch (--max-steps-per-epoch 2; a full epoch has 3)" in log
    # classifier checkpoints: our format, kind classifier, keys backbone.* / fc.*; the backbone
    # is the pretraining one (frozen) and loads back as backbone weights
    ckpt = torch.load(out / "checkpoints" / "best.pth", map_location="cpu", weights_only=True)
    assert ckpt["format"] == "tclr-repro" and ckpt["meta"]["kind"] == "classifier"
    assert {k.split(".")[0] for k in ckpt["model"]} == {"backbone", "fc"}
    assert (out / "checkpoints" / "latest.pth").is_file()
    pre = torch.load(pretrain_checkpoint, map_location="cpu", weights_only=True)["model"]
    for key, value in ckpt["model"].items():
        if key.startswith("backbone."):
            assert torch.equal(value, pre[key]), key
    report = load_backbone_weights(build_backbone("r3d18", width=8),
                                   out / "checkpoints" / "best.pth")
    assert report.source == "tclr-repro" and set(report.ignored) == {"fc.weight", "fc.bias"}


def test_finetune_end_to_end_limited_labels(tiny_ucf, tmp_path):
    import train_finetune
    out = tmp_path / "ft"
    # lr 1e-2 is already below --min-lr: training must stop after the first epoch of three
    args = classify_args(tiny_ucf, out, "--label-fraction", "0.5", "--select", "best_test",
                         "--dropout", "0.5", "--seed", "1", "--epochs", "3", "--lr", "0.01",
                         "--min-lr", "0.011")
    assert train_finetune.main(args) == 0
    res = read_results(out)
    assert res["init"] == "random" and res["checkpoint"] is None
    assert res["select"] == "best_test (optimistic: selected on the test split)"
    assert res["num_videos"] == split_size(tiny_ucf, "test")
    assert res["label_fraction"] == 0.5 and res["num_val_videos"] == 0
    assert res["epochs_run"] == 1 and res["stopped_because"] == "min_lr"
    assert res["selected_epoch"] == 0 and res["dropout"] == 0.5
    labelled = (out / "labelled_videos.txt").read_text().splitlines()
    labels = [int(line.rsplit(" ", 1)[1]) for line in labelled]
    assert sorted(labels) == [0, 0, 1, 1, 2, 2, 3, 3]            # half of 4 per class
    # best_test: results.json is the selected epoch's test evaluation, whose weights are best.pth
    check_classifier_results(res, out, tiny_ucf)


def test_linear_backbone_check_fails_when_a_weight_changes(tiny_ucf, tmp_path, monkeypatch):
    import train_linear
    from engine import classify
    from engine.errors import TrainingError
    original = classify.train_one_epoch

    def tampering_epoch(ctx, model, plain, *args, **kwargs):
        stats = original(ctx, model, plain, *args, **kwargs)
        with torch.no_grad():
            next(plain.backbone.parameters()).add_(1e-3)
        return stats

    monkeypatch.setattr(classify, "train_one_epoch", tampering_epoch)
    with pytest.raises(TrainingError, match="changed 1 backbone tensor"):
        train_linear.main(classify_args(tiny_ucf, tmp_path / "tamper", "--select", "last"))


@pytest.mark.parametrize("rule, epochs", [("release", 18), ("consecutive", 19)])
def test_linear_lr_rule_drives_the_epoch_loop(tiny_ucf, tmp_path, monkeypatch, rule, epochs):
    """The epoch loop follows the hand-worked table of tests/test_schedules.py (release default)."""
    import train_linear
    from engine import classify
    from tests.test_schedules import CLASSIFIER_LOSSES, CONSECUTIVE_LRS, RELEASE_LRS
    losses = iter(CLASSIFIER_LOSSES)
    monkeypatch.setattr(classify, "train_one_epoch", lambda *args, **kwargs: classify.EpochStats(
        loss=next(losses), accuracy=0.0, steps=1, failures=[]))
    out = tmp_path / rule
    flags = ["--select", "last", "--epochs", "40"] + (["--lr-rule", rule] if rule != "release" else [])
    assert train_linear.main(classify_args(tiny_ucf, out, *flags)) == 0
    res = read_results(out)
    assert res["epochs_run"] == epochs and res["stopped_because"] == "min_lr"
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in records if "lr" in r and "epoch" in r]
    expected = RELEASE_LRS if rule == "release" else CONSECUTIVE_LRS
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_colour_mismatch_is_an_error(pretrain_checkpoint):
    import logging
    import config
    from engine.checkpoint import require_finite
    from models import build_initialised_backbone
    cfg = config.LinearConfig()
    cfg.checkpoint, cfg.data.color = str(pretrain_checkpoint), "rgb"
    cfg.backbone, cfg.width = "r3d18", 8
    with pytest.raises(config.ConfigError, match="--color bgr"):
        build_initialised_backbone(cfg, logging.getLogger("test"), require_finite)


def test_retrieval_end_to_end_and_cache(tiny_ucf, tmp_path, monkeypatch, pretrain_checkpoint):
    import nn_retrieval
    from engine import retrieval
    out = tmp_path / "ret"
    args = common_args(tiny_ucf, out) + ["--num-clips", "2", "--num-grid-queries", "3",
                                         "--checkpoint", str(pretrain_checkpoint)]
    assert nn_retrieval.main(args) == 0
    res = read_results(out)
    assert res["num_queries"] == split_size(tiny_ucf, "test")
    assert res["num_gallery"] == split_size(tiny_ucf, "train")
    for k in (1, 5, 10, 20, 50):
        assert 0.0 <= res[f"recall@{k}"] <= 100.0
    assert res["recall@20"] == res["recall@50"] == 100.0      # k capped at the 16-video gallery
    assert any("k=50" in note for note in res["notes"])
    assert res["feature_dim"] == 64 * 4                          # C * T' at width 8
    grid = assert_picture(out / "retrieval_grid.png", 150, 600)
    assert grid.shape[1] > 2 * grid.shape[0]                     # 3 rows of 1 + 5 filmstrips
    assert_picture(out / "recall_at_k.png", 300, 400)
    # Recall@k and its hit counts as recomputed here from the checkpoint's backbone
    hits = independent_recall_hits(pretrain_checkpoint, tiny_ucf, 2, (1, 5, 10, 20, 50))
    for k in (1, 5, 10, 20, 50):
        assert res[f"recall@{k}_hits"] == hits[k], k
        assert res[f"recall@{k}"] == pytest.approx(100 * hits[k] / res["num_queries"], abs=0.005)
    rows = (out / "per_class_recall.csv").read_text().splitlines()
    assert rows[0] == ("class_index,class_name,num_queries,"
                       "recall@1,recall@5,recall@10,recall@20,recall@50")
    assert len(rows) == 1 + 4 and sum(int(r.split(",")[2]) for r in rows[1:]) == res["num_queries"]
    assert len((out / "retrieval_grid.txt").read_text().splitlines()) == 1 + 3
    assert len(list((out / "features").glob("*.pt"))) == 2
    # a rerun with other k reads the cache: no forward pass at all
    def no_forward(*_args, **_kwargs):
        raise AssertionError("features were recomputed instead of read from the cache")
    monkeypatch.setattr(retrieval, "extract_features", no_forward)
    # (the same job into its own folder again: --overwrite true)
    assert nn_retrieval.main(args + ["--ks", "1,2", "--num-grid-queries", "0",
                                     "--overwrite", "true"]) == 0
    again = read_results(out)
    assert again["recall@1"] == res["recall@1"] and "recall@2" in again
    assert again["features_from_cache"] is True


def test_retrieval_script_subprocess_and_bad_flags(tiny_ucf, tmp_path, capsys):
    """One real process (imports, argv, exit status); a bad flag ends as one line, status 2."""
    out = tmp_path / "sub"
    args = common_args(tiny_ucf, out) + ["--num-clips", "1", "--num-grid-queries", "0",
                                         "--embedding-points", "0", "--ks", "1,5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "nn_retrieval.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "retrieval | synthetic split 1 | init random | R@1" in proc.stdout
    assert set(read_results(out)) >= {"recall@1", "recall@5", "num_queries", "num_gallery"}
    import nn_retrieval
    from engine.cli import run_main
    with pytest.raises(SystemExit) as exit_info:
        run_main(nn_retrieval.main, ["--num-clip", "3"])
    assert exit_info.value.code == 2
    assert "unknown option --num-clip" in capsys.readouterr().err
