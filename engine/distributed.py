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


def choose_backend(name: str, device: torch.device) -> str:
    """The process-group backend for ``--dist-backend`` ('auto': NCCL on CUDA, gloo on CPU)."""
    if name == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if name == "nccl" and device.type != "cuda":
        raise ConfigError(f"--dist-backend nccl needs CUDA devices, but this process runs on "
                          f"{device}; use --dist-backend gloo (or auto) for CPU processes")
    return name


def refuse_shared_gpu(device_name: str, device: torch.device, local_rank: int,
                      local_world_size: int, backend: str) -> None:
    """Refuse before the process group starts when NCCL would put two processes on one GPU.

    NCCL cannot use one GPU as two ranks (it fails with "Duplicate GPU detected" or hangs). It
    happens with ``--device cuda:N`` under torchrun with several processes per machine, and with
    more processes per machine than visible GPUs (process LOCAL_RANK takes GPU LOCAL_RANK modulo
    the GPU count). gloo may share a GPU (``--dist-backend gloo``: slow, for tests only).

    Raises:
        ConfigError: naming the setting and the fix.
    """
    if backend != "nccl" or device.type != "cuda" or local_world_size <= 1:
        return
    count = torch.cuda.device_count()
    if re.fullmatch(r"cuda:\d+", device_name):
        raise ConfigError(
            f"--device {device_name} with {local_world_size} processes on this machine (torchrun "
            f"--nproc_per_node {local_world_size}) puts every process on GPU {device.index}, which "
            "NCCL refuses (two processes on one GPU); use --device cuda or auto (process i takes "
            "GPU i) and choose the GPUs with CUDA_VISIBLE_DEVICES")
    if local_world_size > count:
        raise ConfigError(
            f"{local_world_size} processes on this machine (torchrun --nproc_per_node "
            f"{local_world_size}) but {count} visible GPU{'s' if count != 1 else ''} "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}): process "
            f"{local_rank} would share GPU {local_rank % count} with another, which NCCL refuses; "
            f"pass --nproc_per_node {count} or make more GPUs visible")


# NCCL's watchdog behaviour, set deliberately (a user's own setting wins): on a collective error
# or a collective that outlives --dist-timeout-s, the watchdog thread takes the whole process down
# (3 = tear down without aborting the communicator, which can itself hang). No Python exception
# reaches the training loop then; torchrun reports the failed process and stops the others.
# docs/faults.md states what a user sees.
NCCL_ENV = {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "3"}


