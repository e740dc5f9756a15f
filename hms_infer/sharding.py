"""One run split over processes or machines: `--shard i/n`, or torchrun (RANK / WORLD_SIZE / LOCAL_RANK), and the
parts they write.

A shard predicts whole batches of the single-process run (batch k goes to shard k mod n), so every row is
computed in the same batch as in one process and the merged output is byte-identical to it. Each shard writes
its part atomically into a parts folder (`Parts`), tagged with a fingerprint of the run; under torchrun rank 0
merges after a barrier, with `--shard` the shard that completes the set merges (a part of another run, whose
fingerprint differs, counts as missing). Pseudo-labels keeps resumable parts of its own in the same `Parts`.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import HMSInputError
from .files import atomic_path
from .manifest import Member
from .runtime import distributed_world

BARRIER_TIMEOUT = timedelta(hours=12)  # ranks finish at different times; torchrun stops all when one fails
Notes = dict[int, list[tuple]]  # row -> JSON-able problems (tuples), as `fallback.Problem`s


def fingerprint(*parts: object) -> str:
    """A digest of what defines a run (tables, manifest, options): parts of different runs never merge."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.to_csv().encode() if isinstance(p, pd.DataFrame) else json.dumps(p, default=str).encode())
    return h.hexdigest()[:16]


class Parts:
    """A folder of one run's parts: each `<name>.npz` holds the run's fingerprint `key`, named arrays and notes
    ({row: problems}), written atomically; a part of another run, or a damaged one, reads as missing."""

    def __init__(self, folder: str | Path, key: str):
        self.folder, self.key = Path(folder), key

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.npz"

    def write(self, name: str, notes: Mapping[int, Any] | None = None, **arrays: np.ndarray) -> None:
        with atomic_path(self.path(name)) as tmp, open(tmp, "wb") as f:
            np.savez(f, key=np.array(self.key), notes=np.array(json.dumps(sorted((notes or {}).items()))), **arrays)

    def read(self, name: str) -> tuple[dict[str, np.ndarray], Notes] | None:
        """The part's arrays and notes, or None (not on disk, of another run, or damaged)."""
        path = self.path(name)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != self.key:
                    return None
                notes = {int(row): [tuple(n) for n in note] for row, note in json.loads(str(z["notes"]))}
                return {k: z[k] for k in z.files if k not in ("key", "notes")}, notes
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def member_key(m: Member, weights_dir: Path) -> list:
    """What identifies a member's predictions in a fingerprint: its sha256 (verified at loading), else its file's
    size and time."""
    path = m.checkpoint_path(weights_dir)
    stat = path.stat() if m.sha256 is None and path.is_file() else None
    return [m.name, str(path), m.sha256, m.weight, m.temperature, m.arch,
            stat and (stat.st_size, stat.st_mtime_ns)]


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1
    distributed: bool = False  # under torchrun: a gloo process group synchronises the ranks

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def resolve(cls, spec: str | None = None) -> "Shard":
        """`i/n`; else torchrun's rank and world size (joining its process group); else the whole run."""
        world = distributed_world()
        if spec:
            try:
                i, n = (int(x) for x in spec.split("/"))
            except ValueError:
                i, n = -1, 0
            if not 0 <= i < n:
                raise HMSInputError(f"--shard must be i/n with 0 <= i < n, got {spec!r}")
            if world is not None:
                raise HMSInputError("--shard and torchrun (WORLD_SIZE > 1) exclude each other")
            return cls(i, n)
        if world is None:
            return cls()
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
        return cls(world[0], world[1], True)

    @property
    def merges(self) -> bool:
        """Whether this process may merge the parts: any shard with `--shard`, rank 0 under torchrun."""
        return not self.distributed or self.index == 0

    def rows(self, n_rows: int, batch_size: int, first_batch: int = 0) -> list[int]:
        """This shard's rows of `n_rows`: the batches k with (first_batch + k) mod count == index."""
        return [r for k in range(math.ceil(n_rows / batch_size)) if (first_batch + k) % self.count == self.index
                for r in range(k * batch_size, min((k + 1) * batch_size, n_rows))]

    def barrier(self) -> None:
        """Under torchrun: wait until every rank is here, then leave the process group."""
        if self.distributed:
            import torch.distributed as dist
            dist.barrier()
            dist.destroy_process_group()

    def gather(self, parts: Parts, rows: Sequence[int], values: np.ndarray, n_rows: int,
               notes: Mapping[int, Any] | None = None) -> tuple[np.ndarray, Notes] | None:
        """This shard's `values` (len(rows), ...) and `notes` ({row: JSON-able}) -> all shards' (n_rows, ...) values
        and notes on the merging process, else None."""
        values = np.asarray(values)
        if self.count == 1:
            out = np.zeros((n_rows, *values.shape[1:]), dtype=values.dtype)
            out[list(rows)] = values
            return out, dict(notes or {})
        parts.write(f"part-{self.index:04d}-of-{self.count:04d}", notes, rows=np.asarray(rows, dtype=np.int64),
                    values=values)
        self.barrier()
        if not self.merges:
            return None
        merged = self._merge(parts, n_rows, values)
        if merged is not None and self.distributed:
            parts.remove()
        return merged

    def _merge(self, parts: Parts, n_rows: int, like: np.ndarray) -> tuple[np.ndarray, Notes] | None:
        out = np.zeros((n_rows, *like.shape[1:]), dtype=like.dtype)
        notes: Notes = {}
        seen = np.zeros(n_rows, dtype=bool)
        for i in range(self.count):
            found = parts.read(f"part-{i:04d}-of-{self.count:04d}")
            if found is None:
                return None
            arrays, part_notes = found
            out[arrays["rows"]] = arrays["values"]
            seen[arrays["rows"]] = True
            notes.update(part_notes)
        if not seen.all():
            raise HMSInputError(f"{parts.folder}: the {self.count} parts miss row {int(np.flatnonzero(~seen)[0])}")
        return out, notes
