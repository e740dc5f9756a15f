"""Trainable-STFT image branch (SPEC §3 `eeg_backbone`)."""
from __future__ import annotations

import torch
from nnAudio.features import STFT
from torch import nn

from ..constants import EEG_FS
from .backbone import create_backbone
from .config import StftConfig


class StftLayer(nn.Module):
    """nnAudio STFT magnitude -> log power scaled to about [-1, 1]."""

    def __init__(self, cfg: StftConfig):
        super().__init__()
        self.spec_layer = STFT(
            sr=EEG_FS, fmin=0, fmax=cfg.fmax, n_fft=cfg.n_fft, win_length=cfg.win_length,
            hop_length=cfg.hop_length, window=cfg.window, freq_scale=cfg.freq_scale, center=False,
            output_format="Magnitude", trainable=True, verbose=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, T) -> (N, Fq, Tf)."""
        x = torch.log1p(self.spec_layer(x) ** 2)
        return (x.clamp(0, 20) - 7.5) / 7.5


class StftBackbone(nn.Module):
    """24 STFT images stacked along frequency, folded by `stack_factor`, through one timm backbone."""

    def __init__(self, backbone: str, cfg: StftConfig):
        super().__init__()
        self.backbone, self.num_features = create_backbone(backbone)
        self.stft_layer = StftLayer(cfg)
        self.stack_factor = cfg.stack_factor

    def spectra(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 24, T) -> (B, 24, Fq, Tf) scaled log power of each signal."""
        b, c, t = x.shape
        spec = self.stft_layer(x.reshape(b * c, t))  # (B*24, Fq, Tf)
        return spec.reshape(b, c, *spec.shape[-2:])

    def image(self, spec: torch.Tensor) -> torch.Tensor:
        """spec: (B, 24, Fq, Tf) -> (B, 1, 24 * Fq / s, Tf * s): stacked along frequency, folded by `stack_factor`."""
        b, c, fq, tf = spec.shape
        s = self.stack_factor
        return spec.reshape(b, 1, c * fq, tf).reshape(b, 1, c * fq // s, tf * s)

    def from_spectra(self, spec: torch.Tensor) -> torch.Tensor:
        """spec: (B, 24, Fq, Tf) -> `image` -> backbone -> (B, F)."""
        return self.backbone(self.image(spec))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 24, T) -> (B, F)."""
        return self.from_spectra(self.spectra(x))
