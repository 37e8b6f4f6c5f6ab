"""Performance paths: the training step's halves with fused and per-group forwards, augmentation on
the training device, pinned batches, and smoke runs of scripts/bench_train_step.py."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data._utils.pin_memory import pin_memory

import train_pretrain
from dataloaders.augment import AugmentParams
from dataloaders.batching import augment_pretrain_batch, collate_pretrain
from dataloaders.datasets import TCLRPretrainDataset
from dataloaders.splits import build_video_list
from engine import pretrain as pre
from engine.common import make_scaler
from models import ProjectionHead, TCLRModel, build_backbone

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "scripts" / "bench_train_step.py"
S = 32  # clip side
TERMS = ("total", "ic_global", "ic_local", "local_local", "global_local")
BENCH_KEYS = ("device", "release_style", "best", "speedup", "mem_ratio", "e2e")


def load_bench():
    """scripts/bench_train_step.py as a module (scripts/ is not a package; its folder goes on
    sys.path while it loads, as when it runs as a file, for its sibling peak_memory.py)."""
    if "bench_train_step" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_train_step", BENCH)
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_train_step"] = module  # dataclasses look their module up there
        sys.path.insert(0, str(BENCH.parent))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(BENCH.parent))
    return sys.modules["bench_train_step"]


def tiny_model(fused: bool) -> TCLRModel:
    torch.manual_seed(0)
    backbone = build_backbone("r3d18", width=8)
    return TCLRModel(backbone, ProjectionHead(backbone.out_channels), fused=fused)


def tiny_clips(batch: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(batch, 2, 5, 3, 16, S, S, generator=gen)  # [B, V, 1+K, C, T, S, S]


@pytest.mark.parametrize("fused", [False, True])
def test_train_step_fused_and_per_group_shapes_finite_and_updates(fused):
    model = tiny_model(fused).train()
    clips = tiny_clips()
    with torch.no_grad():
        sparse_global, sparse_local, dense_global = model(clips)
    assert sparse_global.shape == (2, 2, 128)
    assert sparse_local.shape == dense_global.shape == (2, 2, 4, 128)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    cpu = torch.device("cpu")
    terms = pre.train_step(model, clips, optimizer, make_scaler(cpu, None), cpu, None)
    assert set(TERMS) <= set(terms)
    assert all(math.isfinite(terms[t].item()) for t in TERMS)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_per_group_and_fused_losses_agree_in_eval_mode():
    """Same weights, running BatchNorm statistics: the two forwards give the same loss."""
    per_group, fused = tiny_model(False).eval(), tiny_model(True).eval()
    cpu = torch.device("cpu")
    with torch.no_grad():
        a = pre.forward_loss(per_group, tiny_clips(), cpu, None)
        b = pre.forward_loss(fused, tiny_clips(), cpu, None)
    for term in TERMS:
        torch.testing.assert_close(a[term], b[term], rtol=1e-4, atol=1e-5)


def test_bench_quick_prints_json_last(tmp_path):
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--no-e2e", "--device", "cpu"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(BENCH_KEYS) <= set(result)
    assert result["device"] == "cpu" and result["e2e"] is None
    for name in ("release_style", "best"):
        row = result[name]
        assert row["samples_per_s"] > 0 and math.isfinite(row["loss"])
        assert row["peak_mem_mb"] is None or row["peak_mem_mb"] > 0
    assert result["release_style"]["config"]["fused_forward"] is False
    assert result["best"]["config"]["fused_forward"] is True
    assert result["best"]["config"]["channels_last_3d"] is True
    # --quick times 1 step of batch 4 per configuration, in 1 round: the rate, the step time and
    # the round's rate are three readings of one timing, and that step ran inside this process
    for name in ("release_style", "best"):
        row = result[name]
        assert 0 < row["step_ms"] / 1000 < wall
        assert row["samples_per_s"] == pytest.approx(4 * 1000 / row["step_ms"], rel=2e-2)
        assert row["round_samples_per_s"] == pytest.approx([row["samples_per_s"]], rel=1e-6)
    # the speed-up is best over release_style: the ratio of their step times, the other way up
    assert result["speedup"] == pytest.approx(
        result["release_style"]["step_ms"] / result["best"]["step_ms"], rel=3e-2)


def test_bench_end_to_end_on_real_videos(tiny_ucf):
    bench = load_bench()
    args = bench.parse_args(["--device", "cpu", "--quick", "--workers", "1",
                             "--e2e-videos", str(tiny_ucf)])
    runner = bench.StepRunner(args, bench.variants(args)[1])
    runs = bench.run_e2e(args, runner)
    assert [r["augment_on"] for r in runs] == ["cpu", "device"]
    for run in runs:
        assert run["samples_per_s"] > 0 and 0.0 <= run["data_wait_fraction"] <= 1.0
        assert run["workers"] == 1


def test_device_augmentation_pretraining_one_step(tiny_ucf, tmp_path):
    """augment_on=device (the device being the CPU here) with the fused, channels_last model."""
    out = tmp_path / "run"
    argv = ["--dataset", "synthetic", "--data-root", str(tiny_ucf), "--out-dir", str(out),
            "--backbone", "r3d18", "--width", "8", "--resolution", str(S), "--batch-size", "4",
            "--num-workers", "0", "--epochs", "1", "--max-steps-per-epoch", "1",
            "--device", "cpu", "--progress", "false", "--augment-on", "device",
            "--fused-forward", "true", "--channels-last", "true"]
    assert train_pretrain.main(argv) == 0
    (record,) = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert record["step"] == 1
    # every term of the objective, finite, and the total their weighted (all 1) sum
    terms = {key[len("loss_"):]: value for key, value in record.items() if key.startswith("loss_")}
    assert set(terms) == set(TERMS)
    assert all(math.isfinite(v) for v in terms.values()), terms
    assert terms["total"] == pytest.approx(sum(terms[t] for t in TERMS if t != "total"), rel=1e-5)
    # a random network's contrastive terms: positive and bounded (with the release's sums over
    # clips and timesteps they are about 0.2 to 35 here), not 0 (constant clips) or overflowing
    assert all(0.05 < terms[t] < 100.0 for t in TERMS if t != "total"), terms
    # the step trained the network seed 0 builds (engine.pretrain seeds with cfg.seed before
    # building it): every parameter moved, by at most the lr (Adam's first step is lr * g / |g|;
    # lr 1e-3 x warm-up factor 0.01), so it is that network that was trained
    trained = torch.load(out / "checkpoints" / "latest.pth", weights_only=True)["model"]
    initial = tiny_model(fused=True).state_dict()
    assert trained.keys() == initial.keys()
    params = [name for name, _ in tiny_model(fused=True).named_parameters()]
    moved = {k: (trained[k] - initial[k]).abs().max().item() for k in params}
    assert all(0 < step <= 1.01e-5 for step in moved.values()), moved


def device_mode_batch(root: Path, augment_on: str = "device", keys=((0, 11), (3, 12))) -> dict:
    videos, _ = build_video_list("synthetic", str(root), subset="train")
    dataset = TCLRPretrainDataset(videos, size=S, augment_on=augment_on)
    return collate_pretrain([dataset[k] for k in keys])


def test_pin_memory_reaches_every_tensor_of_a_device_mode_batch(tiny_ucf, monkeypatch):
    """The DataLoader's pin_memory (what make_loader turns on for CUDA) pins the frames and every
    AugmentParams field and keeps the rest of the batch."""
    pinned = []

    def fake_pin(self, *args, **kwargs):  # pinning itself needs CUDA; record the call instead
        pinned.append(self)
        return self.clone()
    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    batch = device_mode_batch(tiny_ucf)
    out = pin_memory(batch)
    assert isinstance(out["params"], AugmentParams) and len(out["params"]) == 2 * 2 * 5
    assert out["failures"] == batch["failures"]
    assert any(t is batch["frames"] for t in pinned)
    assert sum(1 for t in pinned if t.dim() == 1 and t.shape[0] == 20) >= 21  # the param fields
    torch.testing.assert_close(augment_pretrain_batch(out, torch.device("cpu"), size=S),
                               augment_pretrain_batch(batch, torch.device("cpu"), size=S))


@pytest.mark.gpu
def test_pinned_device_mode_batch_on_cuda_matches_cpu_augmentation(tiny_ucf):
    """Same item seeds: workers augmenting on the CPU vs the training step augmenting on CUDA a
    pinned, non_blocking-copied batch (tests/test_augment.py compares the kernels per params)."""
    batch = pin_memory(device_mode_batch(tiny_ucf))
    assert batch["frames"].is_pinned() and batch["params"].crop_top.is_pinned()
    cuda = augment_pretrain_batch(batch, torch.device("cuda"), size=S)
    assert cuda.device.type == "cuda" and cuda.shape == (2, 2, 5, 3, 16, S, S)
    expected = device_mode_batch(tiny_ucf, augment_on="cpu")["clips"]
    diff = (cuda.cpu() - expected).abs()
    assert diff.max() <= 5 / 255 and diff.mean() < 1e-3


@pytest.mark.gpu
@pytest.mark.parametrize("best", [True, False])
def test_step_configurations_on_cuda(best):
    """best: fused, bf16 autocast, channels_last_3d, tclr_loss; else the release's fp16 step."""
    bench = load_bench()
    args = bench.parse_args(["--device", "cuda", "--quick", "--no-e2e"])
    runner = bench.StepRunner(args, bench.variants(args)[1 if best else 0])
    conv = runner.plain.backbone.stem[0].weight if hasattr(runner.plain.backbone, "stem") else None
    if best:
        assert runner.dtype in (torch.bfloat16, torch.float16) and runner.plain.fused
        assert conv is None or conv.is_contiguous(memory_format=torch.channels_last_3d)
    else:
        assert runner.dtype == torch.float16 and runner.scaler.is_enabled()
    clips = bench.synthetic_clips(args)
    losses = [runner.step(clips) for _ in range(2)]
    assert all(math.isfinite(v) for v in losses)
    peaks = bench.measure_memory(args, [runner], clips)
    assert peaks[runner.variant.name] > 0


@pytest.mark.gpu
def test_bench_quick_on_cuda_reports_gpu_and_memory(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--no-e2e", "--device", "cuda"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["gpu"] and result["cuda"] and result["mem_ratio"] > 0
    assert result["best"]["config"]["precision"] in ("bfloat16", "float16")
