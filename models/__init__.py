"""Backbones (R3D-18, R(2+1)D-18, C3D), TCLR's projection head and model, the action classifier,
and weight loading."""

from . import c3d, resnet3d  # noqa: F401  (importing registers the backbones)
from .classifier import Classifier
from .head import ProjectionHead
from .registry import BACKBONES, build_backbone, register_backbone
from .tclr import TCLRModel
from .weights import (CheckpointError, LoadReport, build_initialised_backbone, init_backbone,
                      load_backbone_weights, read_checkpoint)

__all__ = [
    "BACKBONES",
    "CheckpointError",
    "Classifier",
    "LoadReport",
    "ProjectionHead",
    "TCLRModel",
    "build_backbone",
    "build_initialised_backbone",
    "init_backbone",
    "load_backbone_weights",
    "read_checkpoint",
    "register_backbone",
]
