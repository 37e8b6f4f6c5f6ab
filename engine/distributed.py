"""torchrun-style process groups with a one-process fallback.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; without them the job is a
single plain process and every helper here answers as rank 0 of 1.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist

from config import ConfigError


@dataclass
class DistInfo:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """World size announced by torchrun (1 when launched as a plain process)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """Turn a config device string ('auto', 'cpu', 'cuda', 'cuda:N') into a torch.device."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available on this machine (torch "
                              f"{torch.__version__}, built for CUDA {torch.version.cuda}); use "
                              "--device cpu, or --device auto to pick the GPU when there is one")
        if name == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(name)


def init_distributed(device: str = "auto", timeout_s: float = 600.0) -> DistInfo:
    """Join the torchrun process group if there is one; pick this process's device.

    NCCL on CUDA, gloo on CPU. ``timeout_s`` bounds how long a collective waits for a peer that
    died, so a killed process makes the others fail with an error instead of hanging forever.
    """
    world_size = env_world_size()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


# What collectives raise when a peer process died, hung past the timeout or became unreachable:
# gloo raises plain RuntimeErrors from its transport; NCCL and the rendezvous store raise DistError.
_PEER_FAILURE_TEXTS = ("gloo/transport", "Connection reset by peer", "Connection closed by peer",
                       "Timed out waiting")


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective of a multi-process job failing because of another process."""
    if env_world_size() <= 1:
        return False
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    return isinstance(exc, RuntimeError) and any(t in str(exc) for t in _PEER_FAILURE_TEXTS)


def peer_failure_message(exc: BaseException) -> str:
    """One line for :func:`is_peer_failure` errors: which process, what happened, what to do."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = re.sub(r"^\[[^\]]*\]\s*", "", lines[0]) if lines else type(exc).__name__
    detail = re.split(r"(?<=\.)\s", detail, maxsplit=1)[0].rstrip(".")  # the first sentence
    rank = os.environ.get("RANK", "?")
    return (f"process {rank} of {env_world_size()} lost contact with another process of the job "
            f"(it died, hung for longer than --dist-timeout-s, or the network failed): {detail}. "
            "The launcher's log names the process that failed first; restart the job "
            "(pretraining continues from the last checkpoint with --resume auto).")


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of ``t`` over processes (in place on a copy); identity for one process."""
    if get_world_size() == 1:
        return t
    out = t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / get_world_size()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if get_world_size() == 1:
        return t
    out = t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_gather_objects(obj):
    """List of ``obj`` from every process (in rank order)."""
    if get_world_size() == 1:
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward hands each process the summed gradient of its slice.

    Written with all_reduce so that it works on every backend (gloo has no reduce_scatter).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_batch(t: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Concatenate ``t`` from every process along ``dim`` (rank order), keeping gradients.

    Every process then computes the loss of the whole global batch; since DDP averages parameter
    gradients over processes and the backward here sums each slice's gradient over processes, the
    resulting update equals the one-process update on the global batch. Identity for one process.
    """
    if get_world_size() == 1:
        return t
    return _GatherWithGrad.apply(t.movedim(dim, 0)).movedim(0, dim)
