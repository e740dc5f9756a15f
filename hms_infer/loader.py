"""DataLoader plumbing: reading and preprocessing run in worker processes, batches go to the model."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .data import Competition
from .errors import HMSInputError
from .preprocess import eeg_electrodes, spectrogram_image

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # row indices (B,), electrodes (B, 19, T), spect (B, 10, 300, 100)


class ModelInputs(Dataset):
    """Row i of a competition -> (i, filtered electrodes (19, 10000), spectrogram image (10, 300, 100)).

    The brain-flip views are cheap differences of the electrodes, so they are formed on the model's device.
    """

    def __init__(self, competition: Competition):
        self.competition = competition

    def __len__(self) -> int:
        return len(self.competition)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray, np.ndarray] | HMSInputError:
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


def batches(competition: Competition, batch_size: int, num_workers: int, pin_memory: bool = False):
    """Iterate `Batch`es in table order; a bad file raises its `HMSInputError` here."""
    loader = DataLoader(ModelInputs(competition), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_collate, pin_memory=pin_memory, persistent_workers=False,
                        prefetch_factor=4 if num_workers else None)
    for batch in loader:
        if isinstance(batch, HMSInputError):
            raise batch
        yield batch
