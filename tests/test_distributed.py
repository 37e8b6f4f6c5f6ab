"""gather_batch: two gloo processes computing a global-batch loss give the one-process gradients."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from engine.distributed import gather_batch
from losses import nt_xent
from tests.ports import free_port


def _data():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(6, 8, generator=g, dtype=torch.float64), dim=1)
    b = torch.nn.functional.normalize(torch.randn(6, 8, generator=g, dtype=torch.float64), dim=1)
    return a, b


def _worker(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    a, b = _data()
    local_a = a[rank * 3:(rank + 1) * 3].clone().requires_grad_(True)
    local_b = b[rank * 3:(rank + 1) * 3].clone().requires_grad_(True)
    loss = nt_xent(gather_batch(local_a), gather_batch(local_b))
    loss.backward()
    # DDP would average parameter gradients over the 2 processes: mimic it on the inputs' grads
    out[rank] = (loss.item(), (local_a.grad / 2).tolist(), (local_b.grad / 2).tolist())
    dist.destroy_process_group()


def test_gathered_loss_and_gradients_equal_one_process():
    a, b = _data()
    a.requires_grad_(True), b.requires_grad_(True)
    loss = nt_xent(a, b)
    loss.backward()
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(free_port(), out), nprocs=2, join=True)
        results = dict(out)
    for rank in (0, 1):
        l, ga, gb = results[rank]
        assert abs(l - loss.item()) < 1e-12
        assert torch.allclose(torch.tensor(ga, dtype=torch.float64), a.grad[rank * 3:(rank + 1) * 3])
        assert torch.allclose(torch.tensor(gb, dtype=torch.float64), b.grad[rank * 3:(rank + 1) * 3])
