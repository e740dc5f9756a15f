"""`python -m hms_infer multitaper-check`: how closely the multitaper spectrogram (`recordings.multitaper`) rebuilt
from each training EEG matches the recording's Kaggle spectrogram file.

Each eeg_id of a train folder is read whole (its EEG and its spectrogram, once), its multitaper frames computed on
the EEG clock (frames centred at 2, 4, 6, ... s, and on the signal 1 s later for the odd seconds), and the Kaggle
frame at spectrogram time t paired with the multitaper frame centred at EEG time t - shift_s + lag (to the nearest
second; shift_s = spectrogram_label_offset_seconds - eeg_label_offset_seconds) for every lag of -max_lag_s ..
max_lag_s s in 1-s steps. Both sides are clipped to [e^-7, e^10] as `preprocess.spectrogram_image` does, and only
cells (frame, region, frequency) finite on both sides count. At each lag, per region: `median_ratio` (the median of
multitaper / Kaggle: the scale bias), `mean_abs_log10_ratio`, `r` (Pearson's r of the log power over frames x
frequencies) and `r_<band>` over the bins of each band (delta < 4 Hz, theta 4-8, alpha 8-13, beta >= 13). The best
lag is the one with the highest r over all four regions' cells; per recording and over all recordings together
(pooled sums; medians from a 0.001-wide histogram of the log ratio).

Outputs with `out`: `multitaper_check.json` (everything, every lag's r) and `multitaper_check.csv` (a row per
recording and region at its best lag, then the `all` rows), both written atomically.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..constants import EEG_FS, MULTITAPER_BANDS, SPECT_CLIP_LOG, SPECT_REGIONS
from ..data import Competition, read_eeg_recording, read_spectrogram_recording
from ..errors import HMSInputError
from ..files import atomic_path, check_writable, write_text_atomic
from ..recordings.multitaper import frame_times, frequencies, multitaper_frames
from ..timeline import Recording, plan_recordings

log = logging.getLogger(__name__)
REPORT_JSON, REPORT_CSV = "multitaper_check.json", "multitaper_check.csv"
_HIST_STEP = 0.001  # ln units: the median ratio is read from a histogram of ln(multitaper / Kaggle) this fine
_HIST_HALF = int(math.ceil((SPECT_CLIP_LOG[1] - SPECT_CLIP_LOG[0]) / _HIST_STEP))  # clipped ln ratios lie in +-17
_BAND_BINS = {b: (frequencies() >= lo) & (frequencies() < hi) for b, (lo, hi) in MULTITAPER_BANDS.items()}


@dataclass
class _Sums:
    """Pooled sums of (x, y) = (ln multitaper, ln Kaggle) cells: Pearson's r, the mean |log10 ratio| and (with a
    histogram) the median ratio, addable over recordings."""

    n: int = 0
    sx: float = 0.0
    sy: float = 0.0
    sxx: float = 0.0
    syy: float = 0.0
    sxy: float = 0.0
    sabs: float = 0.0
    hist: np.ndarray | None = None

    def add(self, x: np.ndarray, y: np.ndarray, histogram: bool = False) -> None:
        """Add the cells x, y (1-D float64, finite)."""
        d = x - y
        self.n += len(x)
        self.sx, self.sy = self.sx + x.sum(), self.sy + y.sum()
        self.sxx, self.syy, self.sxy = self.sxx + x @ x, self.syy + y @ y, self.sxy + x @ y
        self.sabs += np.abs(d).sum()
        if histogram:
            idx = np.clip(np.rint(d / _HIST_STEP).astype(np.int64) + _HIST_HALF, 0, 2 * _HIST_HALF)
            counts = np.bincount(idx, minlength=2 * _HIST_HALF + 1)
            self.hist = counts if self.hist is None else self.hist + counts

    def merge(self, other: _Sums) -> None:
        for name in ("n", "sx", "sy", "sxx", "syy", "sxy", "sabs"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.hist is not None:
            self.hist = other.hist.copy() if self.hist is None else self.hist + other.hist

    def r(self) -> float:
        if self.n < 2:
            return math.nan
        vx, vy = self.sxx - self.sx ** 2 / self.n, self.syy - self.sy ** 2 / self.n
        cov = self.sxy - self.sx * self.sy / self.n
        return float(cov / math.sqrt(vx * vy)) if vx > 0 and vy > 0 else math.nan

    def median_ratio(self) -> float:
        if self.hist is None or self.n == 0:
            return math.nan
        k = int(np.searchsorted(np.cumsum(self.hist), (self.n + 1) / 2))
        return math.exp((k - _HIST_HALF) * _HIST_STEP)

    def mean_abs_log10_ratio(self) -> float:
        return float(self.sabs / self.n / math.log(10)) if self.n else math.nan


@dataclass
class _RegionSums:
    """One region at one lag: its frames compared, all its cells, and the cells of each band."""

    frames: int = 0
    cells: _Sums = field(default_factory=_Sums)
    bands: dict[str, _Sums] = field(default_factory=lambda: {b: _Sums() for b in MULTITAPER_BANDS})

    def merge(self, other: _RegionSums) -> None:
        self.frames += other.frames
        self.cells.merge(other.cells)
        for b in self.bands:
            self.bands[b].merge(other.bands[b])

    def summary(self) -> dict[str, Any]:
        return {"frames": self.frames, "median_ratio": self.cells.median_ratio(),
                "mean_abs_log10_ratio": self.cells.mean_abs_log10_ratio(), "r": self.cells.r(),
                **{f"r_{b}": s.r() for b, s in self.bands.items()}}


def _log_clipped(x: np.ndarray) -> np.ndarray:
    lo, hi = SPECT_CLIP_LOG
    return np.log(np.clip(x.astype(np.float64), math.exp(lo), math.exp(hi)))


def eeg_clock_frames(eeg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 19) EEG -> the multitaper frames centred on every whole second from 2 s: even seconds (frames of the EEG)
    and odd ones (frames of the EEG from sample 200): ((F0, 4, 100), (F1, 4, 100))."""
    return multitaper_frames(eeg), multitaper_frames(eeg[EEG_FS:])


