"""R3D-18 and R(2+1)D-18 trunks (Tran et al., "A Closer Look at Spatiotemporal Convolutions for
Action Recognition", CVPR 2018) built from torchvision's own blocks, at any width, with TCLR's
layer4 change (spec section 3).

torchvision's VideoResNet hard-codes the widths 64-128-256-512, so the trunk here composes
torchvision.models.video.resnet's BasicBlock / Conv3DSimple / Conv2Plus1D with the same
`_make_layer` logic at `width`-2w-4w-8w. At width 64 every parameter and buffer name and shape
equals torchvision's r3d_18 / r2plus1d_18 (without avgpool and fc) after the layer4 change, so
torchvision-format and release weights load unchanged (tests/test_models.py checks this).

The layer4 change (the release's `build_r3d_backbone` and, identically, its R(2+1)D builder in
nn_retrieval/model.py): the first block of layer4 no longer halves time. Its WHOLE first
convolution, `layer4[0].conv1[0]`, becomes one full Conv3d(4w, 8w, 3x3x3) with stride (1, 2, 2),
padding (2, 1, 1) and temporal dilation 2, and its downsample 1x1x1 conv gets stride (1, 2, 2).
For R3D-18 the kernels keep their shapes (no extra parameters). For R(2+1)D-18 the (2+1)D pair
(1x3x3 spatial conv, BN, ReLU, 3x1x1 temporal conv) is replaced by that 3x3x3 conv, exactly as
the release does, so that the release's Kinetics-400 R(2+1)D-18 weights (key
`layer4.0.conv1.0.weight` of shape [512, 256, 3, 3, 3]) load. The final map has T/4 timesteps
instead of T/8.

Initialisation, as the release: torchvision's (Kaiming-normal fan_out convs, BN 1/0) runs on the
trunk first, and only then are the two layer4 convs replaced, so those two keep PyTorch's default
Conv3d initialisation (kaiming_uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
"""

import torch
import torch.nn as nn
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, Conv3DSimple

from .common import (check_video_input, checkpoint_stage, checkpointing_active,
                     init_video_weights, match_memory_format)
from .registry import register_backbone

BLOCKS_PER_LAYER = (2, 2, 2, 2)  # ResNet-18
R2PLUS1D_STEM_MID = 45  # torchvision's R2Plus1dStem: 3 -> 45 (1x7x7) -> 64 (3x1x1) at width 64


