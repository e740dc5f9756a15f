"""Atomic output: a file is either absent, its old self, or complete; never half-written."""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import HMSInputError


def _beside(path: Path, suffix: str) -> Path:
    """A fresh hidden name beside `path`: process id and a random tag, so that concurrent writers never collide."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.{suffix}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside `path` for the caller to create; on success rename it over `path`,
    on error delete it. The caller creates the file, so it gets the usual permissions (umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _beside(path, "tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def check_writable(path: str | Path) -> None:
    """Fail now, not after the run, where `path` cannot be written: it is a folder, its parent is a file or cannot
    be created, or the folder refuses a new file (tried by creating and removing a probe file)."""
    path = Path(path)
    if path.is_dir():
        raise HMSInputError(f"{path}: is a folder; give the file to write")
    probe = _beside(path, "probe")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise HMSInputError(f"{path}: cannot write the output there ({e.strerror or e})") from None
