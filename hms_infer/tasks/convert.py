"""`convert`: checkpoints to `.safetensors`, so that a Kaggle dataset holds no pickle.

With `half=True` floating tensors are stored as fp16 (half the size); `checkpoint.load_weights` casts them back
to fp32 when a model loads them.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import save_file

from ..checkpoint import read_state_dict
from ..errors import HMSInputError
from ..files import atomic_path, check_writable

log = logging.getLogger(__name__)


def safetensors_path(path: str | Path, out_dir: str | Path | None = None) -> Path:
    """`<stem>.safetensors` beside `path`, or in `out_dir`."""
    return Path(out_dir or Path(path).parent) / f"{Path(path).stem}.safetensors"


def convert_checkpoint(path: str | Path, *, out_dir: str | Path | None = None, half: bool = False) -> Path:
    """Write the tensors of `path` to its `safetensors_path` atomically; return that path."""
    path = Path(path)
    tensors = {}
    for key, value in read_state_dict(path).items():
        if half and value.is_floating_point():
            halved = value.half()
            if not torch.isfinite(halved).eq(torch.isfinite(value)).all():
                raise HMSInputError(f"{path}: {key} has values beyond the fp16 range; convert without --half")
            value = halved
        tensors[key] = value.contiguous().clone()  # safetensors refuses tensors that share storage
    out = safetensors_path(path, out_dir)
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "source": path.name})
    log.info(f"hms_infer convert: {path} ({path.stat().st_size / 2**20:.1f} MiB) -> {out} "
             f"({out.stat().st_size / 2**20:.1f} MiB, {'fp16' if half else 'dtypes kept'})")
    return out


def convert_checkpoints(paths: Sequence[str | Path], *, out_dir: str | Path | None = None, half: bool = False
                        ) -> list[Path]:
    """`convert_checkpoint` each of `paths`; refuses, before writing anything, two that would write one file."""
    seen: dict[Path, Path] = {}
    for path in map(Path, paths):
        out = safetensors_path(path, out_dir).resolve()
        if seen.setdefault(out, path) != path:
            raise HMSInputError(f"{seen[out]} and {path} would both be written to {out}; convert them without "
                                f"--out-dir, or one at a time")
    for out in seen:
        check_writable(out)
    return [convert_checkpoint(path, out_dir=out_dir, half=half) for path in paths]
