"""The multimodal HMS model (one ensemble member), with the training code's state-dict names (SPEC §3)."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..constants import CLASSES
from .config import ArchConfig, resolve_arch
from .spect import SpectBackbone
from .stft import StftBackbone
from .wavenet import WaveNetBackbone


class HMSModel(nn.Module):
    """Spectrogram MIL + STFT image + WaveNet image -> 6 logits in `CLASSES` order.

    Inputs: eeg (B, 24, 10000) bipolar signals, spect (B, 10, 300, 100) spectrogram image.
    """

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.cfg = cfg
        n = len(CLASSES)
        self.spect_backbone = SpectBackbone(cfg.backbone_comp)
        self.eeg_backbone = StftBackbone(cfg.backbone, cfg.stft)
        self.eeg_backbone_1d = WaveNetBackbone(cfg.backbone, cfg.wavenet)
        f_spect, f_stft, f_wave = (self.spect_backbone.num_features, self.eeg_backbone.num_features,
                                   self.eeg_backbone_1d.num_features)
        self.head_spect = nn.Linear(f_spect, n)
        self.head_eeg = nn.Linear(f_stft, n)
        self.head_1d = nn.Linear(f_wave, n)
        self.head_all = nn.Linear(f_stft + f_spect + f_wave, n)

    def forward(self, eeg: torch.Tensor, spect: torch.Tensor) -> dict[str, torch.Tensor]:
        """All four heads' logits, each (B, 6): `all` (the prediction), `spect`, `eeg_stft`, `eeg_wavenet`."""
        f_spect = self.spect_backbone(spect)
        f_stft, f_wave = self.eeg_backbone(eeg), self.eeg_backbone_1d(eeg)
        return {
            "all": self.head_all(torch.cat([f_stft, f_spect, f_wave], dim=1)),
            "spect": self.head_spect(f_spect),
            "eeg_stft": self.head_eeg(f_stft),
            "eeg_wavenet": self.head_1d(f_wave),
        }


def create_model(arch: str | Mapping[str, Any] | ArchConfig) -> HMSModel:
    """Build a randomly initialised model in eval mode from a preset name or an arch mapping."""
    return HMSModel(resolve_arch(arch)).eval()