def stem_3d(width: int) -> nn.Sequential:
    """torchvision's BasicStem (3x7x7 conv, stride (1, 2, 2)) with `width` output channels.

    Same module indices as torchvision: stem.0 conv, stem.1 BN, stem.2 ReLU.
    """
    return nn.Sequential(
        nn.Conv3d(3, width, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


def stem_2plus1d(width: int) -> nn.Sequential:
    """torchvision's R2Plus1dStem (1x7x7 spatial then 3x1x1 temporal conv) at `width`.

    The middle width is torchvision's 45 scaled by width / 64 (45 at width 64), and the module
    indices are torchvision's: stem.0 conv, stem.1 BN, stem.2 ReLU, stem.3 conv, stem.4 BN, stem.5 ReLU.
    """
    mid = max(1, round(R2PLUS1D_STEM_MID * width / 64))
    return nn.Sequential(
        nn.Conv3d(3, mid, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, width, kernel_size=(3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


def keep_time_in_block(block: BasicBlock) -> None:
    """Apply TCLR's layer4 change to a strided BasicBlock, in place (the release's replacement).

    conv1[0] (R3D: the 3x3x3 conv; R(2+1)D: the whole Conv2Plus1D pair) -> one full
    Conv3d(in, out, 3x3x3, stride (1, 2, 2), padding (2, 1, 1), dilation (2, 1, 1), no bias);
    downsample[0] (1x1x1) -> stride (1, 2, 2). The new convs are freshly built, so they carry
    PyTorch's default Conv3d initialisation, as in the release (call this after
    init_video_weights).
    """
    in_channels = block.downsample[0].in_channels
    out_channels = block.downsample[0].out_channels
    block.conv1[0] = nn.Conv3d(in_channels, out_channels, kernel_size=(3, 3, 3), stride=(1, 2, 2),
                               padding=(2, 1, 1), dilation=(2, 1, 1), bias=False)
    block.downsample[0] = nn.Conv3d(in_channels, out_channels, kernel_size=1, stride=(1, 2, 2),
                                    bias=False)


class VideoResNetTrunk(nn.Module):
    """ResNet-18 video trunk (stem, layer1..layer4; no avgpool, no fc) with T/4 output timesteps.

    Args:
        conv_builder: torchvision's Conv3DSimple (R3D) or Conv2Plus1D (R(2+1)D).
        stem: the stem module, producing `width` channels.
        width: base channels; the layers have width, 2w, 4w, 8w channels (64 = torchvision's).

    Attributes:
        grad_checkpoint: when True (default False), training-mode forwards with autograd on run the
            stem and each of layer1..layer4 under activation checkpointing (models.common
            .checkpoint_stage): only the stage inputs are kept, the rest is recomputed in backward.
            Same outputs, gradients and BatchNorm running statistics; less memory, more compute.
    """

    def __init__(self, conv_builder: type, stem: nn.Module, width: int = 64):
        super().__init__()
        self.stem = stem
        self._inplanes = width
        self.layer1 = self._make_layer(conv_builder, width, BLOCKS_PER_LAYER[0], stride=1)
        self.layer2 = self._make_layer(conv_builder, 2 * width, BLOCKS_PER_LAYER[1], stride=2)
        self.layer3 = self._make_layer(conv_builder, 4 * width, BLOCKS_PER_LAYER[2], stride=2)
        self.layer4 = self._make_layer(conv_builder, 8 * width, BLOCKS_PER_LAYER[3], stride=2)
        init_video_weights(self)
        keep_time_in_block(self.layer4[0])  # after the init: its two convs keep PyTorch's default
        self.out_channels = 8 * width
        self.grad_checkpoint = False

    def _make_layer(self, conv_builder: type, planes: int, blocks: int, stride: int) -> nn.Sequential:
        """torchvision's VideoResNet._make_layer for BasicBlock (expansion 1)."""
        downsample = None
        if stride != 1 or self._inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv3d(
                    self._inplanes,
                    planes,
                    kernel_size=1,
                    stride=conv_builder.get_downsample_stride(stride),
                    bias=False,
                ),
                nn.BatchNorm3d(planes),
            )
        layers = [BasicBlock(self._inplanes, planes, conv_builder, stride, downsample)]
        self._inplanes = planes
        layers += [BasicBlock(planes, planes, conv_builder) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled final feature map.

        Args:
            x: clips [B, 3, T, H, W].

        Returns:
            [B, out_channels, T/4, H/16, W/16] (sizes rounded as the strided convs round them).
        """
        check_video_input(x, type(self).__name__)
        x = match_memory_format(x, self)
        x = self._stage(self.stem, x)  # [B, w, T, H/2, W/2]
        x = self._stage(self.layer1, x)  # [B, w, T, H/2, W/2]
        x = self._stage(self.layer2, x)  # [B, 2w, T/2, H/4, W/4]
        x = self._stage(self.layer3, x)  # [B, 4w, T/4, H/8, W/8]
        return self._stage(self.layer4, x)  # [B, 8w, T/4, H/16, W/16]

    def _stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """stage(x), under activation checkpointing when `grad_checkpoint` asks for it."""
        if checkpointing_active(self):
            return checkpoint_stage(stage, x, owner=stage)
        return stage(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Final feature map averaged over space only.

        Args:
            x: clips [B, 3, T, H, W].

        Returns:
            [B, out_channels, T/4].
        """
        return self.feature_map(x).mean(dim=(3, 4))  # [B, C, T/4]


@register_backbone("r3d18")
def r3d18(width: int = 64) -> VideoResNetTrunk:
    """R3D-18 (torchvision's r3d_18 trunk + TCLR's layer4 change); 33,166,272 parameters at width 64."""
    return VideoResNetTrunk(Conv3DSimple, stem_3d(width), width)


@register_backbone("r2plus1d18")
def r2plus1d18(width: int = 64) -> VideoResNetTrunk:
    """R(2+1)D-18 (torchvision's r2plus1d_18 trunk + TCLR's layer4 change, the release's layout).

    layer4[0].conv1[0] is one full dilated 3x3x3 Conv3d (4w -> 8w), not a (2+1)D pair; the other
    (2+1)D blocks keep torchvision's middle-width formula
    midplanes = (in * out * 27) // (in * 9 + 3 * out), which scales linearly with width.
    31,300,587 parameters at width 64 (462 more than torchvision's r2plus1d_18 trunk).
    """
    return VideoResNetTrunk(Conv2Plus1D, stem_2plus1d(width), width)
