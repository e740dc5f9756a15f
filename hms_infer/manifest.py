"""`weights_manifest.yaml`: which checkpoints form the ensemble, their architectures, weights and TTA."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .constants import CLASSES, VIEWS
from .errors import HMSInputError
from .files import write_text_atomic
from .models import resolve_arch
from .models.backbone import backbone_exists

BLENDS = ("prob", "logit")
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
    tta: list[str] = field(default_factory=lambda: list(VIEWS))
    blend: str = "prob"
    version: int = 1
    fallback: Fallback = "mean"  # the distribution of rows without usable input (`fallback.py`)

    @property
    def weights(self) -> list[float]:
        """Member weights normalised to sum to 1."""
        total = sum(m.weight for m in self.members)
        return [m.weight / total for m in self.members]

    def to_dict(self) -> dict[str, Any]:
        d = {"version": self.version, "tta": list(self.tta), "blend": self.blend,
             "members": [{**{k: getattr(m, k) for k in _MEMBER_FIELDS},
                          **({"temperature": m.temperature} if m.temperature != 1.0 else {})} for m in self.members]}
        if self.fallback != "mean":
            d["fallback"] = dict(self.fallback)
        return d


def parse_tta(value: str | list[str], source: str) -> list[str]:
    views = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    bad = [v for v in views if v not in VIEWS]
    if not views or bad:
        raise HMSInputError(f"{source}: tta must be a non-empty list of {list(VIEWS)}, got {value!r}")
    return views


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
    return Manifest(members, parse_tta(d.get("tta", list(VIEWS)), source), blend,
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
    return manifest_from_dict(read_manifest_yaml(path), str(Path(path)))


def save_manifest(manifest: Manifest, path: str | Path, header: str = "") -> None:
    write_text_atomic(path, header + yaml.safe_dump(manifest.to_dict(), sort_keys=False))


GENERATED_HEADER = """\
# hms_infer weights manifest, written by `python -m hms_infer manifest`.
# tta: views averaged per member; blend: prob (weighted mean of member probabilities) or logit (softmax of the
# weighted mean of member logits); members[].checkpoint: relative to this file's folder (or --weights-dir);
# arch: the preset recognised from the tensors; weight: normalised over members; fold: from <backbone>_<fold>_<seed>.
"""


def _fold_from_name(path: Path) -> int | None:
    """The training code names checkpoints `<backbone>_<fold>_<seed>.pt`."""
    parts = path.stem.rsplit("_", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def write_manifest_for(checkpoints: list[Path], out: str | Path, tta: str | list[str] = ",".join(VIEWS),
                       blend: str = "prob") -> Manifest:
    """Recognise each checkpoint's preset, hash it, and write a manifest whose paths are relative to `out`."""
    from .checkpoint import detect_preset, read_state_dict, sha256
    out = Path(out)
    members = []
    for path in checkpoints:
        arch = detect_preset(read_state_dict(path), str(path))
        try:
            rel = str(Path(path).resolve().relative_to(out.parent.resolve()))
        except ValueError:
            rel = str(Path(path).resolve())
        members.append(Member(name=str(Path(rel).with_suffix("")), checkpoint=rel, arch=arch, sha256=sha256(path),
                              fold=_fold_from_name(Path(path))))
    if blend not in BLENDS:
        raise HMSInputError(f"blend must be one of {BLENDS}, got {blend!r}")
    manifest = Manifest(members, parse_tta(tta, "--tta"), blend)
    save_manifest(manifest, out, GENERATED_HEADER)
    return manifest
