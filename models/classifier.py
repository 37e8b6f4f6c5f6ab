"""The action classifier of linear evaluation and finetuning: backbone -> pooled features -> fc."""

import torch
import torch.nn as nn


class Classifier(nn.Module):
    """Backbone -> average over time (and space, inside the backbone) -> [dropout] -> Linear.

    State-dict keys are ``backbone.<torchvision-style name>`` and ``fc.weight``/``fc.bias``, so a
    classifier checkpoint also loads as backbone weights elsewhere.

    Args:
        backbone: module mapping clips [B, 3, T, H, W] -> feature map [B, C, T'] with attribute
            ``out_channels`` = C.
        num_classes: number of output classes.
        dropout: dropout probability before fc (0 = none).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(backbone.out_channels, num_classes)
        self.backbone_frozen = False

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features: clips [B, 3, T, H, W] -> [B, C]."""
        if self.backbone_frozen:
            # nothing upstream of fc needs a gradient: skip storing activations
            with torch.no_grad():
                return self.backbone(x).mean(dim=2)                      # [B, C]
        return self.backbone(x).mean(dim=2)                              # [B, C]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: clips [B, 3, T, H, W] -> [B, num_classes]."""
        return self.fc(self.dropout(self.features(x)))

    def freeze_backbone(self) -> None:
        """Stop gradients into the backbone (linear evaluation)."""
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.backbone_frozen = True
