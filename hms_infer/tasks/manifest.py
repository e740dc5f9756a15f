"""`manifest`: a weights manifest for checkpoints, each recognised as one of the presets from its tensors."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from ..checkpoint import read_state_dict, sha256
from ..constants import BLENDS
from ..errors import HMSInputError
from ..files import check_writable
from ..manifest import Manifest, Member, save_manifest
from ..models import detect_preset
from ..montage import VIEWS, parse_views

log = logging.getLogger(__name__)
GENERATED_HEADER = """\
# hms_infer weights manifest, written by `python -m hms_infer manifest`.
# tta: views averaged per member; blend: prob (weighted mean of member probabilities) or logit (softmax of the
# weighted mean of member logits); members[].checkpoint: relative to this file's folder (or --weights-dir);
# arch: the preset recognised from the tensors; weight: normalised over members; fold: from <backbone>_<fold>_<seed>.
"""


def fold_from_name(path: Path) -> int | None:
    """The training code names checkpoints `<backbone>_<fold>_<seed>.pt`."""
    parts = path.stem.rsplit("_", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def write_manifest(*, checkpoints: Sequence[str | Path], out: str | Path, views: str | Sequence[str] = VIEWS,
                   blend: str = "prob") -> Manifest:
    """Recognise each checkpoint's preset, hash it, and write a manifest whose paths are relative to `out`."""
    if blend not in BLENDS:
        raise HMSInputError(f"blend must be one of {BLENDS}, got {blend!r}")
    views = parse_views(views, "--tta")
    check_writable(out)
    out = Path(out)
    members = []
    for path in map(Path, checkpoints):
        arch = detect_preset(read_state_dict(path), str(path))
        try:
            rel = str(path.resolve().relative_to(out.parent.resolve()))
        except ValueError:
            rel = str(path.resolve())
        members.append(Member(name=str(Path(rel).with_suffix("")), checkpoint=rel, arch=arch, sha256=sha256(path),
                              fold=fold_from_name(path)))
        log.info(f"{members[-1].name}: {arch}, fold {members[-1].fold}, sha256 {members[-1].sha256[:12]}...")
    manifest = Manifest(members, views, blend)
    save_manifest(manifest, out, GENERATED_HEADER)
    log.info(f"hms_infer manifest: {len(members)} members -> {out}")
    return manifest
