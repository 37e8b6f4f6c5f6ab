"""Small helpers shared by the backbones: input checks and torchvision's weight initialisation."""

import torch
import torch.nn as nn


def check_video_input(x: torch.Tensor, backbone: str) -> None:
    """Fail early, with the shape, when x is not a batch of RGB/BGR clips [B, 3, T, H, W]."""
    if x.dim() != 5 or x.shape[1] != 3:
        raise ValueError(f"{backbone} expects clips [B, 3, T, H, W], got a tensor of shape {tuple(x.shape)}")


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
