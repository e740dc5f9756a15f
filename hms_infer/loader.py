"""DataLoader plumbing: reading and preprocessing run in worker processes, batches go to the model."""
from __future__ import annotations

import logging
import os
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .constants import EEG_WINDOW, ELECTRODES, SPECT_FRAMES, SPECT_FREQS, SPECT_REGIONS
from .data import Competition
from .errors import HMSInputError, UnusableInput
from .fallback import Problem
from .preprocess import eeg_electrodes, spectrogram_image

log = logging.getLogger(__name__)
# row indices (B,), electrodes (B, 19, T), spect (B, 10, 300, 100), each row's problems
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[Problem, ...]]]
MAX_AUTO_WORKERS = 8


class ModelInputs(Dataset):
    """Item k -> (row, filtered electrodes (19, 10000), spectrogram image (10, 300, 100), problems) of `rows[k]`.

    An unusable input (`UnusableInput`) becomes an all-NaN window and a problem of the row, or, with `strict`, the
    item is the error. The brain-flip views are cheap differences of the electrodes: they are formed on the device.
    """

    def __init__(self, competition: Competition, rows: Sequence[int] | None = None, strict: bool = False):
        self.competition = competition
        self.rows = list(range(len(competition))) if rows is None else list(rows)
        self.strict = strict

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> tuple[int, np.ndarray, np.ndarray, tuple[Problem, ...]] | HMSInputError:
        i = self.rows[k]
        comp, row = self.competition, self.competition.rows[i]
        problems = []
        windows = []
        for name, read, shape in (("eeg", comp.read_eeg, (EEG_WINDOW, len(ELECTRODES))),
                                  ("spectrogram", comp.read_spectrogram, (SPECT_FRAMES, len(SPECT_REGIONS),
                                                                          SPECT_FREQS))):
            try:
                windows.append(read(row))
            except UnusableInput as e:  # returned, not raised: the main process raises it without a worker traceback
                if self.strict:
                    return e
                problems.append((name, e.path, e.reason))
                windows.append(np.full(shape, np.nan, dtype=np.float32))
            except HMSInputError as e:
                return e
        return i, eeg_electrodes(windows[0]), spectrogram_image(windows[1]), tuple(problems)


def _collate(items: list) -> Batch | HMSInputError:
    for item in items:
        if isinstance(item, HMSInputError):
            return item
    index, eeg, spect, problems = zip(*items)
    return torch.tensor(index), torch.from_numpy(np.stack(eeg)), torch.from_numpy(np.stack(spect)), list(problems)


def resolve_workers(num_workers: int | str) -> int:
    """`auto`: one worker per CPU core but one (for the main process), at most 8."""
    if num_workers == "auto":
        return max(1, min(MAX_AUTO_WORKERS, (os.cpu_count() or 2) - 1))
    try:
        n = int(num_workers)
    except (TypeError, ValueError):
        n = -1
    if n < 0:
        raise HMSInputError(f"--num-workers must be auto or a non-negative integer, got {num_workers!r}")
    return n


def worker_died(error: RuntimeError, workers: int, rest: str) -> bool:
    """Whether `error` is a DataLoader worker that died (killed for memory, say): then logged, and the caller reads
    the `rest` in the main process."""
    if not workers or "DataLoader worker" not in str(error):
        return False
    log.warning("a DataLoader worker died (%s); reading the remaining %s in the main process",
                str(error).splitlines()[0], rest)
    return True


def batch_plan(n: int, batch_size: int, cuts: Sequence[int] = ()) -> list[list[int]]:
    """Positions 0..n-1 in batches of `batch_size` in order, a batch also starting at each position of `cuts`
    (parts of a run whose batches must not span them)."""
    bounds = sorted({0, n, *(c for c in cuts if 0 < c < n)})
    return [list(range(k, min(k + batch_size, b))) for a, b in zip(bounds, bounds[1:])
            for k in range(a, b, batch_size)]


def _loader(inputs: ModelInputs, plan: Sequence[Sequence[int]], workers: int, pin_memory: bool) -> Iterator[Batch]:
    """The `Batch`es of `plan` (lists of positions in `inputs`); a fatal input error (returned by `ModelInputs`) is
    raised here."""
    loader = DataLoader(inputs, batch_sampler=plan, num_workers=workers, collate_fn=_collate, pin_memory=pin_memory,
                        persistent_workers=False, prefetch_factor=2 if workers else None)
    for batch in loader:
        if isinstance(batch, HMSInputError):
            raise batch
        yield batch


def batches(competition: Competition, batch_size: int, num_workers: int | str, pin_memory: bool = False,
            rows: Sequence[int] | None = None, strict: bool = False, cuts: Sequence[int] = ()) -> Iterator[Batch]:
    """Iterate `Batch`es of `rows` (default: all) in order, a batch starting at each position of `cuts` too; a
    fatal input error raises its `HMSInputError` here.

    Each worker keeps two batches in flight, so the model never waits while the workers keep up. A worker that
    dies (killed for memory, say) is replaced by reading the remaining rows in this process.
    """
    inputs = ModelInputs(competition, rows, strict)
    plan = batch_plan(len(inputs), batch_size, cuts)
    workers = resolve_workers(num_workers)
    done = 0
    try:
        for batch in _loader(inputs, plan, workers, pin_memory):
            done += 1
            yield batch
        return
    except RuntimeError as e:
        if not worker_died(e, workers, "rows"):
            raise
    yield from _loader(inputs, plan[done:], 0, pin_memory)
