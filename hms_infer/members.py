"""Ensemble members from a manifest: each checkpoint verified and loaded strictly into its architecture, placed on
its device. The one way members are built: `Ensemble.from_manifest`, `bench` and `pseudo-labels` use it (bench
draws random weights where a checkpoint is missing)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .checkpoint import load_weights, read_state_dict, sha256
from .constants import SEED_PLACEHOLDER
from .errors import HMSInputError
from .manifest import Manifest, Member
from .models import ArchConfig, HMSModel, create_model, resolve_arch
from .runtime import place_members

HEAD_SCALE = 20.0  # random `head_all` logits ~0.1 -> ~2, spread like a trained model's
HEAD_SPREAD = 2.0  # `random_model`'s logits on its inputs: standard deviation across rows and classes


@dataclass
class LoadedMember:
    name: str
    model: HMSModel
    weight: float
    device: torch.device
    temperature: float = 1.0  # logits are divided by it before the blend

    @property
    def arch(self) -> ArchConfig:
        return self.model.cfg


def build_model(member: Member) -> HMSModel:
    """A randomly initialised model of the member's arch; an arch timm or nnAudio refuses is an error naming it."""
    try:
        return create_model(member.arch)
    except (ValueError, TypeError, AssertionError, RuntimeError) as e:
        raise HMSInputError(f"member {member.name}: cannot build its arch {member.arch!r}: {e}") from None


def read_checkpoint(member: Member, weights_dir: Path) -> dict[str, torch.Tensor]:
    """The member's state dict, its sha256 verified when the manifest gives one; any failure is an error naming the
    file (and saying so when the manifest's path leaves the weights folder)."""
    path = member.checkpoint_path(weights_dir)
    outside = not path.resolve().is_relative_to(weights_dir.resolve())
    try:
        digest = sha256(path) if member.sha256 and path.is_file() else member.sha256
        if digest != member.sha256:
            raise HMSInputError(f"{path}: sha256 {digest} does not match the manifest's {member.sha256} "
                                f"(member {member.name})")
        return read_state_dict(path)
    except HMSInputError as e:
        if outside:
            raise HMSInputError(f"{e} (member {member.name}'s checkpoint path leaves the weights folder "
                                f"{weights_dir})") from None
        raise


def missing_checkpoints(manifest: Manifest, weights_dir: Path) -> str:
    """'' when every member's checkpoint file exists, else one line: the first missing file, how many are missing,
    the manifest, the folder its paths resolved against (and why that one), and, where the name holds the repository
    manifest's placeholder `SEED`, how to replace it."""
    missing = [m for m in manifest.members if not m.checkpoint_path(weights_dir).is_file()]
    if not missing:
        return ""
    first, folder = missing[0], weights_dir.resolve()
    path, source = first.checkpoint_path(weights_dir), manifest.source or "the manifest"
    if manifest.source is None:
        origin = "the weights_dir given, else the current folder"
    elif Path(manifest.source).resolve().parent == folder:
        origin = "the manifest's folder, unless --weights-dir names another"
    else:
        origin = "--weights-dir"
    text = (f"{path}: checkpoint not found: member {first.name} of {source}, {len(missing)} of its "
            f"{len(manifest.members)} checkpoints missing in {folder} ({origin}"
            f"{'' if folder.is_dir() else ', a folder that does not exist'})")
    if not path.resolve().is_relative_to(folder):
        text += f" (member {first.name}'s checkpoint path leaves the weights folder {weights_dir})"
    if SEED_PLACEHOLDER in first.checkpoint:
        text += (f"; {SEED_PLACEHOLDER} in its name is a placeholder: replace it in {source} with the seed of your "
                 f"training run (the training code saves <backbone>_<fold>_<seed>.pt), or write the manifest from "
                 f"your checkpoints: python -m hms_infer manifest CKPT... -o {source}")
    return text


def random_model(arch: str | dict | ArchConfig, seed: int,
                 inputs: tuple[torch.Tensor, torch.Tensor] | None = None) -> HMSModel:
    """A random-initialised model (`torch.manual_seed(seed)`) whose logits spread like a trained model's (random
    weights give ~1/6 everywhere): `head_all` scaled by `HEAD_SCALE` (bench's members), or, given `inputs` (eeg
    (B, 24, 10000), spect (B, 10, 300, 100), B >= 2), redrawn to answer them with a spread of `HEAD_SPREAD` (the
    demo's members: `HMSModel.spread_head`)."""
    torch.manual_seed(seed)
    model = create_model(arch)
    return model.scale_head(HEAD_SCALE) if inputs is None else model.spread_head(*inputs, HEAD_SPREAD, seed=seed)


def load_members(manifest: Manifest, weights_dir: Path, devices: Sequence[torch.device],
                 random_missing: bool = False) -> list[LoadedMember]:
    """Every member of `manifest`, its checkpoint loaded strictly (relative to `weights_dir`), on its device
    (FLOP-balanced over several). `random_missing`: a member without its checkpoint file gets random weights with
    spread logits (seeded by its position) instead of an error (without it, missing files are an error before any
    model is built: `missing_checkpoints`)."""
    problem = "" if random_missing else missing_checkpoints(manifest, weights_dir)
    if problem:
        raise HMSInputError(problem)
    placed = place_members([resolve_arch(m.arch) for m in manifest.members], devices)
    members = []
    for i, (m, device) in enumerate(zip(manifest.members, placed)):
        if random_missing and not m.checkpoint_path(weights_dir).is_file():
            model = random_model(m.arch, seed=i)
        else:
            label = m.arch if isinstance(m.arch, str) else f"{m.name} (custom arch)"
            model = load_weights(build_model(m), read_checkpoint(m, weights_dir), str(m.checkpoint_path(weights_dir)),
                                 label)
        members.append(LoadedMember(m.name, model.to(device).eval(), m.weight, device, m.temperature))
    return members


def copy_members(members: Sequence[LoadedMember]) -> list[LoadedMember]:
    """The same members with models of their own (same weights, nothing prepared): bench's reference path."""
    out = []
    for m in members:
        model = create_model(m.arch)
        model.load_state_dict(m.model.state_dict(), strict=True)  # the fast path keeps every key
        out.append(LoadedMember(m.name, model.to(m.device).eval(), m.weight, m.device, m.temperature))
    return out
