"""Reading a Kaggle competition folder: the table, and each row's raw EEG and spectrogram windows (SPEC §2).

`Competition(root, split)` validates the table up front and yields `(row, eeg window, spectrogram window)`;
every problem with the files is an `HMSInputError` that names the file and the table row. A window is read in two
steps, also used on their own (`timeline`: many windows of one recording, each file read once): read the whole
recording (`read_eeg_recording`, `read_spectrogram_recording`), then cut the window (`cut_eeg`, `cut_spectrogram`).
A folder without `<split>_eegs/` or `<split>_spectrograms/` is a setup error (`check_folders`), not bad rows.
Messages name rows and values as `messages` says.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .constants import (
    EEG_FS, EEG_WINDOW, ELECTRODES, FOLDER_LISTING, SPECT_FRAMES, SPECT_FREQS, SPECT_REGIONS, SPECT_SPAN_S,
)
from .errors import HMSInputError, UnusableInput
from .messages import row_number, shown, table_row

log = logging.getLogger(__name__)
SPLITS = ("test", "train")
_ID_COLUMNS = {"test": ("eeg_id", "spectrogram_id"), "train": ("eeg_id", "spectrogram_id", "label_id")}
_OFFSET_COLUMNS = ("eeg_label_offset_seconds", "spectrogram_label_offset_seconds")
_logged_once: set[str] = set()


def check_folders(root: str | Path, split: str) -> None:
    """`root` holds `<split>_eegs/` and `<split>_spectrograms/`; a missing one (a wrong path far more likely than
    bad data) is an `HMSInputError` naming it and listing what `root` holds."""
    root = Path(root)
    if not root.is_dir():
        raise HMSInputError(f"{root}: folder not found (the competition folder, holding {split}.csv, {split}_eegs/ "
                            f"and {split}_spectrograms/)")
    for folder in (f"{split}_eegs", f"{split}_spectrograms"):
        if not (root / folder).is_dir():
            entries = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
            found = ", ".join(entries[:FOLDER_LISTING]) or "nothing"
            if len(entries) > FOLDER_LISTING:
                found += f" and {len(entries) - FOLDER_LISTING} more"
            raise HMSInputError(f"{root}: no {folder}/ folder (found: {found}); the competition folder holds "
                                f"{split}.csv, {split}_eegs/ and {split}_spectrograms/")


def _log_once(key: str, msg: str, *args: object) -> None:
    if key not in _logged_once:
        _logged_once.add(key)
        log.warning(msg + " (logged once)", *args)


@dataclass(frozen=True)
class Row:
    """One table row. `key` names it in outputs: `eeg_id` for test rows, `label_id` for train rows."""

    index: int  # 0-based row number in the table (not counting the header)
    key_name: str  # "eeg_id" or "label_id"
    key: int
    eeg_id: int
    spectrogram_id: int
    eeg_offset_s: float | None  # None: the table has no offsets (test)
    spectrogram_offset_s: float | None

    def where(self, table: str) -> str:
        return f"{table} row {self.index} ({self.key_name} {self.key})"


def read_csv(path: str | Path) -> pd.DataFrame:
    """Any CSV table of ours, column names stripped; an unreadable file is an `HMSInputError` naming it."""
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise HMSInputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise HMSInputError(f"{path}: is a folder, not a CSV table") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as e:
        raise HMSInputError(f"{path}: not a readable CSV table ({e})") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def read_table(path: Path, split: str) -> pd.DataFrame:
    """Read and validate `test.csv` / `train.csv` (see `validate_table`)."""
    return validate_table(read_csv(path), str(path), split)


def validate_table(df: pd.DataFrame, name: str, split: str) -> pd.DataFrame:
    """Required id columns, non-negative integer ids, non-negative offsets, at least one row; a cleaned copy."""
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in _ID_COLUMNS[split] if c not in df.columns]
    if missing:
        raise HMSInputError(f"{name}: missing column(s) {missing}; found {list(df.columns)}")
    if df.empty:
        raise HMSInputError(f"{name}: the table has no rows")
    for col in _ID_COLUMNS[split]:
        num = pd.to_numeric(df[col], errors="coerce")
        bad = num.isna() | (num % 1 != 0) | (num < 0) | (num.astype(np.float64) >= 2.0**63)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise HMSInputError(f"{table_row(name, row_number(df, i))}: {col} {shown(df[col].iloc[i])} is not a "
                                f"non-negative integer id (below 2**63)")
        df[col] = num.astype(np.int64)
    for col in _OFFSET_COLUMNS:
        if col in df.columns:
            num = pd.to_numeric(df[col], errors="coerce")
            bad = num.isna() | (num < 0) | ~np.isfinite(num)
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise HMSInputError(f"{table_row(name, row_number(df, i))}: {col} {shown(df[col].iloc[i])} is "
                                    f"not a non-negative number")
            df[col] = num.astype(np.float64)
    return df


def _open_parquet(path: Path, where: str) -> pq.ParquetFile:
    if not path.is_file():
        raise UnusableInput(path, "file not found", where)
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise UnusableInput(path, f"unreadable or corrupt parquet file: {e}", where) from None


def _read_columns(pf: pq.ParquetFile, path: Path, columns: list[str], where: str) -> np.ndarray:
    """Read numeric `columns` of an opened parquet file by name -> (rows, len(columns)) float32, nulls as NaN."""
    schema = pf.schema_arrow
    twice = [c for c in columns if len(schema.get_all_field_indices(c)) > 1]
    if twice:
        raise UnusableInput(path, f"column(s) {twice} appear more than once", where)
    missing = [c for c in columns if schema.get_field_index(c) < 0]
    if missing:
        raise UnusableInput(path, f"missing column(s) {missing}; found {schema.names[:25]}", where)
    for c in columns:
        t = schema.field(c).type
        if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_null(t)):
            raise UnusableInput(path, f"column {c!r} holds non-numeric data ({t})", where)
    try:
        table = pf.read(columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise UnusableInput(path, f"unreadable or corrupt parquet file: {e}", where) from None
    if table.num_rows == 0:
        raise UnusableInput(path, "the recording has no rows", where)
    out = np.empty((table.num_rows, len(columns)), dtype=np.float32)
    for j, c in enumerate(columns):
        out[:, j] = table.column(c).to_numpy(zero_copy_only=False)
    return out


def _frequency(name: str) -> float:
    """`LL_0.59` -> 0.59; a name without a number sorts last (and is reported by the column count check)."""
    try:
        return float(name.split("_", 1)[1])
    except (IndexError, ValueError):
        return float("inf")


def _take_rows(x: np.ndarray, start: int, length: int) -> np.ndarray:
    """Rows [start, start + length) of x, NaN where they fall outside it."""
    out = np.full((length, x.shape[1]), np.nan, dtype=np.float32)
    lo, hi = max(start, 0), min(start + length, len(x))
    if hi > lo:
        out[lo - start:hi - start] = x[lo:hi]
    return out


def read_eeg_recording(path: Path, where: str) -> np.ndarray:
    """The whole recording of an EEG file: (N, 19) float32 raw electrodes in `ELECTRODES` order (one read)."""
    return _read_columns(_open_parquet(path, where), path, list(ELECTRODES), where)


def eeg_start(offset_s: float | None, n_rows: int) -> int:
    """The first sample of the 50-s window (SPEC §2.1 step 2): `int(offset * 200)`; without an offset the central
    50 s of a longer recording, else 0."""
    if offset_s is not None:
        return int(offset_s * EEG_FS)
    return (n_rows - EEG_WINDOW) // 2 if n_rows > EEG_WINDOW else 0


def cut_eeg(recording: np.ndarray, start: int) -> np.ndarray:
    """(N, 19) recording -> its window of samples [start, start + 10000): (10000, 19), NaN past its end."""
    return _take_rows(recording, start, EEG_WINDOW)


def read_spectrogram_recording(path: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The whole spectrogram file (one read): time (N,) float32 (NaN where not finite), power (N, 4, 100) float32
    in `SPECT_REGIONS` order; region columns by name, in frequency order."""
    pf = _open_parquet(path, where)
    names = list(dict.fromkeys(pf.schema_arrow.names))
    # each region's columns by name, in frequency order (Kaggle's file order): a re-saved file may order them
    # otherwise
    region_cols = [sorted((c for c in names if c.startswith(f"{r}_")), key=_frequency) for r in SPECT_REGIONS]
    for r, cols in zip(SPECT_REGIONS, region_cols):
        if len(cols) != SPECT_FREQS:
            raise UnusableInput(path, f"expected {SPECT_FREQS} columns named {r}_*, found {len(cols)}", where)
    x = _read_columns(pf, path, ["time"] + sum(region_cols, []), where)
    time, power = x[:, 0], x[:, 1:].reshape(len(x), len(SPECT_REGIONS), SPECT_FREQS)
    time = np.where(np.isfinite(time), time, np.nan)  # an inf time matches no window
    if np.isnan(time).all():
        raise UnusableInput(path, "the time column holds no finite values", where)
    return time, power


