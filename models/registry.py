"""Backbone registry: name -> builder, so scripts and configs pick a backbone by name."""

from typing import Callable

import torch.nn as nn

# name -> builder(width=64, **options) -> nn.Module with forward(x [B, 3, T, H, W]) -> [B, C, T/4]
BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that adds a backbone builder to BACKBONES under `name`."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in BACKBONES:
            raise ValueError(f"backbone {name!r} is registered twice")
        BACKBONES[name] = builder
        return builder

    return decorate


def build_backbone(name: str, width: int = 64, **options) -> nn.Module:
    """Build a registered backbone.

    Args:
        name: registry name ("r3d18", "r2plus1d18", "c3d").
        width: base channels (64 = the paper's networks; the output has 8 * width channels).
        **options: passed to the builder.

    Returns:
        nn.Module mapping x [B, 3, T, H, W] -> [B, out_channels, T/4]; it carries the attributes
        `out_channels`, `name`, `width` and `grad_checkpoint` (False; set True for activation
        checkpointing of its stages in training, see models.common.checkpoint_stage).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(sorted(BACKBONES))}")
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"backbone width must be a positive int, got {width!r}")
    backbone = BACKBONES[name](width=width, **options)
    backbone.name = name
    backbone.width = width
    return backbone
