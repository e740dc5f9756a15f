"""The multimodal HMS model (one ensemble member), with the training code's state-dict names (SPEC §3), and what
its checkpoints' keys tell: the preset a state dict was trained as (`detect_preset`), or what it looks like."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

import torch
from torch import nn

from ..constants import CLASSES, EEG_WINDOW, SPECT_CHANNELS, SPECT_FRAMES, SPECT_FREQS
from ..errors import HMSInputError
from ..montage import BIPOLAR_PAIRS
from .config import PRESETS, ArchConfig, resolve_arch
from .spect import SpectBackbone
from .stft import StftBackbone, StftLayer
from .wavenet import WaveNetBackbone

WINDOW_MASK_KEY = "eeg_backbone.stft_layer.spec_layer.window_mask"  # the STFT window: cosine or hann
BRANCHES = ("spectrogram", "stft", "wavenet_1d", "wavenet_2d")  # `HMSModel.branches`


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

    def branches(self) -> dict[str, list[nn.Module]]:
        """The modules of each branch: `spectrogram`, `stft` (the STFT layer, then its 2-D backbone), `wavenet_1d`
        (the three chains' WaveNets) and `wavenet_2d` (the WaveNet image's 2-D backbone)."""
        return dict(zip(BRANCHES, ([self.spect_backbone], [self.eeg_backbone.stft_layer, self.eeg_backbone.backbone],
                                   list(self.eeg_backbone_1d.backbone_1ds), [self.eeg_backbone_1d.backbone_2d])))

    def backbones(self) -> list[nn.Module]:
        """The three timm 2-D backbones: spectrogram, STFT image, WaveNet image."""
        return [self.spect_backbone.backbone, self.eeg_backbone.backbone, self.eeg_backbone_1d.backbone_2d]

    def stft_image(self, eeg: torch.Tensor) -> torch.Tensor:
        """eeg (B, 24, T) -> (B, 1, H, W): the trainable-STFT image its 2-D backbone sees."""
        return self.eeg_backbone.image(self.eeg_backbone.spectra(eeg))

    @torch.no_grad()
    def scale_head(self, scale: float) -> "HMSModel":
        """Multiply `head_all`'s weights and bias by `scale` (random members whose logits spread like trained ones')."""
        self.head_all.weight.mul_(scale)
        self.head_all.bias.mul_(scale)
        return self

    @torch.no_grad()
    def spread_head(self, eeg: torch.Tensor, spect: torch.Tensor, spread: float, seed: int = 0,
                    head: str = "head_all") -> "HMSModel":
        """Redraw `head` (`head_all`, or an auxiliary head: `head_spect`, `head_eeg`, `head_1d`) so that its logits
        on these B >= 2 inputs (eeg (B, 24, 10000), spect (B, 10, 300, 100)) vary across rows and classes with a
        standard deviation of about `spread`.

        A random backbone's features hardly depend on its input (across rows they vary by 2-5% of their size), so
        a scaled head gives every row the same probabilities. The new head is a random projection of the features
        centred on these rows and divided by their root-mean-square spread, plus a random class offset: a random
        member that answers its input, as a trained one does.
        """
        if len(eeg) < 2:
            raise ValueError(f"spread_head needs two rows at least: {len(eeg)} rows")
        layer = getattr(self, head)
        features = []
        hook = layer.register_forward_hook(lambda _module, args, _out: features.append(args[0]))
        try:
            self(eeg, spect)
        finally:
            hook.remove()
        f = features[0].double()  # (B, F)
        size = f.std(dim=0).square().mean().sqrt()
        if size == 0:
            raise ValueError(f"spread_head needs inputs whose features differ: {len(f)} rows give the same")
        g = torch.Generator().manual_seed(seed)
        weight = torch.randn(layer.out_features, f.shape[1], generator=g, dtype=torch.float64)
        weight *= spread / (size * f.shape[1] ** 0.5)
        bias = spread * torch.randn(layer.out_features, generator=g, dtype=torch.float64) - weight @ f.mean(0)
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
        return self

    @staticmethod
    def example_inputs(batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero inputs of the model's shapes, on the current default device: eeg (batch, 24, 10000), spect
        (batch, 10, 300, 100)."""
        return (torch.zeros(batch, len(BIPOLAR_PAIRS), EEG_WINDOW),
                torch.zeros(batch, SPECT_CHANNELS, SPECT_FRAMES, SPECT_FREQS))


def create_model(arch: str | Mapping[str, Any] | ArchConfig) -> HMSModel:
    """Build a randomly initialised model in eval mode from a preset name or an arch mapping."""
    return HMSModel(resolve_arch(arch)).eval()


@lru_cache(maxsize=None)
def _preset_shapes(name: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = create_model(name)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@lru_cache(maxsize=None)
def _window_mask(name: str) -> torch.Tensor:
    return StftLayer(resolve_arch(name).stft).spec_layer.window_mask


def detect_preset(sd: Mapping[str, torch.Tensor], source: str = "checkpoint") -> str:
    """The preset (`cfg_N`) whose keys, shapes and STFT window match the state dict `sd`; an error that describes
    it otherwise. The window is compared to 1e-3, so fp16 checkpoints (`convert --half`) are recognised too."""
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    for name in PRESETS:
        if shapes == _preset_shapes(name) and torch.allclose(sd[WINDOW_MASK_KEY].float(), _window_mask(name),
                                                             atol=1e-3):
            return name
    raise HMSInputError(f"{source}: unknown layout, matches none of {list(PRESETS)}: {describe_state_dict(sd)}")


def describe_state_dict(sd: Mapping[str, torch.Tensor]) -> str:
    """What a state dict looks like, in the terms of the presets table."""
    found = [f"{len(sd)} tensors"]
    if "spect_backbone.backbone.stem.stem1.conv.weight" in sd:
        found.append("hgnetv2 spectrogram backbone")
    elif "spect_backbone.backbone.conv_stem.weight" in sd:
        found.append("EfficientNet-style spectrogram backbone")
    if "eeg_backbone.stft_layer.spec_layer.wsin" in sd:
        found.append(f"STFT n_fft={sd['eeg_backbone.stft_layer.spec_layer.wsin'].shape[-1]}")
    blocks = {k.split(".")[4] for k in sd if k.startswith("eeg_backbone_1d.backbone_1ds.0.wave_blocks.")}
    if blocks:
        last = f"eeg_backbone_1d.backbone_1ds.0.wave_blocks.{len(blocks) - 1}.conv1x1.weight"
        channels = sd[last].shape[0] if last in sd else "?"
        found.append(f"WaveNet blocks={len(blocks)} C={channels}")
    if not any(k.startswith("head_all.") for k in sd):
        found.append("no head_all (not an HMS multimodal checkpoint?)")
    return ", ".join(found)
