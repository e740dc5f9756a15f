"""Attention-MIL branch over the 10 competition-spectrogram channels (SPEC §3 `spect_backbone`)."""
from __future__ import annotations

import torch
from torch import nn

from .backbone import create_backbone


class SpectBackbone(nn.Module):
    """Each channel is one 1x300x100 image; the features are pooled with learned attention over channels."""

    def __init__(self, backbone: str, attention_dim: int = 2048):
        super().__init__()
        self.backbone, self.num_features = create_backbone(backbone)
        self.attention = nn.Sequential(nn.Linear(self.num_features, attention_dim), nn.Tanh(),
                                       nn.Linear(attention_dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 10, 300, 100) -> (B, F)."""
        b, c, h, w = x.shape
        feats = self.backbone(x.reshape(b * c, 1, h, w)).reshape(b, c, -1)  # (B, 10, F)
        weights = torch.softmax(self.attention(feats), dim=1)  # (B, 10, 1)
        return (feats * weights).sum(dim=1)
