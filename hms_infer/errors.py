"""The exceptions users see for bad input: their messages name the file (and row) at fault."""
from __future__ import annotations

from pathlib import Path


class HMSInputError(ValueError):
    """Bad competition data, manifest, checkpoint or CLI argument; the message says what and where."""


class FusedKernelError(RuntimeError):
    """The fused WaveNet kernel failed to compile or launch (not a lack of memory): its member falls back to the
    merged convs."""


class UnusableInput(HMSInputError):
    """One row's EEG or spectrogram file cannot be used (missing, unreadable, without the needed columns or
    rows). Without `--strict` the row is predicted from its other input, or falls back (see `fallback`)."""

    def __init__(self, path: str | Path, reason: str, where: str):
        super().__init__(f"{path}: {reason} (needed by {where})")
        self.path, self.reason, self.where = str(path), reason, where

    def __reduce__(self):  # travels from DataLoader workers
        return type(self), (self.path, self.reason, self.where)
