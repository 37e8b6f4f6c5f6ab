"""The pretraining monitor (engine.monitor, --monitor-every): known answers, the train-only monitor
set, exact restore (bit-identical training with and without it), resume, torchrun, pictures."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import config
import train_pretrain
from dataloaders.splits import build_video_list
from engine import checkpoint as ck
from engine import monitor as mon
from engine.distributed import DistInfo
from engine.visualize import read_monitor_log
from tests.pictures import assert_picture
from tests.test_pretrain import tiny_args
from tests.ports import torchrun

ROOT = Path(__file__).resolve().parent.parent
TIMING = ("seconds", "epoch_seconds", "cost_fraction")


def monitored(data: Path, out: Path, *extra: str) -> list[str]:
    return tiny_args(data, out, "--monitor-every", "1", "--monitor-videos", "3", *extra)


def records(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(epoch records, monitor records) of a run's log.jsonl."""
    lines = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r for r in lines if "monitor" not in r], [r for r in lines if "monitor" in r]


def same(a, b) -> bool:
    """Exact equality of nested checkpoint contents (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


# --------------------------------------------------------------------------------------------
# Known answers


def test_knn_top1_and_recall_on_a_hand_made_feature_set():
    """Five 2-d features (cosine similarities worked out by hand in the comments), k = 3.

    sims: q0-q1 .8, q0-q2 .6, q0-q3 0, q0-q4 -.6, q1-q2 .96, q1-q3 .6, q1-q4 0, q2-q3 .8,
    q2-q4 .28, q3-q4 .8; labels 0 0 1 1 0. Weighted votes of the 3 nearest others:
    q0: L0 .8 vs L1 .6 -> 0 (right); q1: L1 .96+.6 vs L0 .8 -> 1 (wrong); q2: L0 .96+.6 vs L1 .8
    -> 0 (wrong); q3: L1 .8 vs L0 .8+.6 -> 0 (wrong); q4: L1 .8+.28 vs L0 0 -> 1 (wrong): 1 of 5.
    (A plain majority vote gets 0 of 5.) Nearest other: q1, q2, q1, q2 (tie with q4: lower index),
    q3 -> same class for q0 and q3: R@1 2 of 5; R@5 (all 4 others) 5 of 5.
    """
    features = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0], [-0.6, 0.8]])
    labels = torch.tensor([0, 0, 1, 1, 0])
    assert mon.scores(features * 3.0, labels, k=3) == {"recall@1": 40.0, "recall@5": 100.0,
                                                       "knn_top1": 20.0}
    neighbours, sims = mon.leave_one_out_neighbours(features, 3)
    assert neighbours.tolist() == [[1, 2, 3], [2, 0, 3], [1, 3, 0], [2, 4, 1], [3, 2, 1]]
    assert mon.knn_top1(neighbours, torch.ones_like(sims), labels, labels, 2) == 0.0


def test_knn_k_is_capped_by_the_smallest_class():
    """k = 20 over 6 classes x 4 videos would let class sizes (3 own others vs 4) decide every
    vote; the cap keeps the neighbourhood within what a query's own class can fill."""
    six_by_four = torch.arange(6).repeat_interleave(4)
    assert mon.knn_k(six_by_four) == 3
    assert mon.knn_k(torch.arange(101).repeat_interleave(40)) == 20
    assert mon.knn_k(torch.tensor([0, 0, 1, 1, 1])) == 1
    # features that rank every query's own class first but differ little (a large shared part):
    # with the cap every query is right; with k = 20 the larger other classes win every vote
    features = 0.1 * torch.nn.functional.one_hot(six_by_four, 6).float() + 1.0
    assert mon.scores(features, six_by_four, mon.knn_k(six_by_four))["knn_top1"] == 100.0
    assert mon.scores(features, six_by_four, 20)["knn_top1"] == 0.0