def spectrogram_offset(offset_s: float | None, time: np.ndarray) -> float:
    """The window's offset in seconds: the table's, or without one the start of the file's central 10 minutes."""
    if offset_s is not None:
        return offset_s
    t0, t1 = np.nanmin(time), np.nanmax(time)
    return max((t0 + t1) / 2 - SPECT_FRAMES, 0.0)


def spectrogram_start(offset_s: float) -> int:
    """The first frame time of the window (SPEC §2.2 step 2): `int(offset)`, made odd."""
    start = int(offset_s)
    return start + 1 if start % 2 == 0 else start


def cut_spectrogram(time: np.ndarray, power: np.ndarray, start: int) -> tuple[np.ndarray, int]:
    """The frames with `start <= time <= start + 598` of a (N,) time, (N, 4, 100) power recording -> the (T, 4, 100)
    window (T = 300 unless the file has extra frames) and how many of its frames are NaN padding (frames missing
    before the first one found go first, the rest after)."""
    keep = (time >= start) & (time <= start + SPECT_SPAN_S)
    window = power[keep]
    missing = max(SPECT_FRAMES - len(window), 0)
    if missing:
        before = min(max(int(round((time[keep][0] - start) / 2)), 0), missing) if len(window) else 0
        pad = np.full((missing, *window.shape[1:]), np.nan, dtype=np.float32)
        window = np.concatenate([pad[:before], window, pad[before:]])
    return window, missing


