"""TCLR's projection head g (spec section 4), with the release's parameter names."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class ProjectionHead(nn.Module):
    """g(x) = L2normalize(BN1d(Linear(C -> D, no bias)(ReLU(BN1d(Linear(C -> C, bias)(x)))))).

    Module names fc1, bn1, fc2, bn2 are those of the release's `mlp`, so its heads load unchanged.

    Args:
        in_dim: backbone channels C (512 for the paper's backbones).
        hidden_dim: width of fc1 (default: in_dim).
        out_dim: embedding size D (128).
    """

    def __init__(self, in_dim: int, hidden_dim: int | None = None, out_dim: int = 128):
        super().__init__()
        hidden_dim = in_dim if hidden_dim is None else hidden_dim
        self.in_dim, self.out_dim = in_dim, out_dim
        self.fc1 = nn.Linear(in_dim, hidden_dim, bias=True)
        self.bn1 = nn.BatchNorm1d(hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, out_dim, bias=False)
        self.bn2 = nn.BatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project feature vectors.

        Args:
            x: [N, C].

        Returns:
            L2-normalised embeddings [N, D].
        """
        x = F.relu(self.bn1(self.fc1(x)), inplace=True)  # [N, hidden]
        return F.normalize(self.bn2(self.fc2(x)), p=2, dim=1)  # [N, D]

    def global_rep(self, fmap: torch.Tensor) -> torch.Tensor:
        """Global representation of each clip: average over the T' timesteps, then g.

        Args:
            fmap: space-pooled feature maps [N, C, T'].

        Returns:
            [N, D].
        """
        return self(fmap.mean(dim=2))  # [N, D]

    def local_reps(self, fmap: torch.Tensor, separate_timesteps: bool = False) -> torch.Tensor:
        """Local representations: g applied to each timestep's C-dim slice.

        Args:
            fmap: space-pooled feature maps [N, C, T'].
            separate_timesteps: False runs all N * T' slices through g as one batch (BatchNorm
                statistics over all of them in training mode). True runs g once per timestep
                (N slices each, so BatchNorm statistics per timestep), as the release's `mlp` does.
                Identical in eval mode.

        Returns:
            [N, T', D].
        """
        n, c, t = fmap.shape
        if separate_timesteps:
            return torch.stack([self(fmap[:, :, i]) for i in range(t)], dim=1)  # [N, T', D]
        slices = fmap.transpose(1, 2).reshape(n * t, c)  # [N * T', C]
        return self(slices).view(n, t, -1)  # [N, T', D]