def test_monitor_set_never_contains_a_test_video(tiny_ucf):
    train, _ = build_video_list("synthetic", str(tiny_ucf), split=1, subset="train")
    test, _ = build_video_list("synthetic", str(tiny_ucf), split=1, subset="test")
    test_paths = {p for p, _ in test}
    for seed in range(4):
        for per_class in (2, 3, 100):
            chosen = mon.draw_monitor_set(train, per_class, seed)
            assert chosen and not {p for p, _ in chosen} & test_paths
            assert set(chosen) <= set(train)
            for label in range(4):
                have = sum(y == label for _, y in train)
                assert sum(y == label for _, y in chosen) == min(per_class, have)
    # one video per recording group while the class has unused groups
    two = mon.draw_monitor_set(train, 2, 0)
    for label in range(4):
        groups = [mon.group_of(p) for p, y in two if y == label]
        assert len(set(groups)) == len(groups) == 2
    assert mon.draw_monitor_set(train, 3, 1) != mon.draw_monitor_set(train, 3, 2)
    assert mon.draw_monitor_set(train, 3, 1) == mon.draw_monitor_set(train, 3, 1)


def test_keep_best_monitor_needs_the_monitor():
    with pytest.raises(config.ConfigError, match="monitor-every"):
        config.parse_config("pretrain", ["--keep-best", "monitor"])
    with pytest.raises(config.ConfigError, match="monitor_videos"):
        config.parse_config("pretrain", ["--monitor-every", "1", "--monitor-videos", "1"])
    cfg, _ = config.parse_config("pretrain", ["--preset", "ucf101_r3d18"])
    assert (cfg.monitor_every, cfg.monitor_videos, cfg.monitor_clips, cfg.keep_best) == (
        1, 4, 2, "loss")


# --------------------------------------------------------------------------------------------
# Runs


def test_monitor_leaves_pretraining_bit_identical(tiny_ucf, tmp_path, monkeypatch):
    plain, watched = tmp_path / "plain", tmp_path / "watched"
    args = ("--epochs", "2")
    assert train_pretrain.main(tiny_args(tiny_ucf, plain, *args)) == 0
    assert train_pretrain.main(monitored(tiny_ucf, watched, *args)) == 0
    (a, _), (b, shown) = records(plain), records(watched)
    # one record before the first step (the backbone as initialised), then one per epoch
    assert [len(a), len(shown)] == [2, 3]
    assert [(r["epoch"], r["step"]) for r in shown] == [(-1, 0), (0, 2), (1, 4)]
    assert shown[0]["monitor"]["cost_fraction"] is None
    loss_keys = [k for k in a[0] if k.startswith("loss_")] + ["lr"]
    assert [[r[k] for k in loss_keys] for r in a] == [[r[k] for k in loss_keys] for r in b]
    for name in ("latest.pth", "best.pth"):
        x = ck.load_checkpoint(plain / "checkpoints" / name)
        y = ck.load_checkpoint(watched / "checkpoints" / name)
        for key in ("model", "optimizer", "scaler", "rng", "step"):
            assert same(x[key], y[key]), (name, key)
    # everywhere a user looks: the epoch line, TensorBoard, the curves, the set, best.json
    m = shown[-1]["monitor"]
    assert m["videos"] == 12 and m["videos_per_process"] == [12] and m["failed"] == 0
    for key in ("recall@1", "recall@5", "knn_top1", "timestep_similarity"):
        assert 0 <= m[key] <= (100 if key != "timestep_similarity" else 1)
    assert m["seconds"] > 0
    assert m["cost_fraction"] == pytest.approx(m["seconds"] / m["epoch_seconds"])
    log = (watched / "log.txt").read_text()
    assert "epoch 2/2: loss" in log and "| monitor R@1 " in log and "of the epoch)" in log
    assert "before the first step (the backbone as initialised): monitor R@1 " in log
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(watched / "tensorboard")).Reload()
    for tag in ("monitor/recall@1", "monitor/knn_top1", "monitor/timestep_similarity"):
        assert [e.step for e in events.Scalars(tag)] == [0, 2, 4]
    assert_picture(watched / "training_curves.png", 700, 400)
    document = json.loads((watched / mon.SET_FILE).read_text())
    test, _ = build_video_list("synthetic", str(tiny_ucf), split=1, subset="test")
    assert len(document["videos"]) == 12
    assert not {p for p, _ in document["videos"]} & {p for p, _ in test}
    assert json.loads((watched / "checkpoints" / mon.BEST_FILE).read_text())["rule"] == "loss"

    # the test can fail: a monitor that skipped the restore changes the checkpoint
    monkeypatch.setattr(mon, "preserved", lambda model: contextlib.nullcontext())
    leaky = tmp_path / "leaky"
    assert train_pretrain.main(monitored(tiny_ucf, leaky, *args)) == 0
    y = ck.load_checkpoint(leaky / "checkpoints" / "latest.pth")
    x = ck.load_checkpoint(plain / "checkpoints" / "latest.pth")
    assert not (same(x["rng"], y["rng"]) and same(x["model"], y["model"]))


