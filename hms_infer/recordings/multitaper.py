"""The Kaggle-like regional spectrogram rebuilt from EEG: a Chronux-style multitaper estimate (pure numpy/scipy).

Frame j of a 200-Hz signal covers samples [400 j, 400 j + 800) (4 s every 2 s), its time (centre) 2 j + 2 s. Each
of the 16 bipolar chains of `SPECT_REGION_CHAINS` is multiplied by the 3 DPSS tapers of NW = 2 (unit energy), each
product goes through a 1024-point FFT (zero padded, no detrending), and the chain's power is

    S(f_k) = mean over tapers of |X_taper(k)|^2 / fs      (µV^2/Hz)

at the bins f_k = k * 200 / 1024, k = 3..102. This is Chronux's `mtspectrumc` (`dpsschk` scales the unit-energy
tapers by sqrt(Fs), `mtfftc` divides the FFT by Fs, S = mean over tapers of conj(J) J): a two-sided density, so a
sine of amplitude A puts A^2 / 4 of power at +f0 (sum of S over the peak's bins times df = 200 / 1024 Hz), and a
signal's variance is the sum over all 1024 bins times df. A region is the mean of its four chains' power over the
chains whose 800 samples are all finite (none: NaN).

Kaggle's column names are `f"{0.59 + 0.195 * i:.2f}"` (i = 0..99), a rounded linear grid of step 0.195 Hz, not the
bin frequencies: 72 of the 100 names differ from round(f_k, 2) (by 0.01 to 0.03 Hz) and the last reads 19.89 where
f_102 = 19.92 Hz; the largest gap is 0.032 Hz (0.16 of a bin), so name i is nearest to bin k = 3 + i, one to one
(`nearest_bins`). `to_kaggle_frame` writes multitaper frames under those names.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft as sp_fft
from scipy.signal import windows

from ..constants import (
    EEG_FS, ELECTRODES, KAGGLE_FIRST_HZ, KAGGLE_STEP_HZ, MULTITAPER_FIRST_BIN, MULTITAPER_NFFT, MULTITAPER_NW,
    MULTITAPER_STEP_S, MULTITAPER_TAPERS, MULTITAPER_WINDOW_S, SPECT_FRAMES, SPECT_FREQS, SPECT_REGION_CHAINS,
    SPECT_REGIONS,
)

FRAME_LENGTH = int(MULTITAPER_WINDOW_S * EEG_FS)  # 800 samples
FRAME_STEP = int(MULTITAPER_STEP_S * EEG_FS)  # 400 samples
BIN_HZ = EEG_FS / MULTITAPER_NFFT  # 0.1953125 Hz between FFT bins
KAGGLE_FILE_REGIONS: tuple[str, ...] = ("LL", "RL", "LP", "RP")  # the column order of Kaggle's spectrogram files
_CHUNK_FRAMES = 128  # frames per FFT batch: (128, 16, 3, 1024) float64 is 50 MB
_CHAIN_INDEX = np.array([[[ELECTRODES.index(a), ELECTRODES.index(b)] for a, b in SPECT_REGION_CHAINS[r]]
                         for r in SPECT_REGIONS])  # (4 regions, 4 chains, 2)


def frequencies() -> np.ndarray:
    """(100,) the bin frequencies k * 200 / 1024 Hz, k = 3..102."""
    return np.arange(MULTITAPER_FIRST_BIN, MULTITAPER_FIRST_BIN + SPECT_FREQS) * BIN_HZ


@lru_cache(maxsize=1)
def tapers() -> np.ndarray:
    """(3, 800) float64 DPSS tapers of NW = 2, each of unit energy (sum of squares 1); read-only, cached."""
    h = windows.dpss(FRAME_LENGTH, MULTITAPER_NW, MULTITAPER_TAPERS)
    h = h / np.sqrt((h ** 2).sum(axis=1, keepdims=True))
    h.setflags(write=False)
    return h


def region_chains(eeg: np.ndarray) -> np.ndarray:
    """(n, 19) electrodes in `ELECTRODES` order -> (n, 4, 4) bipolar chains a - b (µV): regions in `SPECT_REGIONS`
    order, chains in `SPECT_REGION_CHAINS` order; float64."""
    x = np.asarray(eeg, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(ELECTRODES):
        raise ValueError(f"eeg must be (n, {len(ELECTRODES)}), got {x.shape}")
    with np.errstate(invalid="ignore"):  # inf - inf is NaN: a non-finite chain either way
        return x[:, _CHAIN_INDEX[..., 0]] - x[:, _CHAIN_INDEX[..., 1]]


def frame_count(n: int) -> int:
    """Frames of an n-sample signal: max(0, (n - 800) // 400 + 1)."""
    return max(0, (n - FRAME_LENGTH) // FRAME_STEP + 1)


def _chain_power(frames: np.ndarray) -> np.ndarray:
    """(F, C, 800) finite samples -> (F, C, 100) multitaper power at bins 3..102 (module docstring)."""
    x = sp_fft.rfft(frames[:, :, None, :] * tapers(), MULTITAPER_NFFT, axis=-1)
    x = x[..., MULTITAPER_FIRST_BIN:MULTITAPER_FIRST_BIN + SPECT_FREQS]
    return (x.real ** 2 + x.imag ** 2).mean(axis=2) / EEG_FS


def multitaper_frames(eeg: np.ndarray) -> np.ndarray:
    """(n, 19) float µV at 200 Hz (`ELECTRODES` order, NaN = no value) -> (F, 4, 100) float32 regional power
    (µV^2/Hz), F = `frame_count(n)`, regions in `SPECT_REGIONS` order: frame j from samples [400 j, 400 j + 800),
    each region the mean over its chains without a non-finite sample in the frame (NaN when all four have one)."""
    chains = region_chains(eeg).reshape(len(eeg), -1)  # (n, 16)
    n_frames = frame_count(len(chains))
    out = np.full((n_frames, len(SPECT_REGIONS), SPECT_FREQS), np.nan, dtype=np.float32)
    if n_frames == 0:
        return out
    finite = np.isfinite(chains)
    bad = np.concatenate([np.zeros((1, chains.shape[1]), np.int64), np.cumsum(~finite, axis=0)])
    starts = np.arange(n_frames) * FRAME_STEP
    ok = (bad[starts + FRAME_LENGTH] - bad[starts]) == 0  # (F, 16): the chain is finite over the whole frame
    clean = np.where(finite, chains, 0.0)
    view = sliding_window_view(clean, FRAME_LENGTH, axis=0)[::FRAME_STEP][:n_frames]  # (F, 16, 800), no copy
    for a in range(0, n_frames, _CHUNK_FRAMES):
        b = min(a + _CHUNK_FRAMES, n_frames)
        power = _chain_power(view[a:b]).reshape(b - a, len(SPECT_REGIONS), -1, SPECT_FREQS)  # (f, 4, 4, 100)
        keep = ok[a:b].reshape(b - a, len(SPECT_REGIONS), -1)
        count = keep.sum(axis=2)
        total = np.where(keep[..., None], power, 0.0).sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[a:b] = np.where(count[..., None] > 0, total / count[..., None], np.nan)
    return out


def frame_times(n_frames: int) -> np.ndarray:
    """(F,) float64 frame centres in seconds from the signal's first sample: 2 j + 2."""
    return np.arange(n_frames) * MULTITAPER_STEP_S + FRAME_LENGTH / EEG_FS / 2


def window_first_frame(offset_s: float) -> int:
    """The first of the 300 frames centred on the 50-s EEG window at `offset_s`: floor((offset_s - 276) / 2 + 1/2)
    (frames j0 .. j0 + 299 are centred on 2 j0 + 301 = offset_s + 25 s, exactly for an even offset; an odd one
    always rounds up: the frames' centre 1 s after the window's)."""
    centre_to_first = (SPECT_FRAMES - 1) * MULTITAPER_STEP_S / 2 + FRAME_LENGTH / EEG_FS / 2 - 25.0  # 276 s
    return math.floor((offset_s - centre_to_first) / MULTITAPER_STEP_S + 0.5)


def window_frames(power: np.ndarray, offset_s: float, first: int = 0, total: int | None = None
                  ) -> tuple[np.ndarray, int]:
    """(F, 4, 100) frames first .. first + F - 1 of a signal of `total` frames (None: first + F) -> the (300, 4,
    100) float32 spectrogram window of the EEG window at `offset_s` (`window_first_frame`), NaN for frames outside
    [0, total), and how many frames are such padding. The frames of the window inside [0, total) must be in
    `power`."""
    j0 = window_first_frame(offset_s)
    total = first + len(power) if total is None else total
    out = np.full((SPECT_FRAMES, *power.shape[1:]), np.nan, dtype=np.float32)
    lo, hi = max(j0, 0), min(j0 + SPECT_FRAMES, total)
    if hi > lo:
        if lo < first or hi > first + len(power):
            raise ValueError(f"frames {lo} .. {hi - 1} needed, frames {first} .. {first + len(power) - 1} held")
        out[lo - j0:hi - j0] = power[lo - first:hi - first]
    return out, SPECT_FRAMES - max(hi - lo, 0)


def kaggle_names() -> list[str]:
    """The 100 frequency parts of Kaggle's column names: f"{0.59 + 0.195 * i:.2f}", i = 0..99."""
    return [f"{KAGGLE_FIRST_HZ + KAGGLE_STEP_HZ * i:.2f}" for i in range(SPECT_FREQS)]


def kaggle_columns() -> list[str]:
    """The 400 power columns of a Kaggle spectrogram file in its order: LL, RL, LP, RP, each `kaggle_names()`."""
    return [f"{r}_{name}" for r in KAGGLE_FILE_REGIONS for name in kaggle_names()]


def nearest_bins(hz: np.ndarray) -> np.ndarray:
    """(m,) frequencies in Hz -> (m,) the nearest FFT bin k of each (k * 200 / 1024 Hz)."""
    return np.rint(np.asarray(hz, dtype=np.float64) / BIN_HZ).astype(np.int64)


def to_kaggle_frame(times: np.ndarray, power: np.ndarray) -> pd.DataFrame:
    """(F,) times and (F, 4, 100) power in `SPECT_REGIONS` order -> a Kaggle spectrogram table: `time` (float64)
    then the 400 `kaggle_columns()` (float32), so `data.read_spectrogram_recording` of it written as parquet gives
    (times, power) back."""
    power = np.asarray(power, dtype=np.float32)
    if power.ndim != 3 or power.shape[1:] != (len(SPECT_REGIONS), SPECT_FREQS) or len(times) != len(power):
        raise ValueError(f"expected (F,) times and (F, {len(SPECT_REGIONS)}, {SPECT_FREQS}) power, got "
                         f"{np.shape(times)} and {power.shape}")
    cols: dict[str, np.ndarray] = {"time": np.asarray(times, dtype=np.float64)}
    for r in KAGGLE_FILE_REGIONS:
        region = power[:, SPECT_REGIONS.index(r)]
        for i, name in enumerate(kaggle_names()):
            cols[f"{r}_{name}"] = region[:, i]
    return pd.DataFrame(cols)
