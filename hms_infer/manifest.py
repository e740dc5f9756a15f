"""`weights_manifest.yaml`: which checkpoints form the ensemble, their architectures, weights and TTA."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .constants import BLENDS, CLASSES, MANIFEST_NAME
from .errors import HMSInputError
from .files import write_text_atomic
from .montage import VIEWS, parse_views

Fallback = str | dict[str, float]  # "mean", or class -> probability
_MEMBER_FIELDS = ("name", "checkpoint", "sha256", "weight", "fold", "arch")
_OPTIONAL_FIELDS = ("temperature",)  # written only when not the default


@dataclass
class Member:
    name: str
    checkpoint: str  # relative to the weights dir, or absolute
    arch: str | dict[str, Any]  # a preset name or an ArchConfig mapping
    weight: float = 1.0
    sha256: str | None = None
    fold: int | None = None  # the validation fold this checkpoint was trained without
    temperature: float = 1.0  # the ensemble divides this member's logits by it before the blend

    def checkpoint_path(self, weights_dir: str | Path) -> Path:
        return Path(weights_dir) / self.checkpoint


@dataclass
class Manifest:
    members: list[Member]
    views: tuple[str, ...] = VIEWS  # the TTA views (the file's `tta`)
    blend: str = "prob"
    version: int = 1
    fallback: Fallback = "mean"  # the distribution of rows without usable input (`fallback.py`)
    source: str | None = field(default=None, compare=False)  # the file it was read from (None: built in code)

    @property
    def weights(self) -> list[float]:
        """Member weights normalised to sum to 1."""
        total = sum(m.weight for m in self.members)
        return [m.weight / total for m in self.members]

    def to_dict(self) -> dict[str, Any]:
        d = {"version": self.version, "tta": list(self.views), "blend": self.blend,
             "members": [{**{k: getattr(m, k) for k in _MEMBER_FIELDS},
                          **({"temperature": m.temperature} if m.temperature != 1.0 else {})} for m in self.members]}
        if self.fallback != "mean":
            d["fallback"] = dict(self.fallback)
        return d


def parse_fallback(value: Any, source: str) -> Fallback:
    """`mean` (the default), or a mapping class (`seizure` or `seizure_vote`) -> probability, summing to 1;
    classes it leaves out get 0. Returns `mean` or a mapping over all of `CLASSES`."""
    if value is None or value == "mean":
        return "mean"
    if not isinstance(value, dict) or not value:
        raise HMSInputError(f"{source}: fallback must be 'mean' or a mapping class -> probability, got {value!r}")
    names = {**{c: c for c in CLASSES}, **{f"{c}_vote": c for c in CLASSES}}
    probs: dict[str, float] = {}
    for key, p in value.items():
        if key not in names:
            raise HMSInputError(f"{source}: fallback class {key!r} is not one of {list(CLASSES)}")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise HMSInputError(f"{source}: fallback probability of {key} must be a number in [0, 1], got {p!r}")
        probs[names[key]] = float(p)
    if abs(sum(probs.values()) - 1) > 1e-6:
        raise HMSInputError(f"{source}: fallback probabilities must sum to 1, got {sum(probs.values())}")
    return {c: probs.get(c, 0.0) for c in CLASSES}


def _positive(m: dict, key: str, where: str) -> float:
    """Member field `key` (default 1): a positive finite number."""
    value = m.get(key, 1.0)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
        raise HMSInputError(f"{where}: {key} must be a positive finite number, got {value!r}")
    return float(value)


def manifest_from_dict(d: Any, source: str = "manifest") -> Manifest:
    """Validate a parsed manifest; every error names `source` and the member at fault."""
    from .models import resolve_arch  # torch and timm: here, not at import (the command line's --help needs neither)
    from .models.backbone import backbone_exists
    if not isinstance(d, dict):
        raise HMSInputError(f"{source}: expected a mapping with 'members', got {type(d).__name__}")
    if d.get("version", 1) != 1:
        raise HMSInputError(f"{source}: unsupported version {d.get('version')!r} (this hms_infer reads version 1)")
    blend = d.get("blend", "prob")
    if blend not in BLENDS:
        raise HMSInputError(f"{source}: blend must be one of {BLENDS}, got {blend!r}")
    raw = d.get("members")
    if not isinstance(raw, list) or not raw:
        raise HMSInputError(f"{source}: 'members' must be a non-empty list")
    members = []
    for i, m in enumerate(raw):
        where = f"{source}: member {i} ({m.get('name', '?') if isinstance(m, dict) else repr(m)})"
        if not isinstance(m, dict):
            raise HMSInputError(f"{where}: expected a mapping")
        unknown = set(m) - set(_MEMBER_FIELDS) - set(_OPTIONAL_FIELDS)
        if unknown:
            raise HMSInputError(f"{where}: unknown field(s) {sorted(unknown)}; expected "
                                f"{list(_MEMBER_FIELDS + _OPTIONAL_FIELDS)}")
        for key in ("checkpoint", "arch"):
            if not m.get(key):
                raise HMSInputError(f"{where}: missing {key!r}")
        try:
            arch = resolve_arch(m["arch"])
        except ValueError as e:
            raise HMSInputError(f"{where}: {e}") from None
        for name in (arch.backbone, arch.backbone_comp):
            if not backbone_exists(name):
                raise HMSInputError(f"{where}: timm has no model {name!r} (check the arch's backbone names)")
        weight = _positive(m, "weight", where)
        temperature = _positive(m, "temperature", where)
        fold = m.get("fold")
        if fold is not None and (not isinstance(fold, int) or isinstance(fold, bool)):
            raise HMSInputError(f"{where}: fold must be an integer or null, got {fold!r}")
        members.append(Member(name=str(m.get("name") or f"member{i}"), checkpoint=str(m["checkpoint"]),
                              arch=m["arch"], weight=weight, sha256=m.get("sha256") or None, fold=fold,
                              temperature=temperature))
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise HMSInputError(f"{source}: member names must be unique, got {names}")
    unknown = set(d) - {"version", "tta", "blend", "members", "fallback"}
    if unknown:
        raise HMSInputError(f"{source}: unknown field(s) {sorted(unknown)}")
    return Manifest(members, parse_views(d.get("tta", list(VIEWS)), source), blend,
                    fallback=parse_fallback(d.get("fallback"), source))


def read_manifest_yaml(path: str | Path) -> Any:
    """The manifest file's YAML as parsed, not yet validated (`manifest_from_dict`); clear errors if unreadable."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise HMSInputError(f"{path}: manifest not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise HMSInputError(f"{path}: not valid YAML ({where}{getattr(e, 'problem', None) or e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise HMSInputError(f"{path}: unreadable manifest ({e})") from None