def test_resume_keeps_the_monitor_history_and_keep_best(tiny_ucf, tmp_path):
    extra = ("--keep-best", "monitor", "--save-every-epochs", "0")
    full, part = tmp_path / "full", tmp_path / "part"
    assert train_pretrain.main(monitored(tiny_ucf, full, "--epochs", "3", *extra)) == 0
    assert train_pretrain.main(monitored(tiny_ucf, part, "--epochs", "1", *extra)) == 0
    assert train_pretrain.main(monitored(tiny_ucf, part, "--epochs", "3", "--resume", "auto",
                                         *extra)) == 0
    hf = ck.load_checkpoint(full / "checkpoints" / "latest.pth")["train_state"]
    hp = ck.load_checkpoint(part / "checkpoints" / "latest.pth")["train_state"]
    # the point before the first step is measured once: the resumed run does not add another
    assert [h["epoch"] for h in hp["monitor_history"]] == [-1, 0, 1, 2]
    assert untimed(hf["monitor_history"]) == untimed(hp["monitor_history"])
    epochs = [h for h in hp["monitor_history"] if h["epoch"] >= 0]   # what best.pth chooses from
    assert hf["best_monitor"] == hp["best_monitor"] == max(h["recall@1"] for h in epochs)
    assert [r["step"] for r in read_monitor_log(part)] == [0, 2, 4, 6]
    # best.pth is the first epoch with the best monitor Recall@1, and the run folder says so
    best_at = next(h for h in epochs if h["recall@1"] == hp["best_monitor"])
    for run in (full, part):
        note = json.loads((run / "checkpoints" / mon.BEST_FILE).read_text())
        assert note["rule"] == "monitor" and note["epoch"] == best_at["epoch"] + 1
        assert ck.load_checkpoint(run / "checkpoints" / "best.pth")["step"] == best_at["step"]


def test_unlabelled_folder_gets_temporal_diversity_only(tiny_ucf, tmp_path):
    root = tmp_path / "folder"
    (root / "all").mkdir(parents=True)
    for path in sorted((tiny_ucf / "UCF-101").rglob("*.avi"))[:12]:
        shutil.copy(path, root / "all" / path.name)
    args = ["--dataset", "folder", "--data-root", str(root)]
    out = tmp_path / "run"
    base = monitored(tiny_ucf, out, "--max-steps-per-epoch", "1")
    base[base.index("--dataset"):base.index("--dataset") + 4] = args
    assert train_pretrain.main(base) == 0
    (_, shown) = records(out)
    m = shown[0]["monitor"]
    assert m["recall@1"] is None and m["knn_top1"] is None and 0 < m["timestep_similarity"] <= 1
    assert "timestep sim" in (out / "log.txt").read_text()
    with pytest.raises(mon.MonitorError, match="--keep-best loss"):
        train_pretrain.main(base + ["--keep-best", "monitor", "--overwrite", "true"])


def fake_ctx() -> SimpleNamespace:
    return SimpleNamespace(device=torch.device("cpu"),
                           dist=DistInfo(rank=0, world_size=1, local_rank=0,
                                         device=torch.device("cpu")),
                           logger=logging.getLogger("tclr"))


