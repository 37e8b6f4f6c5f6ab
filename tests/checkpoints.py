"""A tiny pretraining checkpoint in this project's format, for the tests that evaluate one."""

from pathlib import Path

import torch


def tiny_pretrain_checkpoint(path: Path, seed: int) -> Path:
    """Write a TCLR model (R3D-18 backbone + projection head, width 8, BGR) initialised with
    ``seed`` to ``path`` as this project's pretraining checkpoint; returns ``path``."""
    from engine import checkpoint as ckpt_io
    from models import ProjectionHead, TCLRModel, build_backbone
    torch.manual_seed(seed)
    backbone = build_backbone("r3d18", width=8)
    model = TCLRModel(backbone, ProjectionHead(backbone.out_channels))
    ckpt_io.atomic_save({"format": ckpt_io.FORMAT, "format_version": ckpt_io.FORMAT_VERSION,
                         "model": model.state_dict(),
                         "meta": {"backbone": "r3d18", "width": 8, "color": "bgr",
                                  "kind": "pretrain"}}, path)
    return path
