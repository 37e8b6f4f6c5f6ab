"""Features of a video: the one implementation (TCLR_SPEC section 7).

A :class:`FeatureProtocol` says what a video's feature is: ``num_clips`` evenly spaced clips of
``clip_len`` frames at ``stride`` (the release's starts), centre crop ``crop`` of the frame height
resized to ``resolution``, channel order ``color``, and then either

* ``kind="retrieval"``: each clip's backbone feature map [C, T'] flattened to C*T' (2048 for the
  paper's backbones), averaged over the clips, L2-normalised (nearest-neighbour retrieval), or
* ``kind="pooled"``: each clip's map averaged over time to C (512), averaged over the clips,
  L2-normalised (the linear probe's input, normalised);

with ``per_clip`` the clips are kept ([K, D], each clip L2-normalised on its own; a clip a very
short video cannot give is all zeros). The backbone runs in eval mode.

:func:`video_features` turns a batch of clips into features; :func:`batch_features` runs it over a
loader; :func:`feature_of_video` over one video file. nn_retrieval.py (engine.retrieval),
extract_features.py (engine.extract) and scripts/search_features.py all compute features here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn

from engine import metrics
from engine.common import autocast

FEATURE_KINDS = ("retrieval", "pooled")


@dataclass(frozen=True)
class FeatureProtocol:
    """What a video's feature is (see the module docstring); JSON-able through :meth:`as_dict`."""

    kind: str = "retrieval"      # "retrieval" (flattened map) or "pooled" (time-averaged map)
    num_clips: int = 9           # clips per video (evenly spaced starts)
    clip_len: int = 16           # frames per clip
    stride: int = 2              # frame stride within a clip
    resolution: int = 112        # side of the network input
    color: str = "bgr"           # channel order fed to the network
    crop: float = 0.8            # centre square side as a fraction of the frame height
    flip: bool = False           # flip the clips horizontally
    per_clip: bool = False       # keep the clips' features instead of averaging them

    def __post_init__(self):
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"feature kind must be one of {FEATURE_KINDS}, got {self.kind!r}")

    @classmethod
    def from_config(cls, cfg: Any, kind: str = "retrieval", per_clip: bool = False
                    ) -> "FeatureProtocol":
        """The protocol of a job config (``num_clips`` and the evaluation fields of ``data``)."""
        d = cfg.data
        return cls(kind=kind, num_clips=cfg.num_clips, clip_len=d.clip_len, stride=d.train_stride,
                   resolution=d.resolution, color=d.color, crop=d.eval_crop, flip=d.eval_flip,
                   per_clip=per_clip)

    @classmethod
    def from_dict(cls, values: dict) -> "FeatureProtocol":
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def dataset(self, videos: list, bad_videos: str = "raise"):
        """A MultiClipDataset of ``videos`` ([(path, label)]) cut by this protocol.

        Args:
            bad_videos: "raise" (evaluation: DatasetError) or "record" (the item names the reason;
                see MultiClipDataset).
        """
        from dataloaders.datasets import MultiClipDataset
        return MultiClipDataset(videos, num_clips=self.num_clips, clip_len=self.clip_len,
                                stride=self.stride, size=self.resolution, color=self.color,
                                crop=self.crop, flip=self.flip, bad_videos=bad_videos)

    def feature_dim(self, backbone: nn.Module) -> int:
        """D of one feature (per clip): C*T' (retrieval) or C (pooled); every backbone divides
        time by 4."""
        return backbone.out_channels * (self.clip_len // 4 if self.kind == "retrieval" else 1)

    def describe(self) -> str:
        what = ("feature map [C, T'] flattened" if self.kind == "retrieval"
                else "feature map averaged over time")
        clips = "kept per clip" if self.per_clip else "averaged over the clips"
        return (f"{self.kind}: {what}, {self.num_clips} clips/video ({self.clip_len} frames stride "
                f"{self.stride}, centre crop {self.crop:g} -> {self.resolution}px, "
                f"{self.color.upper()}, {'flipped' if self.flip else 'no flip'}), {clips}, "
                "L2-normalised")


def video_features(backbone: nn.Module, clips: torch.Tensor,
                   clip_mask: torch.Tensor | None = None, kind: str = "retrieval",
                   per_clip: bool = False) -> torch.Tensor:
    """Features of a batch of videos.

    Args:
        backbone: maps [N, 3, T, S, S] -> feature map [N, C, T'].
        clips: [B, K, 3, T, S, S], K clips per video.
        clip_mask: bool [B, K], the clips to use (MultiClipDataset's "clip_mask": a very short
            video's clips that cannot be padded are left out, as in the release); None = all.
        kind: "retrieval" (D = C*T') or "pooled" (D = C).
        per_clip: keep the clips: [B, K, D], each L2-normalised, masked-out clips zero.
    Returns:
        float32 [B, D] (clip features averaged, L2-normalised) or [B, K, D] (per_clip).
    """
    b, k = clips.shape[:2]
    fmap = backbone(clips.flatten(0, 1)).float()                     # [B*K, C, T']
    flat = fmap.flatten(1) if kind == "retrieval" else fmap.mean(dim=2)
    flat = flat.view(b, k, -1)                                       # [B, K, D]
    if per_clip:
        out = metrics.l2_normalize(flat.flatten(0, 1)).view(b, k, -1)  # [B, K, D]
        return out if clip_mask is None else out * clip_mask.to(out.device)[..., None]
    return metrics.l2_normalize(metrics.masked_clip_mean(flat, clip_mask))  # [B, D]


@torch.no_grad()
def batch_features(backbone: nn.Module, loader, device: torch.device,
                   dtype: torch.dtype | None, protocol: FeatureProtocol,
                   progress=None) -> Iterator[tuple[dict, torch.Tensor]]:
    """(batch, features on the CPU) for each batch of a loader of protocol.dataset items.

    Batches whose videos all failed (bad_videos="record") yield an empty [0, ...] tensor without a
    forward pass. ``progress`` (a tqdm bar or None) advances by the videos of each batch.
    """
    backbone.eval()
    for batch in loader:
        clips = batch["clips"]                                       # [B, K, 3, T, S, S]
        if clips.shape[0] == 0:
            feats = torch.zeros(0)
        else:
            with autocast(device, dtype):
                feats = video_features(backbone, clips.to(device, non_blocking=True),
                                       batch.get("clip_mask"), protocol.kind,
                                       protocol.per_clip).cpu()
        if progress is not None:
            progress.update(len(batch["video_id"]) + len(batch.get("failed", ())))
        yield batch, feats


@torch.no_grad()
def feature_of_video(backbone: nn.Module, path: str, protocol: FeatureProtocol,
                     device: torch.device | str = "cpu", dtype: torch.dtype | None = None
                     ) -> torch.Tensor:
    """The feature of one video file: float32 [D], or [K, D] with protocol.per_clip.

    Raises:
        dataloaders.splits.DatasetError: the video cannot be decoded (the message names it).
    """
    from dataloaders.batching import collate_multiclip
    device = torch.device(device)
    batch = collate_multiclip([protocol.dataset([(str(path), 0)])[0]])
    ((_, feats),) = list(batch_features(backbone.to(device), [batch], device, dtype, protocol))
    return feats[0]


# --------------------------------------------------------------------------------------------
# What features are keyed by: the weights' content and each video's file identity
# --------------------------------------------------------------------------------------------

def video_identity(path: str) -> str:
    """A video's identity for the cache: path, size and modification time (a dataset regenerated
    or re-downloaded in place changes them)."""
    try:
        st = Path(path).stat()
    except OSError:
        return f"{path}\tabsent"
    return f"{path}\t{st.st_size}\t{st.st_mtime_ns}"
