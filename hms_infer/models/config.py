"""Architecture configuration as data: the 8 published presets (SPEC §4) and custom mappings."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping


@dataclass(frozen=True)
class StftConfig:
    n_fft: int = 110
    win_length: int = 64
    hop_length: int = 23
    fmax: float = 40.0
    window: str = "cosine"
    freq_scale: str = "linear"
    stack_factor: int = 2


@dataclass(frozen=True)
class WaveNetConfig:
    n_blocks: int = 7
    out_channels: int = 24
    ds_factor: int = 5


@dataclass(frozen=True)
class ArchConfig:
    """One ensemble member's architecture: the fields of `reference/tiny_model/config.json`."""

    backbone: str
    backbone_comp: str
    stft: StftConfig = field(default_factory=StftConfig)
    wavenet: WaveNetConfig = field(default_factory=WaveNetConfig)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ArchConfig":
        """Build from a mapping; unknown keys are an error, missing sub-fields take the published defaults."""
        allowed = {"backbone", "backbone_comp", "stft", "wavenet"}
        unknown = set(d) - allowed - {"eeg_ids"}  # eeg_ids: bookkeeping of the reference config.json
        if unknown:
            raise ValueError(f"unknown arch field(s) {sorted(unknown)}; expected {sorted(allowed)}")
        for key in ("backbone", "backbone_comp"):
            if not isinstance(d.get(key), str):
                raise ValueError(f"arch needs a string {key!r}")

        def sub(kind: type, value: Mapping[str, Any] | None) -> Any:
            if value is not None and not isinstance(value, Mapping):
                raise ValueError(f"{kind.__name__} must be a mapping, got {value!r}")
            value = dict(value or {})
            names = {f.name for f in fields(kind)}
            if set(value) - names:
                raise ValueError(f"unknown {kind.__name__} field(s) {sorted(set(value) - names)}")
            for name, v in value.items():
                _check_field(kind, name, v)
            return kind(**value)

        return cls(d["backbone"], d["backbone_comp"], sub(StftConfig, d.get("stft")),
                   sub(WaveNetConfig, d.get("wavenet")))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_field(kind: type, name: str, value: Any) -> None:
    """A positive int / positive finite number / non-empty string, as the field's default is."""
    default = getattr(kind(), name)
    if isinstance(default, str):
        ok = isinstance(value, str) and bool(value)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")
    if not ok:
        what = "a non-empty string" if isinstance(default, str) else f"a positive {type(default).__name__}"
        raise ValueError(f"{kind.__name__}.{name} must be {what}, got {value!r}")


_HGNET_B4, _HGNET_B2 = "hgnetv2_b4.ssld_stage2_ft_in1k", "hgnetv2_b2.ssld_stage2_ft_in1k"
_EFFNET_S, _EFFNET_B0 = "tf_efficientnetv2_s.in21k_ft_in1k", "tf_efficientnetv2_b0.in1k"
STFT_110 = StftConfig(n_fft=110, win_length=64, hop_length=23, window="cosine")
STFT_190 = StftConfig(n_fft=190, win_length=96, hop_length=24, window="hann")
WAVENET_7 = WaveNetConfig(n_blocks=7, out_channels=24)
WAVENET_8 = WaveNetConfig(n_blocks=8, out_channels=28)

# The 8 published configurations (SPEC §4), each written out.
PRESETS: dict[str, ArchConfig] = {
    "cfg_1": ArchConfig(backbone=_HGNET_B4, backbone_comp=_HGNET_B2, stft=STFT_110, wavenet=WAVENET_7),
    "cfg_2": ArchConfig(backbone=_HGNET_B4, backbone_comp=_HGNET_B2, stft=STFT_110, wavenet=WAVENET_8),
    "cfg_3": ArchConfig(backbone=_HGNET_B4, backbone_comp=_HGNET_B2, stft=STFT_190, wavenet=WAVENET_7),
    "cfg_4": ArchConfig(backbone=_HGNET_B4, backbone_comp=_HGNET_B2, stft=STFT_190, wavenet=WAVENET_8),
    "cfg_5": ArchConfig(backbone=_EFFNET_S, backbone_comp=_EFFNET_B0, stft=STFT_110, wavenet=WAVENET_7),
    "cfg_6": ArchConfig(backbone=_EFFNET_S, backbone_comp=_EFFNET_B0, stft=STFT_110, wavenet=WAVENET_8),
    "cfg_7": ArchConfig(backbone=_EFFNET_S, backbone_comp=_EFFNET_B0, stft=STFT_190, wavenet=WAVENET_7),
    "cfg_8": ArchConfig(backbone=_EFFNET_S, backbone_comp=_EFFNET_B0, stft=STFT_190, wavenet=WAVENET_8),
}


def resolve_arch(arch: str | Mapping[str, Any] | ArchConfig) -> ArchConfig:
    """A preset name (`cfg_1`..`cfg_8`), a mapping of `ArchConfig` fields, or an `ArchConfig`."""
    if isinstance(arch, ArchConfig):
        return arch
    if isinstance(arch, str):
        if arch not in PRESETS:
            raise ValueError(f"unknown preset {arch!r}; expected one of {list(PRESETS)} or an arch mapping")
        return PRESETS[arch]
    if isinstance(arch, Mapping):
        return ArchConfig.from_dict(arch)
    raise ValueError(f"arch must be a preset name or a mapping, got {type(arch).__name__}")
