"""Class-to-column mapping, validation and atomic writing of the Kaggle submission (SPEC §1)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .constants import SUBMISSION_ORDER, VOTE_COLUMNS
from .errors import HMSInputError
from .files import atomic_path


def to_submission(eeg_ids: Sequence[int], probs: np.ndarray) -> pd.DataFrame:
    """(N, 6) probabilities in model (`CLASSES`) order -> the submission frame in Kaggle's column order."""
    probs = np.asarray(probs, dtype=np.float64)
    frame = pd.DataFrame(probs[:, list(SUBMISSION_ORDER)], columns=list(VOTE_COLUMNS))
    frame.insert(0, "eeg_id", np.asarray(eeg_ids, dtype=np.int64))
    return frame


def validate_probabilities(probs: np.ndarray, atol: float = 1e-6) -> None:
    """Finite, in [0, 1], rows summing to 1; else an error naming the first bad row."""
    probs = np.asarray(probs, dtype=np.float64)
    checks = (
        (~np.isfinite(probs).all(axis=1), "non-finite probability"),
        (((probs < 0) | (probs > 1)).any(axis=1), "probability outside [0, 1]"),
        (np.abs(probs.sum(axis=1) - 1) > atol, "probabilities do not sum to 1"),
    )
    for bad, what in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise HMSInputError(f"row {i}: {what}: {probs[i].tolist()}")


def write_submission(frame: pd.DataFrame, path: str | Path) -> None:
    """Validate and write atomically (temporary file, then rename)."""
    validate_probabilities(frame[list(VOTE_COLUMNS)].to_numpy())
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