class Competition:
    """A competition folder: `<split>.csv`, `<split>_eegs/`, `<split>_spectrograms/`.

    Iterating yields `(row, eeg, spect)`: eeg (10000, 19) float32 raw electrodes in `ELECTRODES` order,
    spect (T, 4, 100) float32 raw power in `SPECT_REGIONS` order (T = 300 for every well-formed file). A root
    without both data folders is an error up front (`check_folders`); a row's missing file is the row's own.
    """

    def __init__(self, root: str | Path, split: str = "test", table: pd.DataFrame | str | Path | None = None,
                 table_name: str | None = None):
        """`table`: default `root/<split>.csv`; or another CSV path; or a DataFrame (e.g. a subset of a table's
        rows), whose index labels are the row numbers errors give, in `table_name`."""
        if split not in SPLITS:
            raise HMSInputError(f"split must be one of {SPLITS}, got {split!r}")
        self.root = Path(root)
        check_folders(self.root, split)
        self.split = split
        self.table_name = table_name or f"{split}.csv"
        if isinstance(table, pd.DataFrame):
            table = validate_table(table, self.table_name, split)
        else:
            path = self.root / self.table_name if table is None else Path(table)
            self.table_name = path.name
            table = read_table(path, split)
        self.table = table
        has_offsets = all(c in table.columns for c in _OFFSET_COLUMNS)
        key_col = "label_id" if split == "train" else "eeg_id"
        self.rows = [
            Row(int(i), key_col, int(r[key_col]), int(r["eeg_id"]), int(r["spectrogram_id"]),
                float(r[_OFFSET_COLUMNS[0]]) if has_offsets else None,
                float(r[_OFFSET_COLUMNS[1]]) if has_offsets else None)
            for i, r in zip(table.index, table.to_dict("records"))
        ]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[Row, np.ndarray, np.ndarray]:
        row = self.rows[i]
        return row, self.read_eeg(row), self.read_spectrogram(row)

    def __iter__(self) -> Iterator[tuple[Row, np.ndarray, np.ndarray]]:
        return (self[i] for i in range(len(self)))

    def eeg_path(self, eeg_id: int) -> Path:
        return self.root / f"{self.split}_eegs" / f"{eeg_id}.parquet"

    def spectrogram_path(self, spectrogram_id: int) -> Path:
        return self.root / f"{self.split}_spectrograms" / f"{spectrogram_id}.parquet"

    def read_eeg(self, row: Row) -> np.ndarray:
        """The 50-s raw window of `row`: (10000, 19) float32."""
        path = self.eeg_path(row.eeg_id)
        x = read_eeg_recording(path, row.where(self.table_name))
        start = eeg_start(row.eeg_offset_s, len(x))
        if row.eeg_offset_s is None and len(x) > EEG_WINDOW:
            _log_once("eeg-centre", "%s: %d rows is longer than 50 s and the table gives no offset; "
                      "using the central 50 s", path, len(x))
        if start + EEG_WINDOW > len(x):
            log.warning("%s: only %d of %d samples from offset %d; padding with NaN",
                        path, max(len(x) - start, 0), EEG_WINDOW, start)
        return cut_eeg(x, start)

    def read_spectrogram(self, row: Row) -> np.ndarray:
        """The 10-minute window of `row`: (T, 4, 100) float32, T = 300 unless the file has extra frames."""
        path = self.spectrogram_path(row.spectrogram_id)
        time, power = read_spectrogram_recording(path, row.where(self.table_name))
        if row.spectrogram_offset_s is None and np.nanmax(time) - np.nanmin(time) > SPECT_SPAN_S:
            _log_once("spect-centre", "%s: spans %.0f s, longer than 10 minutes, and the table gives no "
                      "offset; using the central 10 minutes", path, np.nanmax(time) - np.nanmin(time))
        start = spectrogram_start(spectrogram_offset(row.spectrogram_offset_s, time))
        window, missing = cut_spectrogram(time, power, start)
        if missing:
            log.warning("%s: only %d of %d frames in [%d, %d] s; padding with NaN",
                        path, SPECT_FRAMES - missing, SPECT_FRAMES, start, start + SPECT_SPAN_S)
        return window
