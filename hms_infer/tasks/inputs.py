"""`inputs`: the exact model inputs of every row of a competition folder, as an .npz (to compare with the training
code's own, or to feed it)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data import Competition
from ..files import atomic_path, check_writable
from ..montage import bipolar, parse_views
from ..preprocess import eeg_electrodes, spectrogram_image

log = logging.getLogger(__name__)


def inputs(*, data_dir: str | Path, out: str | Path, split: str = "test", views: str | Sequence[str] = ("none",)
           ) -> dict[str, np.ndarray]:
    """Write and return `<split>/<key>/eeg/<view>` (24, 10000) per view and `<split>/<key>/spect` (10, 300, 100)
    per row (`<key>`: `eeg_id` of a test row, `label_id` of a train row); duplicate test rows share a key."""
    views = parse_views(views, "--flip")
    check_writable(out)
    arrays: dict[str, np.ndarray] = {}
    comp = Competition(data_dir, split)
    for row, eeg, spect in comp:
        key = f"{split}/{row.key}"
        electrodes = eeg_electrodes(eeg)
        for view in views:
            arrays[f"{key}/eeg/{view}"] = bipolar(electrodes, view)
        arrays[f"{key}/spect"] = spectrogram_image(spect)
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    log.info(f"hms_infer inputs: {len(comp)} rows, {len(arrays)} arrays -> {out}")
    return arrays