def load_manifest(path: str | Path) -> Manifest:
    manifest = manifest_from_dict(read_manifest_yaml(path), str(Path(path)))
    manifest.source = str(Path(path))
    return manifest


def save_manifest(manifest: Manifest, path: str | Path, header: str = "") -> None:
    write_text_atomic(path, header + yaml.safe_dump(manifest.to_dict(), sort_keys=False))


def resolve_manifest(manifest: Manifest | str | Path, weights_dir: str | Path | None = None
                     ) -> tuple[Manifest, Path, str]:
    """A manifest or its file -> (the manifest, the folder its checkpoint paths are relative to: `weights_dir`,
    else the file's folder, else the current folder; its name for messages)."""
    if isinstance(manifest, Manifest):
        return manifest, Path(weights_dir or "."), manifest.source or "the manifest"
    return load_manifest(manifest), Path(weights_dir or Path(manifest).parent), str(manifest)


def default_manifest_path(weights_dir: str | Path | None) -> Path:
    """Where a command finds the manifest when none is named: WEIGHTS_DIR's, else ./weights_manifest.yaml."""
    if weights_dir is not None and (Path(weights_dir) / MANIFEST_NAME).is_file():
        return Path(weights_dir) / MANIFEST_NAME
    return Path(MANIFEST_NAME)
