"""Summary numbers of a clinical recording's window table: seizure burden and class shares per recording, segment
and hour (the rows of summary.csv).

A window belongs to the hour of its centre on the file clock (`hour_of`: a 50-s window starting at 3575 s is in
hour 1). Each scope's numbers use its windows with six finite probabilities; the others are counted in
`windows_without_probabilities`. The seizure burden is a rate: 60 x the share of the scope's windows whose
p(seizure) exceeds the threshold, in minutes per hour (15 min/h: a quarter of the time); `seizure_min` is the
same share in minutes of covered time.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import EEG_FS, EEG_WINDOW, SEIZURE_BURDEN_THRESHOLD, SUBMISSION_CLASSES, VOTE_COLUMNS
from ..files import atomic_path

logger = logging.getLogger(__name__)

HALF_WINDOW_S = EEG_WINDOW / EEG_FS / 2  # 25 s: a window's centre is its start + this
SCOPES: tuple[str, ...] = ("recording", "segment", "hour")
SUMMARY_COLUMNS: tuple[str, ...] = (
    "recording", "scope", "segment", "hour", "clock_start", "windows", "windows_without_probabilities",
    "covered_min", *(f"top_{c}" for c in SUBMISSION_CLASSES), *(f"mean_{c}" for c in SUBMISSION_CLASSES),
    "seizure_burden_min_per_h", "seizure_min", "max_seizure", "threshold",
)


def hour_of(start_s: np.ndarray) -> np.ndarray:
    """(W,) window starts on the file clock (s) -> (W,) int64 hours of their centres: floor((start + 25) / 3600)."""
    return np.floor((np.asarray(start_s, dtype=np.float64) + HALF_WINDOW_S) / 3600.0).astype(np.int64)


def _clock(start: datetime | None, seconds: float) -> str:
    """ISO 8601 of `start` + `seconds` (in start's own time zone); '' without a start."""
    return "" if start is None else (start + timedelta(seconds=float(seconds))).isoformat()


def _numbers(probs: np.ndarray, stride: float, threshold: float) -> dict[str, float | int]:
    """(W, 6) probabilities (rows with a non-finite value included) -> the scope's numbers (NaN without any
    finite row)."""
    finite = np.isfinite(probs).all(axis=1)
    p = probs[finite]
    n = len(p)
    out: dict[str, float | int] = {"windows": n, "windows_without_probabilities": int((~finite).sum()),
                                   "covered_min": n * stride / 60.0}
    top = np.bincount(np.argmax(p, axis=1), minlength=len(SUBMISSION_CLASSES)) / n if n else None
    mean = p.mean(axis=0) if n else None
    for k, c in enumerate(SUBMISSION_CLASSES):
        out[f"top_{c}"] = float(top[k]) if n else np.nan
    for k, c in enumerate(SUBMISSION_CLASSES):
        out[f"mean_{c}"] = float(mean[k]) if n else np.nan
    above = int((p[:, 0] > threshold).sum())
    out["seizure_burden_min_per_h"] = 60.0 * above / n if n else np.nan
    out["seizure_min"] = above * stride / 60.0
    out["max_seizure"] = float(p[:, 0].max()) if n else np.nan
    out["threshold"] = float(threshold)
    return out


def burden_table(frame: pd.DataFrame, stride: float, threshold: float = SEIZURE_BURDEN_THRESHOLD,
                 start: datetime | None = None) -> pd.DataFrame:
    """The summary rows of one recording's window table (columns `recording`, `segment`, `offset_s`, `start_s`,
    the six `VOTE_COLUMNS`): one row of scope `recording`, one per segment (in index order), one per hour of the
    file clock that has windows (`hour_of`, across segments), columns `SUMMARY_COLUMNS`. `segment` and `hour`
    are nullable ints (NA where not the scope's); `clock_start`: ISO 8601 of the scope's first moment (the file's
    start, the segment's first sample, start + hour x 3600 s), '' when `start` is None. `stride`: seconds between
    windows (covered_min = windows x stride / 60)."""
    names = frame["recording"].unique() if len(frame) else []
    if len(names) > 1:
        raise ValueError(f"burden_table: one recording at a time, got {len(names)} (use burden_tables)")
    recording = str(names[0]) if len(names) else ""
    probs = frame[list(VOTE_COLUMNS)].to_numpy(dtype=np.float64)  # (W, 6)
    start_s = frame["start_s"].to_numpy(dtype=np.float64)
    segment = frame["segment"].to_numpy(dtype=np.int64)
    seg_start = start_s - frame["offset_s"].to_numpy(dtype=np.float64)  # the segment's first sample, file clock
    hour = hour_of(start_s)
    rows = [{"scope": "recording", "segment": pd.NA, "hour": pd.NA, "clock_start": _clock(start, 0.0),
             **_numbers(probs, stride, threshold)}]
    for s in np.unique(segment).tolist():
        mine = segment == s
        rows.append({"scope": "segment", "segment": s, "hour": pd.NA,
                     "clock_start": _clock(start, float(seg_start[mine].min())),
                     **_numbers(probs[mine], stride, threshold)})
    for h in np.unique(hour).tolist():
        rows.append({"scope": "hour", "segment": pd.NA, "hour": h, "clock_start": _clock(start, h * 3600.0),
                     **_numbers(probs[hour == h], stride, threshold)})
    table = pd.DataFrame([{"recording": recording, **r} for r in rows])
    table["segment"] = table["segment"].astype("Int64")
    table["hour"] = table["hour"].astype("Int64")
    return table[list(SUMMARY_COLUMNS)]


def burden_tables(frame: pd.DataFrame, stride: float, threshold: float = SEIZURE_BURDEN_THRESHOLD,
                  starts: dict[str, datetime | None] | None = None) -> pd.DataFrame:
    """`burden_table` of each recording of `frame` (in order of first appearance), concatenated. `starts`: each
    recording's start on the wall clock (missing: None)."""
    parts = [burden_table(part, stride, threshold, (starts or {}).get(str(name)))
             for name, part in frame.groupby("recording", sort=False)]
    if not parts:
        return burden_table(frame.iloc[:0], stride, threshold).iloc[:0]
    return pd.concat(parts, ignore_index=True)


def recording_start(frame: pd.DataFrame) -> datetime | None:
    """The wall-clock moment of the file clock's 0 from a window table's `time` (time - start_s of its first
    window with a time), None when no window has one."""
    if "time" not in frame or not frame["time"].notna().any():
        return None
    first = frame.loc[frame["time"].notna()].iloc[0]
    return (pd.Timestamp(first["time"]) - pd.Timedelta(seconds=float(first["start_s"]))).to_pydatetime()


def write_summary(path: str | Path, table: pd.DataFrame) -> None:
    """summary.csv, atomically: the floats at full precision, NA as an empty field."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    logger.debug("%s: %d summary rows", path, len(table))
