"""Reading checkpoints safely, verifying them, and loading them strictly (their preset: `models.detect_preset`).

A checkpoint is what the training code saved with `torch.save(model.state_dict(), ...)`: `.pt` read with
`weights_only=True` (a plain state dict, or one under `state_dict`/`model`, Lightning's `model.` prefix
stripped), or `.safetensors`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from .errors import HMSInputError

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
    except Exception as e:  # noqa: BLE001  whatever a damaged or foreign file makes the readers raise
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HMSInputError(f"{path}: not a readable weights-only checkpoint ({type(e).__name__}: {first})") from None
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
