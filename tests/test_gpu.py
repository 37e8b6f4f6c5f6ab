"""The CUDA paths on a real GPU (marker ``gpu``: skipped without CUDA; scripts/gpu_check.sh runs
them with ``pytest -m gpu``).

Each test is the GPU twin of a CPU test with stand-ins (tests/test_cuda_ready.py) or of a CPU
equivalence test: grad-scaler resume, CUDA RNG restore, NCCL error classification, device
augmentation, autocast dtypes in evaluation, channels_last_3d, torch.compile and SyncBatchNorm.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import config as config_mod
from engine import checkpoint as ck
from engine import distributed as dd
from engine import pretrain as pre
from engine.common import make_scaler
from tests.ports import free_port

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda", 0)


def tiny_cfg(tmp_path, *extra: str):
    cfg, _ = config_mod.parse_config("pretrain", [
        "--backbone", "r3d18", "--width", "8", "--resolution", "32", "--batch-size", "4",
        "--device", "cuda", "--out-dir", str(tmp_path / "run"), *extra])
    return cfg


def random_clips(batch: int = 4, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    clips = torch.randn(batch, 2, 5, 3, 16, size, size, generator=g)   # [B, V, 1+K, C, T, S, S]
    return clips.to(CUDA)


@pytest.fixture
def one_process_group():
    """A one-process NCCL group (world size 1) on GPU 0."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    torch.cuda.set_device(CUDA)
    dist.init_process_group("nccl", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_fp16_run_resumes_a_bf16_checkpoint(tmp_path):
    cfg = tiny_cfg(tmp_path)
    model = pre.build_model(cfg).to(CUDA)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    bf16 = make_scaler(CUDA, torch.bfloat16)
    pre.train_step(model, random_clips(), optimizer, bf16, CUDA, torch.bfloat16)
    ckpt = pre.make_checkpoint(model, optimizer, bf16, pre.TrainState(), cfg,
                               [ck.rng_state(CUDA)])
    path = ck.atomic_save(ckpt, tmp_path / "latest.pth")
    fp16 = make_scaler(CUDA, torch.float16)
    assert fp16.is_enabled()
    pre.restore(path, model, optimizer, fp16, cfg, 0, None, CUDA)
    terms = pre.train_step(model, random_clips(), optimizer, fp16, CUDA, torch.float16)
    assert torch.isfinite(terms["total"]).item()


def test_cuda_rng_restores_this_device():
    torch.cuda.manual_seed(5)
    saved = ck.rng_state(CUDA)
    assert "cuda_device" in saved and "cuda" not in saved
    first = torch.rand(4, device=CUDA)
    ck.set_rng_state(saved, CUDA)
    assert torch.equal(first, torch.rand(4, device=CUDA))


def test_earlier_format_with_more_gpus_restores_on_this_one():
    saved = {**ck.rng_state(), "cuda": [torch.cuda.get_rng_state(CUDA)] * 8}
    first = torch.rand(4, device=CUDA)
    assert ck.set_rng_state(saved, CUDA) is None
    assert torch.equal(first, torch.rand(4, device=CUDA))


def _same_gpu_worker(rank: int, port: int, out) -> None:
    """Two ranks on GPU 0 over NCCL: what NCCL raises is classified by engine.distributed."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
                      RANK=str(rank))
    torch.cuda.set_device(0)
    try:
        dist.init_process_group("nccl", rank=rank, world_size=2)
        dist.all_reduce(torch.ones(1, device="cuda"))
        torch.cuda.synchronize()
        out[rank] = "no error"
    except RuntimeError as exc:            # DistBackendError is a RuntimeError
        out[rank] = ("backend" if dd.is_backend_failure(exc) else
                     "peer" if dd.is_peer_failure(exc) else "other") + ": " + str(exc)[:300]


def test_two_ranks_on_one_gpu_are_reported_as_such(tmp_path):
    """NCCL refuses ("Duplicate GPU detected"); the error must not read as a lost peer."""
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        out = manager.dict()
        port = free_port()
        procs = [ctx.Process(target=_same_gpu_worker, args=(r, port, out)) for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
        results = dict(out)
    assert results, "neither process reported (NCCL hung or the processes were killed)"
    for text in results.values():
        assert text.startswith("backend") or text == "no error", text
    if "no error" not in results.values():
        line = dd.backend_failure_message(dist.DistBackendError(next(iter(results.values()))))
        assert "GPU" in line


def test_shared_gpu_refused_before_nccl(monkeypatch):
    count = torch.cuda.device_count()
    for key, value in {"WORLD_SIZE": str(count + 1), "RANK": str(count),
                       "LOCAL_RANK": str(count), "LOCAL_WORLD_SIZE": str(count + 1)}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(config_mod.ConfigError, match="visible GPU"):
        dd.init_distributed("auto")


def test_device_augmentation_gives_the_cpu_result(tiny_ucf):
    from dataloaders.batching import augment_pretrain_batch, collate_pretrain
    from dataloaders.datasets import TCLRPretrainDataset
    from dataloaders.splits import build_video_list
    videos, _ = build_video_list("ucf101", str(tiny_ucf), split=1, subset="train")
    dev = TCLRPretrainDataset(videos[:3], size=16, augment_on="device")
    batch = collate_pretrain([dev[(i, 10 + i)] for i in range(3)])
    on_cpu = augment_pretrain_batch(batch, torch.device("cpu"), size=16)
    on_gpu = augment_pretrain_batch(batch, CUDA, size=16)
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=2e-3, rtol=0)


@pytest.mark.parametrize("amp, dtype", [("off", torch.float32), ("bf16", torch.bfloat16),
                                        ("fp16", torch.float16)])
def test_evaluation_autocast_dtypes(amp, dtype):
    from engine.common import amp_dtype, autocast
    from engine.retrieval import video_features
    from models import build_backbone
    backbone = build_backbone("r3d18", width=8).to(CUDA).eval()
    clips = torch.randn(2, 2, 3, 16, 32, 32, device=CUDA)          # [B, K, 3, T, S, S]
    assert amp_dtype(amp, CUDA) == (None if amp == "off" else dtype)
    with torch.no_grad(), autocast(CUDA, amp_dtype(amp, CUDA)):
        fmap = backbone(clips.flatten(0, 1))
        feats = video_features(backbone, clips)
    # autocast runs convolutions in ``dtype``; a layer autocast keeps in float32 may come last
    assert fmap.dtype == torch.float32 if amp == "off" else fmap.dtype in (dtype, torch.float32)
    assert feats.dtype == torch.float32 and torch.isfinite(feats).all()
    assert torch.allclose(feats.norm(dim=1), torch.ones(2, device=CUDA), atol=1e-3)


def test_channels_last_3d_matches_contiguous(tmp_path):
    cfg = tiny_cfg(tmp_path)
    plain, _ = pre.prepare_model(cfg, CUDA)
    cfg.channels_last = True
    fast, _ = pre.prepare_model(cfg, CUDA)
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv3d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    clips = random_clips()
    with torch.no_grad():
        a, b = plain(clips), fast(clips)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=2e-2, rtol=2e-2)   # TF32 convolutions differ


def test_compile_and_grad_checkpoint_train(tmp_path):
    cfg = tiny_cfg(tmp_path, "--compile", "true", "--grad-checkpoint", "true",
                   "--fused-forward", "true")
    model, plain = pre.prepare_model(cfg, CUDA)
    optimizer = torch.optim.Adam(plain.parameters(), lr=1e-3)
    scaler = make_scaler(CUDA, torch.bfloat16)
    for _ in range(2):
        terms = pre.train_step(model, random_clips(), optimizer, scaler, CUDA, torch.bfloat16)
    assert torch.isfinite(terms["total"]).item()


def test_syncbn_ddp_step_over_nccl(tmp_path, one_process_group):
    from engine.steps import wrap_ddp
    cfg = tiny_cfg(tmp_path)
    model = wrap_ddp(pre.build_model(cfg).to(CUDA), CUDA, sync_bn=True)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    terms = pre.train_step(model, random_clips(), optimizer, make_scaler(CUDA, torch.float16),
                           CUDA, torch.float16)
    assert torch.isfinite(terms["total"]).item()


def test_data_wait_synchronises(monkeypatch):
    from engine.logging import Throughput
    calls = []
    real = torch.cuda.synchronize
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: (calls.append(d), real(d)))
    meter = Throughput(CUDA)
    meter.data_ready()
    torch.randn(2048, 2048, device=CUDA).matmul(torch.randn(2048, 2048, device=CUDA))
    meter.step_done(1)
    assert calls == [CUDA]
