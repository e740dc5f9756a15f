"""DataLoader plumbing: reading and preprocessing run in worker processes, batches go to the model."""
from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .data import Competition
from .errors import HMSInputError
from .preprocess import eeg_electrodes, spectrogram_image

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # row indices (B,), electrodes (B, 19, T), spect (B, 10, 300, 100)
MAX_AUTO_WORKERS = 8


class ModelInputs(Dataset):
    """Item k -> (row, filtered electrodes (19, 10000), spectrogram image (10, 300, 100)) of `rows[k]`.

    The brain-flip views are cheap differences of the electrodes, so they are formed on the model's device.
    """

    def __init__(self, competition: Competition, rows: Sequence[int] | None = None):
        self.competition = competition
        self.rows = list(range(len(competition))) if rows is None else list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> tuple[int, np.ndarray, np.ndarray] | HMSInputError:
        i = self.rows[k]
        try:
            _, eeg, spect = self.competition[i]
        except HMSInputError as e:  # returned, not raised: the main process re-raises it without a worker traceback
            return e
        return i, eeg_electrodes(eeg), spectrogram_image(spect)


def _collate(items: list) -> Batch | HMSInputError:
    for item in items:
        if isinstance(item, HMSInputError):
            return item
    index, eeg, spect = zip(*items)
    return torch.tensor(index), torch.from_numpy(np.stack(eeg)), torch.from_numpy(np.stack(spect))


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


def batches(competition: Competition, batch_size: int, num_workers: int | str, pin_memory: bool = False,
            rows: Sequence[int] | None = None) -> Iterator[Batch]:
    """Iterate `Batch`es of `rows` (default: all) in order; a bad file raises its `HMSInputError` here.

    Each worker keeps two batches in flight, so the model never waits while the workers keep up.
    """
    workers = resolve_workers(num_workers)
    loader = DataLoader(ModelInputs(competition, rows), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_collate, pin_memory=pin_memory, persistent_workers=False,
                        prefetch_factor=2 if workers else None)
    for batch in loader:
        if isinstance(batch, HMSInputError):
            raise batch
        yield batch
