"""WaveNet-image branch (SPEC §3 `eeg_backbone_1d`): one WaveNet per montage chain, then a 2-D backbone."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..montage import CHAIN_SIZE, N_CHAINS
from .backbone import create_backbone, is_hgnetv2
from .config import WaveNetConfig


class WaveBlock(nn.Module):
    """Gated dilated residual block: `levels` dilations 1..2^(levels-1); the residual is always the block input."""

    def __init__(self, in_channels: int, out_channels: int, levels: int, ds_factor: int = 0):
        super().__init__()
        self.conv1x1 = nn.Conv1d(in_channels, out_channels, kernel_size=1)
        self.skip_convs = nn.ModuleList(nn.Conv1d(out_channels, out_channels, kernel_size=1) for _ in range(levels))
        self.dil_convs = nn.ModuleList(
            nn.Conv1d(out_channels, out_channels, kernel_size=3, padding=2**k, dilation=2**k)
            for k in range(levels) for _ in range(3)
        )
        self.ds_conv = (nn.Conv1d(out_channels, out_channels, kernel_size=ds_factor, stride=ds_factor)
                        if ds_factor else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, in, T) -> (N, out, T), or (N, out, T / ds_factor) in the last block."""
        x = self.conv1x1(x)
        res = x
        for k, skip in enumerate(self.skip_convs):
            sig, tanh, mish = self.dil_convs[3 * k:3 * k + 3]
            x = skip(torch.sigmoid(sig(x)) * torch.tanh(tanh(x)) * F.mish(mish(x))) + res
        if self.ds_conv is not None:
            x = self.ds_conv(x)
        return x


class WaveNet(nn.Module):
    """`n_blocks` WaveBlocks widening 1 -> C channels; the last one downsamples time by `ds_factor`."""

    def __init__(self, cfg: WaveNetConfig):
        super().__init__()
        n, c = cfg.n_blocks, cfg.out_channels
        ins = np.linspace(1, c, n).astype(int).tolist()
        outs = ins[1:] + [c]
        levels = np.linspace(15, 1, n).astype(int).tolist()
        self.wave_blocks = nn.Sequential(*(
            WaveBlock(ins[i], outs[i], levels[i], cfg.ds_factor if i == n - 1 else 0) for i in range(n)
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 1, T) -> (N, C, T / ds_factor)."""
        return self.wave_blocks(x)


class WaveNetBackbone(nn.Module):
    """Per-chain WaveNets -> a (B, 1, T / ds, 24 * C) image -> timm backbone."""

    def __init__(self, backbone: str, cfg: WaveNetConfig):
        super().__init__()
        self.backbone_1ds = nn.ModuleList(WaveNet(cfg) for _ in range(N_CHAINS))
        self.backbone_2d, self.num_features = create_backbone(backbone)
        if not is_hgnetv2(backbone):
            self.backbone_2d.conv_stem.stride = (1, 2)

    def chains(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 24, T) -> per chain, each signal through that chain's WaveNet: 3 x (B, 8, T', C)."""
        b, _, t = x.shape
        ys = []
        for i, wavenet in enumerate(self.backbone_1ds):
            chain = x[:, i * CHAIN_SIZE:(i + 1) * CHAIN_SIZE].reshape(b * CHAIN_SIZE, 1, t)
            y = wavenet(chain)  # (B*8, C, T')
            ys.append(y.reshape(b, CHAIN_SIZE, y.shape[1], y.shape[2]).permute(0, 1, 3, 2))
        return ys

    @staticmethod
    def assemble(ys: list[torch.Tensor]) -> torch.Tensor:
        """3 x (B, 8, T', C) chain outputs -> the (B, 1, T', 24 * C) image: all C-2 leading features of the 24
        signals, then their last 2."""
        b = ys[0].shape[0]
        a = torch.cat([y[..., :-2] for y in ys], dim=1).permute(0, 2, 1, 3)  # (B, T', 24, C-2)
        d = torch.cat([y[..., -2:] for y in ys], dim=1).permute(0, 2, 1, 3)  # (B, T', 24, 2)
        image = torch.cat([a.reshape(b, a.shape[1], -1), d.reshape(b, d.shape[1], -1)], dim=2)
        return image.unsqueeze(1)

    def image(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 24, T) -> (B, 1, T / ds, 24 * C)."""
        return self.assemble(self.chains(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 24, T) -> (B, F)."""
        return self.backbone_2d(self.image(x))
