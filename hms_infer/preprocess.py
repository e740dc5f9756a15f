"""Pure preprocessing functions: raw windows -> the exact model inputs of the training code (SPEC §2); the bipolar
signals of a view are then `montage.bipolar` of the filtered electrodes.

All functions take and return numpy arrays; none reads files or keeps state.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import signal

from .constants import (
    EEG_CLIP, EEG_FS, EEG_LOWPASS_HZ, EEG_LOWPASS_ORDER, EEG_SCALE, SPECT_CLIP_LOG, SPECT_FRAMES, SPECT_NORM_CLIP,
)

_LOWPASS = signal.butter(EEG_LOWPASS_ORDER, EEG_LOWPASS_HZ / (EEG_FS / 2), btype="low")
_SPECT_DIFF_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


def eeg_electrodes(window: np.ndarray) -> np.ndarray:
    """Clean, scale and low-pass the raw electrode window (SPEC §2.1 steps 3-5).

    window: (T, 19) float32 in `ELECTRODES` order, NaN allowed. Returns (19, T) float32.
    """
    x = np.ascontiguousarray(np.asarray(window, dtype=np.float32).T)
    all_nan = np.isnan(x).all(axis=1)
    with np.errstate(all="ignore"):  # inf - inf in a mean is NaN, then 0: no warning on stderr
        means = np.nanmean(np.where(all_nan[:, None], np.float32(0), x), axis=1, keepdims=True)
        x = np.where(np.isnan(x), means, x)
        x[all_nan] = 0.0
        x = np.nan_to_num(np.clip(x, -EEG_CLIP, EEG_CLIP), nan=0.0) / np.float32(EEG_SCALE)
    b, a = _LOWPASS
    return signal.lfilter(b, a, x.astype(np.float64), axis=-1).astype(np.float32)


def spectrogram_image(regions: np.ndarray) -> np.ndarray:
    """Log-normalise a spectrogram window into the model's 10-channel image (SPEC §2.2 steps 3-7).

    regions: (T, 4, 100) power in `SPECT_REGIONS` order, NaN allowed. Returns (10, 300, 100) float32.
    """
    x = np.asarray(regions, dtype=np.float32).transpose(0, 2, 1)  # (T, 100, 4)
    # an all-NaN window is valid (m and s are NaN, handled below), so are inf - inf: no warnings on stderr
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        diffs = [x[..., i] - x[..., j] for i, j in _SPECT_DIFF_PAIRS]
        x = np.concatenate([x, np.stack(diffs, axis=-1)], axis=-1)  # (T, 100, 10)
        lo, hi = SPECT_CLIP_LOG
        x = np.log(np.clip(x, np.exp(lo), np.exp(hi)))
        m = np.nanmean(x)
        s = np.nanstd(x) + 1e-6
        fill = 0.0 if (np.isnan(m) or np.isnan(s) or m < 1) else m
        x = np.where(np.isnan(x), np.float32(fill), x)
        x = np.nan_to_num((x - m) / s, nan=0.0)
        x = np.clip(x, -SPECT_NORM_CLIP, SPECT_NORM_CLIP)
    start = (x.shape[0] - SPECT_FRAMES) // 2
    return np.ascontiguousarray(x[start:start + SPECT_FRAMES].transpose(2, 0, 1), dtype=np.float32)