def test_torchrun_two_processes_share_the_monitor(tiny_ucf, tmp_path):
    out = tmp_path / "ddp"
    proc = torchrun("train_pretrain.py", *monitored(tiny_ucf, out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (_, shown) = records(out)
    assert [r["step"] for r in shown] == [0, 2]   # before the first step, then the epoch
    m = shown[-1]["monitor"]
    # each process embedded half of the 12 videos: no duplicated work
    assert m["videos"] == 12 and m["videos_per_process"] == [6, 6]
    # the gathered result is the one-process monitor of the checkpoint (rank 0's weights and
    # BatchNorm statistics)
    cfg = config.from_dict("pretrain", ck.load_checkpoint(out / "checkpoints" / "latest.pth")
                           ["config"])
    cfg = config.finalize(cfg)
    from engine.pretrain import build_model
    model = build_model(cfg)
    model.load_state_dict(ck.load_checkpoint(out / "checkpoints" / "latest.pth")["model"])
    train, classes = build_video_list("synthetic", str(tiny_ucf), split=1, subset="train")
    alone = mon.Monitor(cfg, fake_ctx(), train, classes).measure(model.backbone)
    # Recall@k depends on each query's nearest neighbours only. kNN top-1 is left out: this tiny
    # set (3 videos per class, k = 2) of a barely trained net has neighbours whose similarities
    # differ by less than the float noise of other batch shapes, so the second neighbour of a
    # query, and with it a weighted vote, can differ between two exact computations.
    for key in ("recall@1", "recall@5"):
        assert alone[key] == m[key], key
    assert alone["timestep_similarity"] == pytest.approx(m["timestep_similarity"], abs=1e-6)
    assert alone["videos_per_process"] == [12]


# --------------------------------------------------------------------------------------------
# The learning demo's picture


def write_fake_log(run_dir: Path, r1: list[float], sim: list[float]) -> None:
    run_dir.mkdir(parents=True)
    lines = []
    for e, (r, s) in enumerate(zip(r1, sim)):
        lines.append({"epoch": e, "step": 10 * (e + 1), "loss_total": 5.0 - e, "lr": 1e-3})
        lines.append({"epoch": e, "step": 10 * (e + 1),
                      "monitor": {"recall@1": r, "recall@5": r + 20, "knn_top1": r - 5,
                                  "timestep_similarity": s, "videos": 120, "seconds": 1.0}})
    (run_dir / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_monitor_curves_picture_of_ic_only_vs_tclr(tmp_path):
    write_fake_log(tmp_path / "ic0", [30, 32, 33, 33], [0.9, 0.92, 0.93, 0.95])
    write_fake_log(tmp_path / "ic1", [31, 31, 34, 35], [0.9, 0.91, 0.94, 0.94])
    write_fake_log(tmp_path / "tclr0", [30, 38, 45, 52], [0.9, 0.8, 0.7, 0.6])
    png = tmp_path / "monitor_curves.png"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plot_monitor_curves.py"),
         f"IC only={tmp_path / 'ic0'},{tmp_path / 'ic1'}", f"TCLR={tmp_path / 'tclr0'}",
         "--out", str(png)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_picture(png, 300, 700)
    from engine.visualize import monitor_curves_figure
    fig = monitor_curves_figure({"IC only": [read_monitor_log(tmp_path / "ic0")]})
    ax_r, ax_s = fig.axes[:2]
    assert [line.get_ydata().tolist() for line in ax_r.get_lines()][-1] == [30, 32, 33, 33]
    assert ax_s.get_lines()[-1].get_ydata().tolist() == [0.9, 0.92, 0.93, 0.95]
    # a run without monitor records is a clear error
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "log.jsonl").write_text(json.dumps({"epoch": 0, "step": 1}) + "\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plot_monitor_curves.py"),
         f"X={tmp_path / 'none'}", "--out", str(tmp_path / "x.png")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--monitor-every" in proc.stderr
    # ... while beside other runs it is left out with a warning
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plot_monitor_curves.py"),
         f"X={tmp_path / 'none'},{tmp_path / 'ic0'}", "--out", str(tmp_path / "y.png")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "left out" in proc.stderr and (tmp_path / "y.png").is_file()


def test_bench_monitor_smoke_prints_the_estimate_last():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_monitor.py"), "--seconds", "0.01",
         "--width", "4"], capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["videos"] == 404 and figures["clips"] == 2
    assert figures["estimate"] == max(figures["data_share"], figures["compute_share"]) > 0
    assert "of the epoch per call" in proc.stdout
