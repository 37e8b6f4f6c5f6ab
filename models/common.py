"""Small helpers shared by the backbones: input checks, torchvision's weight initialisation and
activation checkpointing of backbone stages."""

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint


def check_video_input(x: torch.Tensor, backbone: str) -> None:
    """Fail early, with the shape, when x is not a batch of RGB/BGR clips [B, 3, T, H, W]."""
    if x.dim() != 5 or x.shape[1] != 3:
        raise ValueError(f"{backbone} expects clips [B, 3, T, H, W], got a tensor of shape {tuple(x.shape)}")


def match_memory_format(x: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """``x`` in channels_last_3d when ``module``'s first convolution weight is (after
    ``module.to(memory_format=torch.channels_last_3d)``), so oneDNN/cuDNN pick their fast NDHWC
    kernels instead of converting at every layer; otherwise ``x`` unchanged."""
    conv = next((m for m in module.modules() if isinstance(m, nn.Conv3d)), None)
    if conv is not None and conv.weight.is_contiguous(memory_format=torch.channels_last_3d) \
            and not conv.weight.is_contiguous():
        return x.contiguous(memory_format=torch.channels_last_3d)
    return x


def init_video_weights(module: nn.Module) -> None:
    """torchvision's VideoResNet initialisation: Kaiming-normal (fan_out) convs, BN weight 1 / bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm3d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def checkpointing_active(backbone: nn.Module) -> bool:
    """Whether `backbone` should run its stages under activation checkpointing now.

    Only when asked for (attribute `grad_checkpoint`), in training mode and with autograd recording:
    in eval mode or under torch.no_grad there are no activations to save, so it would only cost time.
    """
    wanted = bool(getattr(backbone, "grad_checkpoint", False))
    return wanted and backbone.training and torch.is_grad_enabled()


@contextlib.contextmanager
def running_stats_kept(module: nn.Module) -> Iterator[None]:
    """Whatever runs inside leaves the BatchNorm running statistics of `module` (running_mean,
    running_var, num_batches_tracked) as they were on entry.

    The buffers are copied on entry and written back in place on exit, also when the body raises
    (checkpoint's early stop ends a recomputation by raising inside it). Only the statistics are
    restored; the layers still normalise with batch statistics in training mode, and run the same
    kernels with the same arguments as in the first forward (checkpoint checks that the
    recomputation saves the same tensors, so BatchNorm must keep receiving its running buffers).
    """
    batchnorm = nn.modules.batchnorm._BatchNorm
    buffers = [
        buf
        for m in module.modules()
        if isinstance(m, batchnorm) and m.track_running_stats
        for buf in (m.running_mean, m.running_var, m.num_batches_tracked)
        if buf is not None
    ]
    saved = [buf.clone() for buf in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in zip(buffers, saved):
                buf.copy_(value)


def checkpoint_stage(
    stage: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, owner: nn.Module
) -> torch.Tensor:
    """stage(x) under non-reentrant activation checkpointing, with BatchNorm running statistics
    updated exactly once.

    Only x is kept for backward; the stage's forward runs again during backward to rebuild its
    activations. That recomputation would move BatchNorm's running statistics a second time (and
    count num_batches_tracked twice), so in eager mode it runs inside running_stats_kept(owner),
    which puts the buffers back as the forward passes left them; the recomputed activations and the
    gradients are unchanged (training-mode BatchNorm normalises with batch statistics). Under
    torch.compile, checkpoint accepts no such context; there the compiled graph applies buffer
    mutations once and the recomputation does not repeat them, so the plain call is correct.

    Args:
        stage: a module or function of one tensor.
        x: its input.
        owner: a module holding every BatchNorm layer the stage uses (the stage itself, or the
            whole backbone).

    Returns:
        stage(x).
    """
    if torch.compiler.is_compiling():
        return checkpoint(stage, x, use_reentrant=False)
    return checkpoint(
        stage,
        x,
        use_reentrant=False,
        context_fn=lambda: (contextlib.nullcontext(), running_stats_kept(owner)),
    )
