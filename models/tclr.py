"""The TCLR model: backbone + projection head over one pretraining batch (Dave et al., "TCLR:
Temporal Contrastive Learning for Video Representation", CVIU 2022; spec sections 1, 3, 4)."""

import torch
import torch.nn as nn

from .head import ProjectionHead


class TCLRModel(nn.Module):
    """Backbone f and projection head g applied to the clips of a TCLR pretraining batch.

    A batch holds, for each of B videos and each of V augmented views, one global (sparse) clip and
    K local (dense) clips: clips [B, V, 1 + K, C, T, H, W]. The backbone's final map of a global clip
    must have exactly K timesteps (timestep j covers the stretch of time of local clip j).

    Two ways to run the backbone; they differ only in BatchNorm's batch statistics in training mode
    (in eval mode, with running statistics, both give the same outputs):

    - fused=False (default, the release's behaviour): one backbone pass per clip group of B clips,
      V * (1 + K) passes (10 for V = 2, K = 4), so BatchNorm normalises each group with its own
      statistics. Order of passes (it only matters for the running-statistics updates), as in the
      release's training loop: the global clips of view 0 .. V-1, then the local clips 1..K of
      view 0, then those of view 1, and so on. The head likewise runs once per group; for the local
      representations of a global clip it runs once per timestep (the release's `mlp`).
    - fused=True: one backbone pass over all B * V * (1 + K) clips (BatchNorm statistics over every
      clip of the batch), one head pass for all global representations and one for all local
      representations. Faster on a GPU; not what produced the published numbers.

    Args:
        backbone: module mapping [N, 3, T, H, W] -> [N, C, T'] with attribute `out_channels` = C.
        head: ProjectionHead with in_dim = C.
        fused: see above; a plain attribute, so it can be switched after construction.
    """

    def __init__(self, backbone: nn.Module, head: ProjectionHead, fused: bool = False):
        super().__init__()
        if head.in_dim != backbone.out_channels:
            raise ValueError(
                f"head in_dim {head.in_dim} != backbone out_channels {backbone.out_channels}"
            )
        self.backbone = backbone
        self.head = head
        self.fused = fused

    def backbone_features(self, x: torch.Tensor, pool_time: bool = True) -> torch.Tensor:
        """Backbone features for downstream use (retrieval, linear evaluation).

        Args:
            x: clips [N, 3, T, H, W].
            pool_time: average over the T' timesteps too.

        Returns:
            [N, C] if pool_time else [N, C, T'].
        """
        fmap = self.backbone(x)  # [N, C, T']
        return fmap.mean(dim=2) if pool_time else fmap

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Representations for the TCLR losses.

        Args:
            clips: [B, V, 1 + K, C, T, H, W]; index 0 on the third axis is the global clip.

        Returns:
            sparse_global: global representations of the global clips [V, B, D].
            sparse_local: per-timestep local representations of the global clips [V, B, K, D].
            dense_global: global representations of the local clips [V, B, K, D].
        """
        if clips.dim() != 7:
            raise ValueError(
                f"TCLRModel expects clips [B, V, 1+K, C, T, H, W], got shape {tuple(clips.shape)}"
            )
        if clips.shape[2] < 2:
            raise ValueError(f"need a global clip and at least one local clip, got 1+K = {clips.shape[2]}")
        if self.fused:
            return self._forward_fused(clips)
        return self._forward_per_group(clips)

    @staticmethod
    def _check_timesteps(fmap: torch.Tensor, num_local: int) -> None:
        """The global-local loss pairs timestep j of the global clip with local clip j."""
        if fmap.shape[-1] != num_local:
            raise ValueError(
                f"the backbone's feature map of a global clip has {fmap.shape[-1]} timesteps but the "
                f"batch has K = {num_local} local clips; they must be equal (K = clip_len / 4 for "
                f"these backbones, e.g. clip_len 16 -> K = 4)"
            )

    def _forward_per_group(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The release's V * (1 + K) backbone passes (BatchNorm statistics per group of B clips)."""
        num_views, num_local = clips.shape[1], clips.shape[2] - 1
        sparse_global, sparse_local = [], []
        for v in range(num_views):
            fmap = self.backbone(clips[:, v, 0])  # [B, C, T']
            self._check_timesteps(fmap, num_local)
            sparse_global.append(self.head.global_rep(fmap))  # [B, D]
            sparse_local.append(self.head.local_reps(fmap, separate_timesteps=True))  # [B, K, D]
        dense_global = []
        for v in range(num_views):
            per_clip = [self.head.global_rep(self.backbone(clips[:, v, j])) for j in range(1, num_local + 1)]
            dense_global.append(torch.stack(per_clip, dim=1))  # [B, K, D]
        return (
            torch.stack(sparse_global),  # [V, B, D]
            torch.stack(sparse_local),  # [V, B, K, D]
            torch.stack(dense_global),  # [V, B, K, D]
        )

    def _forward_fused(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One backbone pass over every clip (BatchNorm statistics over the whole batch)."""
        b, v, g = clips.shape[:3]
        fmap = self.backbone(clips.flatten(0, 2))  # [B * V * (1+K), C, T']
        self._check_timesteps(fmap, g - 1)
        fmap = fmap.view(b, v, g, *fmap.shape[1:])  # [B, V, 1+K, C, T']
        reps = self.head.global_rep(fmap.flatten(0, 2)).view(b, v, g, -1)  # [B, V, 1+K, D]
        reps = reps.transpose(0, 1)  # [V, B, 1+K, D]
        local = self.head.local_reps(fmap[:, :, 0].flatten(0, 1))  # [B * V, K, D]
        local = local.view(b, v, g - 1, -1).transpose(0, 1)  # [V, B, K, D]
        return reps[:, :, 0].contiguous(), local.contiguous(), reps[:, :, 1:].contiguous()
