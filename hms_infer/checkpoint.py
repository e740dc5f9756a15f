"""Reading checkpoints safely, verifying them, loading them strictly, and recognising their preset.

A checkpoint is what the training code saved with `torch.save(model.state_dict(), ...)`: `.pt` read with
`weights_only=True` (a plain state dict, or one under `state_dict`/`model`, Lightning's `model.` prefix
stripped), or `.safetensors`.
"""
from __future__ import annotations

import hashlib
import pickle
import zipfile
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from .errors import HMSInputError
from .models import PRESETS, create_model, resolve_arch
from .models.stft import StftLayer

StateDict = dict[str, torch.Tensor]
LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: str | Path) -> StateDict:
    """Tensors of a `.pt` / `.safetensors` checkpoint, on CPU, with any `model.` prefix removed."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    path = Path(path)
    if not path.is_file():
        raise HMSInputError(f"{path}: checkpoint not found")
    with open(path, "rb") as f:
        if f.read(len(LFS_POINTER)) == LFS_POINTER:
            raise HMSInputError(f"{path}: a Git LFS pointer file, not the checkpoint (run `git lfs pull`, or "
                                f"download the file itself)")
    try:
        if path.suffix == ".safetensors":
            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, zipfile.BadZipFile, EOFError, ValueError,
            SafetensorError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HMSInputError(f"{path}: not a readable weights-only checkpoint ({first})") from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise HMSInputError(f"{path}: expected a state dict of tensors, found {type(sd).__name__}")
    if all(k.startswith("model.") for k in sd):
        sd = {k[len("model."):]: v for k, v in sd.items()}
    return sd


def _describe(names: list[str], limit: int = 5) -> str:
    more = f", ... (+{len(names) - limit})" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def mismatch(model: nn.Module, sd: StateDict) -> str:
    """'' when `sd` fits `model` exactly, else a short list of missing / unexpected / mis-shaped keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shaped = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
              if k in sd and sd[k].shape != v.shape]
    parts = [f"{len(missing)} missing ({_describe(missing)})" if missing else "",
             f"{len(unexpected)} unexpected ({_describe(unexpected)})" if unexpected else "",
             f"{len(shaped)} mis-shaped ({_describe(shaped, 3)})" if shaped else ""]
    return "; ".join(p for p in parts if p)


def load_weights(model: nn.Module, sd: StateDict, source: str, arch_name: str) -> nn.Module:
    """`model.load_state_dict(sd, strict=True)`, failing with a short, readable report."""
    problem = mismatch(model, sd)
    if problem:
        raise HMSInputError(f"{source}: checkpoint does not fit arch {arch_name}: {problem}")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()}, strict=True)
    return model


@lru_cache(maxsize=None)
def _preset_shapes(name: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = create_model(name)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@lru_cache(maxsize=None)
def _window_mask(name: str) -> torch.Tensor:
    return StftLayer(resolve_arch(name).stft).spec_layer.window_mask


_MASK_KEY = "eeg_backbone.stft_layer.spec_layer.window_mask"


def detect_preset(sd: StateDict, source: str = "checkpoint") -> str:
    """The preset (`cfg_N`) whose keys, shapes and STFT window match `sd`; an error that describes it otherwise.

    The window is compared to 1e-3, so fp16 checkpoints (`convert --half`) are recognised too.
    """
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    for name in PRESETS:
        if shapes == _preset_shapes(name) and torch.allclose(sd[_MASK_KEY].float(), _window_mask(name), atol=1e-3):
            return name
    raise HMSInputError(f"{source}: unknown layout, matches none of {list(PRESETS)}: {_summary(sd)}")


def _summary(sd: StateDict) -> str:
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
