"""C3D (Tran et al., "Learning Spatiotemporal Features with 3D Convolutional Networks", ICCV 2015),
in the 8-conv form with BatchNorm used by the self-supervised video literature, with its pooling
arranged so that 16 input frames leave 4 timesteps (spec section 3).

Layout at width w (64 = the paper's network; channels 64-128-256-256-512-512-512-512). Every conv is
3x3x3, stride 1, padding 1, no bias (BatchNorm follows), then BatchNorm3d and ReLU. Pools are max
pools with kernel = stride, sizes as [T, H, W]:

    name   out channels   pool after it         [T, H, W] for a 16x112x112 input
    conv1  w              pool1 (1, 2, 2)       16 x 56 x 56
    conv2  2w             pool2 (2, 2, 2)        8 x 28 x 28
    conv3a 4w             -                      8 x 28 x 28
    conv3b 4w             pool3 (2, 2, 2)        4 x 14 x 14
    conv4a 8w             -                      4 x 14 x 14
    conv4b 8w             pool4 (1, 2, 2)        4 x  7 x  7
    conv5a 8w             -                      4 x  7 x  7
    conv5b 8w             - (no pool5)           4 x  7 x  7

Compared with the original C3D, pool4 does not pool time and pool5 is dropped (the spatial
average of `forward` takes its place), so time is halved exactly twice: T -> T/4. Parameter
names: conv1.weight, bn1.{weight,bias,running_mean,...}, conv2.weight, ..., conv5b.weight, bn5b.*.
"""

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import (check_video_input, checkpoint_stage, checkpointing_active,
                     init_video_weights, match_memory_format)
from .registry import register_backbone

# (layer suffix, out channels as a multiple of width, max-pool kernel = stride after it or None)
C3D_LAYOUT = (
    ("1", 1, (1, 2, 2)),
    ("2", 2, (2, 2, 2)),
    ("3a", 4, None),
    ("3b", 4, (2, 2, 2)),
    ("4a", 8, None),
    ("4b", 8, (1, 2, 2)),
    ("5a", 8, None),
    ("5b", 8, None),
)
# Activation-checkpointing segments: the convs sharing a number (conv3a, conv3b, pool3 = stage "3")
C3D_STAGES = tuple(dict.fromkeys(suffix[0] for suffix, _, _ in C3D_LAYOUT))  # ("1", ..., "5")


class C3D(nn.Module):
    """8-conv C3D trunk with BatchNorm (layout in the module docstring); no fc layers.

    Args:
        width: base channels (64 = the paper's C3D); out_channels = 8 * width.

    Attributes:
        grad_checkpoint: when True (default False), training-mode forwards with autograd on run each
            of the five stages (C3D_STAGES: conv1+pool1, conv2+pool2, conv3a+conv3b+pool3, ...)
            under activation checkpointing (models.common.checkpoint_stage). Same outputs, gradients
            and BatchNorm running statistics; less memory, more compute.
    """

    def __init__(self, width: int = 64):
        super().__init__()
        in_channels = 3
        for suffix, multiple, pool in C3D_LAYOUT:
            out_channels = multiple * width
            self.add_module(f"conv{suffix}", nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False))
            self.add_module(f"bn{suffix}", nn.BatchNorm3d(out_channels))
            if pool is not None:
                self.add_module(f"pool{suffix[0]}", nn.MaxPool3d(kernel_size=pool, stride=pool))
            in_channels = out_channels
        self.out_channels = in_channels
        self.grad_checkpoint = False
        init_video_weights(self)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled final feature map.

        Args:
            x: clips [B, 3, T, H, W].

        Returns:
            [B, out_channels, T/4, H/16, W/16] (floor division at each pool).
        """
        check_video_input(x, "C3D")
        x = match_memory_format(x, self)
        checkpointed = checkpointing_active(self)
        for stage in C3D_STAGES:
            run = functools.partial(self._stage, stage)
            x = checkpoint_stage(run, x, owner=self) if checkpointed else run(x)
        return x  # [B, 8w, T/4, H/16, W/16]

    def _stage(self, stage: str, x: torch.Tensor) -> torch.Tensor:
        """The conv-BN-ReLU layers (and the pool) whose names start with conv<stage>."""
        for suffix, _, pool in C3D_LAYOUT:
            if suffix[0] != stage:
                continue
            x = F.relu(getattr(self, f"bn{suffix}")(getattr(self, f"conv{suffix}")(x)), inplace=True)
            if pool is not None:
                x = getattr(self, f"pool{suffix[0]}")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Final feature map averaged over space only.

        Args:
            x: clips [B, 3, T, H, W].

        Returns:
            [B, out_channels, T/4].
        """
        return self.feature_map(x).mean(dim=(3, 4))  # [B, C, T/4]


@register_backbone("c3d")
def c3d(width: int = 64) -> C3D:
    """C3D with BatchNorm, 16 frames -> 4 timesteps; 512 output channels at width 64."""
    return C3D(width)
