"""Synthetic competition folders in the exact Kaggle layout, for tests and the demo.

Signals are plausible, not real: background rhythms, periodic spikes, NaN gaps, a flat and an all-NaN channel.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .constants import EEG_COLUMNS, EEG_FS, SPECT_FREQS, SPECT_REGIONS, VOTE_COLUMNS
from .recordings.multitaper import kaggle_names

SPECT_FREQ_NAMES = kaggle_names()  # Kaggle's column names
EXPERT_CONSENSUS = ("Seizure", "LPD", "GPD", "LRDA", "GRDA", "Other")
SEGMENT_S = 30  # a long recording changes its rhythms, gaps and flat channels about every SEGMENT_S seconds


def make_eeg(n_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """(n_rows, 20) float32 EEG in µV at 200 Hz, columns `EEG_COLUMNS`."""
    t = np.arange(n_rows) / EEG_FS
    n = len(EEG_COLUMNS)
    freqs = rng.uniform(1.0, 12.0, size=(n, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    x = rng.uniform(10, 60, size=(n, 1)) * np.sin(2 * np.pi * freqs * t + phase)
    x += 8 * rng.standard_normal((n, n_rows))
    period = int(EEG_FS * rng.uniform(0.7, 2.0))  # periodic discharges on the left hemisphere
    spikes = np.zeros(n_rows)
    spikes[::period] = rng.uniform(100, 300)
    spikes = np.convolve(spikes, np.hanning(15), mode="same")
    x[[0, 1, 2, 3, 4, 5, 6, 7]] += spikes
    x[19] = 300 * np.sin(2 * np.pi * 1.2 * t)  # EKG
    x = x.astype(np.float32)
    gap = int(rng.integers(0, max(n_rows - 400, 1)))
    x[:, gap:gap + 400] = np.nan  # a dropout across channels
    x[int(rng.integers(0, 19)), :] = 0.0  # a flat channel
    if rng.random() < 0.5:
        x[int(rng.integers(0, 19)), :] = np.nan  # an all-NaN channel
    x[int(rng.integers(0, 19)), int(rng.integers(0, n_rows))] = 5000.0  # an artefact beyond the clip
    return pd.DataFrame(x.T, columns=list(EEG_COLUMNS))


def make_spectrogram(n_frames: int, rng: np.random.Generator, t0: int = 1) -> pd.DataFrame:
    """`time` (t0, t0+2, ...) plus 400 power columns `LL_*`, `RL_*`, `LP_*`, `RP_*` (Kaggle's file order)."""
    freqs = np.arange(SPECT_FREQS)
    base = np.exp(3 - 0.03 * freqs)  # 1/f-like
    cols = {"time": (t0 + 2 * np.arange(n_frames)).astype(np.float64)}
    for region in ("LL", "RL", "LP", "RP"):
        assert region in SPECT_REGIONS
        power = base * rng.lognormal(0, 0.6, size=(n_frames, SPECT_FREQS))
        power[rng.random(n_frames) < 0.03] = np.nan  # missing frames
        for j, name in enumerate(SPECT_FREQ_NAMES):
            cols[f"{region}_{name}"] = power[:, j].astype(np.float32)
    return pd.DataFrame(cols)


def write_competition(root: str | Path, n_test: int = 4, n_train_eegs: int = 3, seed: int = 0) -> Path:
    """Write `test.csv`, `train.csv` and their parquet folders under `root`; return `root`.

    Test rows: one 50-s EEG and one 10-min spectrogram each, offsets 0 (as Kaggle's hidden test).
    Train rows: 2-3 labelled sub-windows per EEG with offsets, vote counts and `expert_consensus`.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split in ("test", "train"):
        (root / f"{split}_eegs").mkdir(parents=True, exist_ok=True)
        (root / f"{split}_spectrograms").mkdir(parents=True, exist_ok=True)

    test = []
    for i in range(n_test):
        eeg_id, spec_id = 1000 + 17 * i, 500000 + 31 * i
        make_eeg(50 * EEG_FS, rng).to_parquet(root / "test_eegs" / f"{eeg_id}.parquet", index=False)
        make_spectrogram(300, rng).to_parquet(root / "test_spectrograms" / f"{spec_id}.parquet", index=False)
        test.append({"spectrogram_id": spec_id, "eeg_id": eeg_id, "patient_id": 40000 + i})
    pd.DataFrame(test).to_csv(root / "test.csv", index=False)

    train, label_id = [], 900000000
    for i in range(n_train_eegs):
        eeg_id, spec_id, patient = 2000000 + 101 * i, 600000 + 7 * i, 50000 + i
        n_sub = int(rng.integers(2, 4))
        eeg_offsets = np.sort(rng.choice(np.arange(0, 40, 2), size=n_sub, replace=False)).astype(float)
        eeg_offsets[0] = 0.0
        spec_start = float(2 * rng.integers(0, 40))
        make_eeg(int((eeg_offsets[-1] + 50) * EEG_FS), rng).to_parquet(
            root / "train_eegs" / f"{eeg_id}.parquet", index=False)
        make_spectrogram(int((spec_start + eeg_offsets[-1] + 600) // 2) + 1, rng).to_parquet(
            root / "train_spectrograms" / f"{spec_id}.parquet", index=False)
        for sub, off in enumerate(eeg_offsets):
            votes = rng.multinomial(int(rng.integers(1, 16)), rng.dirichlet(np.ones(6)))
            train.append({
                "eeg_id": eeg_id, "eeg_sub_id": sub, "eeg_label_offset_seconds": off,
                "spectrogram_id": spec_id, "spectrogram_sub_id": sub,
                "spectrogram_label_offset_seconds": spec_start + off, "label_id": label_id,
                "patient_id": patient, "expert_consensus": EXPERT_CONSENSUS[int(np.argmax(votes))],
                **dict(zip(VOTE_COLUMNS, votes.tolist())),
            })
            label_id += 7919
    pd.DataFrame(train).to_csv(root / "train.csv", index=False)
    return root


def write_recording(root: str | Path, eeg_id: int, spectrogram_id: int, seconds: float,
                    label_offsets: tuple[float, ...] = (0.0,), shift_s: float = 100.0, spect_end_s: float | None = None,
                    seed: int = 0) -> Path:
    """Write one long training recording under `root` and append its label rows to `train.csv` (created if absent);
    return `root`.

    The EEG (`seconds` long) changes its rhythms, NaN gap and flat channel about every `SEGMENT_S` s, and C3 is flat
    from 20% of it on. The spectrogram's frames run from time 1 s every 2 s to `spect_end_s` (default: far enough for
    the 10 minutes of every window at offset + `shift_s`). One label row per offset in `label_offsets` (spectrogram
    offset = offset + `shift_s`), the votes of each concentrated on another class.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for folder in ("train_eegs", "train_spectrograms"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * EEG_FS))
    bounds = np.linspace(0, n, max(1, round(n / (SEGMENT_S * EEG_FS))) + 1).astype(int)
    pieces = [make_eeg(b - a, rng) for a, b in zip(bounds[:-1], bounds[1:])]
    eeg = pd.concat(pieces, ignore_index=True)
    eeg.loc[int(0.2 * n):, "C3"] = 0.0  # a channel flat from 20% of the recording on
    eeg.to_parquet(root / "train_eegs" / f"{eeg_id}.parquet", index=False)
    end = seconds + shift_s + 600 if spect_end_s is None else spect_end_s
    make_spectrogram(int(end // 2) + 1, rng).to_parquet(root / "train_spectrograms" / f"{spectrogram_id}.parquet",
                                                        index=False)
    rows = []
    for sub, off in enumerate(label_offsets):
        alpha = np.full(6, 0.3)
        alpha[sub % 6] = 6.0
        votes = rng.multinomial(int(rng.integers(3, 16)), rng.dirichlet(alpha))
        rows.append({"eeg_id": eeg_id, "eeg_sub_id": sub, "eeg_label_offset_seconds": float(off),
                     "spectrogram_id": spectrogram_id, "spectrogram_sub_id": sub,
                     "spectrogram_label_offset_seconds": float(off) + shift_s, "label_id": eeg_id * 100 + sub,
                     "patient_id": 60000 + eeg_id % 1000,
                     "expert_consensus": EXPERT_CONSENSUS[int(np.argmax(votes))],
                     **dict(zip(VOTE_COLUMNS, votes.tolist()))})
    table = root / "train.csv"
    frame = pd.DataFrame(rows)
    if table.is_file():
        frame = pd.concat([pd.read_csv(table), frame], ignore_index=True)
    frame.to_csv(table, index=False)
    return root
