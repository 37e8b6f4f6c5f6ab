"""The pieces of a training step that pretraining and classification share.

Both loops (``engine.pretrain.train_one_epoch``, ``engine.classify.train_one_epoch``) run the same
step around their own forward pass: one cross-process guard before the update (every process's
loss finite, no batch with too many decode failures; :func:`reduce_and_guard`), then
:func:`optimizer_step`. At the end of an epoch the decode failures of every process are gathered
and reported (:func:`gather_failures`, :func:`warn_decode_failures`). :func:`wrap_ddp` and
:func:`unwrap` put a model into and take it out of DistributedDataParallel. Neither protocol module
imports the other; both import this one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
from tqdm import tqdm

from config import ConfigError
from engine.distributed import all_gather_objects, all_reduce_sum
from engine.errors import NonFiniteLossError, TooManyBadVideosError


def wrap_ddp(model: nn.Module, device: torch.device, sync_bn: bool = False) -> nn.Module:
    """``model`` (already on ``device``) under DistributedDataParallel, with SyncBatchNorm first
    when ``sync_bn`` asks for it (the module's BatchNorm layers are replaced in place)."""
    if sync_bn:
        if device.type == "cpu":
            raise ConfigError("--sync-bn true needs CUDA processes (torch's SyncBatchNorm runs on "
                              "GPUs only); drop --sync-bn on the CPU")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def optimizer_step(loss: torch.Tensor, optimizer, scaler) -> None:
    """Gradients of ``loss`` (through the grad scaler), then one optimizer step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def reduce_and_guard(values: torch.Tensor, failures: list, batch_size: int,
                     max_bad_fraction: float, *, non_finite: Callable[[torch.Tensor], str],
                     bad_batch: Callable[[], str], flags: Sequence[float] = ()
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum a step's values over processes and stop the run before the update if one went bad.

    One all-reduce carries the values, whether this process's batch had more than
    ``max_bad_fraction`` decode failures, and the caller's ``flags``, so every process takes the
    same decision at the same step.

    Args:
        values: [N] this process's values (losses) on the training device.
        failures: this process's (path, reason) decode failures of the batch.
        batch_size: videos in this process's batch.
        max_bad_fraction: the share of a batch allowed to fail (``--max-bad-fraction``).
        non_finite: the NonFiniteLossError message, given the summed values.
        bad_batch: the TooManyBadVideosError message.
        flags: more numbers to sum over processes (e.g. a stop request).
    Returns:
        (summed values [N], summed flags [len(flags)]), on the CPU.
    Raises:
        NonFiniteLossError: a summed value is NaN or infinite.
        TooManyBadVideosError: some process's batch had too many decode failures.
    """
    too_many = float(len(failures) > max_bad_fraction * batch_size)
    local = torch.cat([values.detach().float().reshape(-1).cpu(), torch.tensor([too_many, *flags])])
    reduced = all_reduce_sum(local.to(values.device)).cpu()
    n = values.numel()
    sums = reduced[:n]
    if not all(math.isfinite(v) for v in sums.tolist()):
        raise NonFiniteLossError(non_finite(sums))
    if reduced[n] > 0:
        raise TooManyBadVideosError(bad_batch())
    return sums, reduced[n + 1:]


def gather_failures(failures: list) -> list:
    """The (path, reason) failures of every process, in rank order."""
    return [f for per_rank in all_gather_objects(failures) for f in per_rank]


def warn_decode_failures(logger: logging.Logger, epoch: int, failures: list) -> None:
    """The end-of-epoch warning naming every video that failed to decode (``epoch`` 0-based)."""
    if failures:
        logger.warning(f"epoch {epoch + 1}: {len(failures)} videos failed to decode and were "
                       "replaced by the next listed video:\n  "
                       + "\n  ".join(f"{p}: {r}" for p, r in failures))


def epoch_steps(loader, max_steps: int, done: int = 0) -> int:
    """Steps of an epoch: the loader's (plus ``done`` already taken), at most ``max_steps`` (0 =
    no cap, ``--max-steps-per-epoch``)."""
    total = len(loader) + done
    return min(total, max_steps) if max_steps else total


def progress_bar(ctx: Any, desc: str, **kwargs) -> tqdm:
    """A tqdm bar shown on rank 0 when ``cfg.progress`` is on (kwargs go to tqdm)."""
    return tqdm(desc=desc, leave=False, dynamic_ncols=True,
                disable=not (ctx.dist.is_main and ctx.cfg.progress), **kwargs)