def init_distributed(device: str = "auto", timeout_s: float = 600.0,
                     backend: str = "auto") -> DistInfo:
    """Join the torchrun process group if there is one; pick and select this process's device.

    ``backend`` 'auto' is NCCL on CUDA, gloo on CPU. ``timeout_s`` bounds how long a collective
    waits for a peer that died or hangs: under gloo the waiting process then raises (a one-line
    error, engine.cli); under NCCL the watchdog ends the process (NCCL_ENV). Two processes on one
    GPU are refused up front under NCCL (refuse_shared_gpu).
    """
    world_size = env_world_size()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    dev = resolve_device(device, local_rank)
    chosen = choose_backend(backend, dev)
    if world_size > 1:
        refuse_shared_gpu(device, dev, local_rank, local_world, chosen)
    if dev.type == "cuda":
        # also for one process with --device cuda:N: the pin-memory thread and every bare
        # torch.cuda call (streams, memory stats) then use this GPU, not GPU 0
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        if chosen == "nccl":
            for key, value in NCCL_ENV.items():
                os.environ.setdefault(key, value)
        dist.init_process_group(backend=chosen, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


# What collectives raise when a peer process died, hung past the timeout or became unreachable:
# gloo raises plain RuntimeErrors from its transport; the rendezvous store raises DistStoreError /
# DistNetworkError; NCCL raises DistBackendError, for a lost peer only with one of these texts.
_PEER_FAILURE_TEXTS = ("gloo/transport", "Connection reset by peer", "Connection closed by peer",
                       "Timed out waiting", "remote process exited", "ncclRemoteError",
                       "Watchdog caught collective operation timeout", "communicator was aborted",
                       "caused pair closure")

# NCCL's own errors that are not a lost peer: (text in the message, cause, fix), first match wins.
# Every NCCL error message carries "NCCL version x.y.z": the texts below avoid that phrase.
_BACKEND_CAUSES = (
    ("Duplicate GPU", "two processes of the job use the same GPU",
     "check --device (use cuda or auto under torchrun), CUDA_VISIBLE_DEVICES, and that "
     "--nproc_per_node is at most the number of GPUs"),
    ("invalid usage", "NCCL was called in a way it does not support (often two ranks on one GPU)",
     "check --device, CUDA_VISIBLE_DEVICES and --nproc_per_node; rerun with NCCL_DEBUG=INFO"),
    ("version mismatch", "the NCCL versions of the processes differ",
     "use one torch build on every machine of the job (python -c 'import torch; "
     "print(torch.cuda.nccl.version())')"),
    ("unhandled system error", "NCCL could not set up its transport (shared memory, network "
     "interface or GPU topology)", "rerun with NCCL_DEBUG=INFO to see which; in containers give "
     "/dev/shm room (--shm-size) and set NCCL_SOCKET_IFNAME to the right interface"),
    ("unhandled cuda error", "a CUDA call inside NCCL failed (a driver older than this torch's "
     "CUDA, or a GPU fault)", "check nvidia-smi and that the driver supports torch's CUDA "
     "(torch.version.cuda); rerun with NCCL_DEBUG=INFO"),
)


def _is_backend_error(exc: BaseException) -> bool:
    return isinstance(exc, getattr(dist, "DistBackendError", ()))


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective of a multi-process job failing because of another process.

    A DistBackendError (NCCL) counts only with a lost-peer text; "Duplicate GPU", version and
    topology errors are configuration errors (:func:`is_backend_failure`).
    """
    if env_world_size() <= 1:
        return False
    text = str(exc)
    if _is_backend_error(exc):
        return any(t in text for t in _PEER_FAILURE_TEXTS)
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    return isinstance(exc, RuntimeError) and any(t in text for t in _PEER_FAILURE_TEXTS)


def is_backend_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the communication backend (NCCL) failing for a reason of its own."""
    return _is_backend_error(exc) and not is_peer_failure(exc)


def _first_sentence(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = re.sub(r"^\[[^\]]*\]\s*", "", lines[0]) if lines else type(exc).__name__
    return re.split(r"(?<=\.)\s", detail, maxsplit=1)[0].rstrip(".")  # the first sentence


def peer_failure_message(exc: BaseException) -> str:
    """One line for :func:`is_peer_failure` errors: which process, what happened, what to do."""
    rank = os.environ.get("RANK", "?")
    return (f"process {rank} of {env_world_size()} lost contact with another process of the job "
            f"(it died, hung for longer than --dist-timeout-s, or the network failed): "
            f"{_first_sentence(exc)}. The launcher's log names the process that failed first; "
            "restart the job (pretraining continues from the last checkpoint with --resume auto).")


def backend_failure_message(exc: BaseException) -> str:
    """One line for :func:`is_backend_failure` errors: the backend's cause and its fix."""
    text = str(exc)
    rank = os.environ.get("RANK", "?")
    backend = "NCCL" if "nccl" in text.lower() else "process-group"   # gloo raises it too
    for needle, cause, fix in _BACKEND_CAUSES:
        if needle.lower() in text.lower():
            return (f"process {rank}: the {backend} backend failed because {cause} "
                    f"({_first_sentence(exc)}); {fix}")
    return (f"process {rank}: the {backend} backend failed ({_first_sentence(exc)}); this is not "
            "a lost peer: rerun with NCCL_DEBUG=INFO (or TORCH_DISTRIBUTED_DEBUG=DETAIL) to see "
            "the cause, and check --device, CUDA_VISIBLE_DEVICES and --nproc_per_node against the "
            "GPUs")


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