def _pairs(time: np.ndarray, shift_s: float, lag: int, n_even: int, n_odd: int) -> tuple[np.ndarray, ...]:
    """Kaggle frames (by index) paired at `lag` with even- and odd-second multitaper frames: (kaggle index, frame
    index) for each of the two sets."""
    u = np.rint(time - shift_s + lag)
    ok = np.isfinite(u)
    k, u = np.flatnonzero(ok), u[ok].astype(np.int64)
    first = int(frame_times(1)[0])  # 2 s (even); the frames of the EEG from 1 s on are centred 1 s later
    even = (u - first) % 2 == 0
    j = np.where(even, (u - first) // 2, (u - first - 1) // 2)
    inside = (j >= 0) & (j < np.where(even, n_even, n_odd))
    return k[inside & even], j[inside & even], k[inside & ~even], j[inside & ~even]


def compare_at_lag(time: np.ndarray, kaggle: np.ndarray, frames: tuple[np.ndarray, np.ndarray], shift_s: float,
                   lag: int) -> dict[str, _RegionSums]:
    """The per-region sums of the Kaggle frames (time (N,), kaggle (N, 4, 100)) against the EEG-clock multitaper
    `frames` (`eeg_clock_frames`) at `lag` s (module docstring)."""
    ke, je, ko, jo = _pairs(time, shift_s, lag, len(frames[0]), len(frames[1]))
    mine = np.concatenate([frames[0][je], frames[1][jo]])  # (P, 4, 100)
    theirs = kaggle[np.concatenate([ke, ko])]
    both = np.isfinite(mine) & np.isfinite(theirs)
    x, y = _log_clipped(mine), _log_clipped(theirs)
    out = {}
    for r, region in enumerate(SPECT_REGIONS):
        sums = _RegionSums(frames=int(both[:, r].any(axis=1).sum()))
        m = both[:, r]
        sums.cells.add(x[:, r][m], y[:, r][m], histogram=True)
        for b, bins in _BAND_BINS.items():
            mb = m[:, bins]
            sums.bands[b].add(x[:, r, bins][mb], y[:, r, bins][mb])
        out[region] = sums
    return out


def _pooled_r(regions: dict[str, _RegionSums]) -> float:
    total = _Sums()
    for s in regions.values():
        total.merge(_Sums(s.cells.n, s.cells.sx, s.cells.sy, s.cells.sxx, s.cells.syy, s.cells.sxy, s.cells.sabs))
    return total.r()


def _summary(by_lag: dict[int, dict[str, _RegionSums]]) -> dict[str, Any]:
    """Per lag sums -> the best lag (highest pooled r), r at every lag and the regions' numbers at the best."""
    r_by_lag = {lag: _pooled_r(regions) for lag, regions in by_lag.items()}
    finite = {lag: r for lag, r in r_by_lag.items() if not math.isnan(r)}
    if not finite:
        return {"best_lag_s": None, "frames": 0, "r": math.nan, "r_by_lag": r_by_lag, "regions": {}}
    best = max(finite, key=lambda lag: (finite[lag], -abs(lag)))
    regions = by_lag[best]
    return {"best_lag_s": best, "frames": max(s.frames for s in regions.values()), "r": finite[best],
            "r_by_lag": r_by_lag, "regions": {name: s.summary() for name, s in regions.items()}}


def check_recording(comp: Competition, rec: Recording, lags: Sequence[int]) -> dict[int, dict[str, _RegionSums]]:
    """One recording's per-lag, per-region sums (its two files read once)."""
    where = f"{comp.table_name} eeg_id {rec.eeg_id}"
    eeg = read_eeg_recording(comp.eeg_path(rec.eeg_id), where)
    time, kaggle = read_spectrogram_recording(comp.spectrogram_path(rec.spectrogram_id), where)
    frames = eeg_clock_frames(eeg)
    return {lag: compare_at_lag(time, kaggle, frames, rec.shift_s, lag) for lag in lags}


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _csv_rows(entry: dict[str, Any], eeg_id: object, spectrogram_id: object, shift_s: object) -> list[dict]:
    return [{"eeg_id": eeg_id, "spectrogram_id": spectrogram_id, "shift_s": shift_s,
             "best_lag_s": entry["best_lag_s"], "region": region, **numbers}
            for region, numbers in entry["regions"].items()]


def multitaper_check(*, data_dir: str | Path, eeg_ids: Sequence[int] | None = None, out: str | Path | None = None,
                     max_lag_s: int = 4) -> dict[str, Any]:
    """Compare the multitaper spectrogram of each recording of the train folder `data_dir` (`eeg_ids`, default
    all) with its Kaggle spectrogram (module docstring); with `out`, write `multitaper_check.json` and `.csv` there.
    Returns {"data_dir", "max_lag_s", "recordings": [...], "overall": {...}} (NaN as None). A recording whose
    files cannot be used is reported with its `error` and left out of `overall`."""
    if isinstance(max_lag_s, bool) or not isinstance(max_lag_s, (int, np.integer)) or max_lag_s < 0:
        raise HMSInputError(f"--max-lag must be a whole number of seconds >= 0, got {max_lag_s!r}")
    if out is not None:
        check_writable(Path(out) / REPORT_JSON)
    comp = Competition(data_dir, "train")
    recordings = plan_recordings(comp, eeg_ids)
    lags = list(range(-int(max_lag_s), int(max_lag_s) + 1))
    overall: dict[int, dict[str, _RegionSums]] = {lag: {r: _RegionSums() for r in SPECT_REGIONS} for lag in lags}
    entries, rows = [], []
    for rec in recordings:
        head = {"eeg_id": rec.eeg_id, "spectrogram_id": rec.spectrogram_id, "shift_s": rec.shift_s}
        try:
            by_lag = check_recording(comp, rec, lags)
        except HMSInputError as e:
            log.warning("%s: left out of the comparison", e)
            entries.append({**head, "error": str(e)})
            continue
        for lag, regions in by_lag.items():
            for name, sums in regions.items():
                overall[lag][name].merge(sums)
        entry = {**head, **_summary(by_lag)}
        entries.append(entry)
        rows += _csv_rows(entry, rec.eeg_id, rec.spectrogram_id, rec.shift_s)
        log.info("eeg_id %d: %d frames, best lag %s s, r %.3f", rec.eeg_id, entry["frames"], entry["best_lag_s"],
                 entry["r"])
    total = _summary(overall)
    rows += _csv_rows(total, "all", "", "")
    result = _json_safe({"data_dir": str(data_dir), "max_lag_s": int(max_lag_s), "recordings": entries,
                         "overall": total})
    if out is not None:
        write_text_atomic(Path(out) / REPORT_JSON, json.dumps(result, indent=1) + "\n")
        with atomic_path(Path(out) / REPORT_CSV) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
    regions = total["regions"]
    ratios = " ".join(f"{r} {s['median_ratio']:.3g}" for r, s in regions.items())
    log.info(f"multitaper-check: {len(recordings)} recordings, {total['frames']} frames, best lag "
             f"{total['best_lag_s']} s, r {total['r']:.3f}, median ratio multitaper/Kaggle {ratios or 'n/a'}"
             + (f"; wrote {Path(out) / REPORT_JSON}" if out is not None else ""))
    return result
