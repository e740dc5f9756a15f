"""Writers of small clinical recording files for the tests (no tests here): FIF (MNE), EDF/BDF (pyedflib) and a
discontinuous EDF+D written by hand (pyedflib writes EDF+C only).

Quantisation: FIF is written in double precision (`fmt="double"`): exact, the values come back to float64 rounding
of x 1e-6 / x 1e6 (far below 1e-6 µV). EDF stores 16-bit integers, BDF 24-bit: a channel comes back within half a
step of `quantisation_step` = (physical max - physical min) / (digital max - digital min), i.e. range / 65535 (EDF)
or range / 16777215 (BDF); the physical range is the data's, rounded outward to whole µV (the header holds 8
characters), unless given.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np

EDF_DIGITAL = (-32768, 32767)
BDF_DIGITAL = (-8388608, 8388607)


def physical_ranges(data_uv: np.ndarray | Sequence[np.ndarray],
                    physical_range: tuple[float, float] | None = None) -> list[tuple[float, float]]:
    """Per channel (physical min, physical max) in µV: `physical_range` for all, else each channel's data range
    rounded outward to whole µV (at least 1 µV wide)."""
    channels = list(np.asarray(data_uv).T) if isinstance(data_uv, np.ndarray) else list(data_uv)
    if physical_range is not None:
        return [tuple(map(float, physical_range))] * len(channels)
    out = []
    for x in channels:
        lo, hi = float(np.floor(np.nanmin(x))), float(np.ceil(np.nanmax(x)))
        out.append((lo, hi if hi > lo else lo + 1.0))
    return out


def quantisation_step(data_uv: np.ndarray | Sequence[np.ndarray], bdf: bool = False,
                      physical_range: tuple[float, float] | None = None) -> np.ndarray:
    """(C,) µV per digital step of each channel as `write_edf` writes it."""
    d_lo, d_hi = BDF_DIGITAL if bdf else EDF_DIGITAL
    return np.array([(hi - lo) / (d_hi - d_lo) for lo, hi in physical_ranges(data_uv, physical_range)])


def write_fif(path: str | Path, data_uv: np.ndarray, labels: Sequence[str], fs: float,
              meas_date: datetime | None = None, annotations: Sequence[tuple[float, float, str]] = (),
              ch_types: str | Sequence[str] = "eeg") -> Path:
    """(n, C) µV -> a FIF file of EEG channels in volts, double precision (exact); annotations (onset s from the
    first sample, duration s, text)."""
    import mne

    info = mne.create_info(list(labels), float(fs), ch_types)
    raw = mne.io.RawArray(np.asarray(data_uv, np.float64).T * 1e-6, info, verbose="error")
    if meas_date is not None:
        raw.set_meas_date(meas_date)
    if annotations:
        onset, duration, text = zip(*annotations)
        raw.set_annotations(mne.Annotations(onset, duration, text, orig_time=raw.info["meas_date"]))
    raw.save(Path(path), fmt="double", overwrite=True, verbose="error")
    return Path(path)


def write_edf(path: str | Path, data_uv: np.ndarray | Sequence[np.ndarray], labels: Sequence[str],
              fs: float | Sequence[float], bdf: bool = False, meas_date: datetime | None = None,
              annotations: Sequence[tuple[float, float, str]] = (), physical_range: tuple[float, float] | None = None,
              dimension: str = "uV") -> Path:
    """(n, C) µV (or one 1-D array per channel, with one rate per channel in `fs`) -> an EDF+C (BDF+ with `bdf`)
    file written by pyedflib, 1-s data records, physical dimension `dimension`; see `quantisation_step`."""
    import pyedflib

    channels = list(np.asarray(data_uv, np.float64).T) if isinstance(data_uv, np.ndarray) else list(data_uv)
    rates = [float(fs)] * len(channels) if np.isscalar(fs) else [float(f) for f in fs]
    d_lo, d_hi = BDF_DIGITAL if bdf else EDF_DIGITAL
    headers = [dict(label=label, dimension=dimension, sample_frequency=rate, physical_min=lo, physical_max=hi,
                    digital_min=d_lo, digital_max=d_hi, transducer="", prefilter="")
               for label, rate, (lo, hi) in zip(labels, rates, physical_ranges(channels, physical_range))]
    kind = pyedflib.FILETYPE_BDFPLUS if bdf else pyedflib.FILETYPE_EDFPLUS
    writer = pyedflib.EdfWriter(str(path), len(channels), file_type=kind)
    try:
        writer.setSignalHeaders(headers)
        if meas_date is not None:
            writer.setStartdatetime(meas_date.replace(tzinfo=None))
        for onset, duration, text in annotations:
            writer.writeAnnotation(onset, duration, text)
        writer.writeSamples([np.ascontiguousarray(x, np.float64) for x in channels])
    finally:
        writer.close()
    return Path(path)


def _field(value: object, width: int) -> bytes:
    text = str(value).encode("latin-1")[:width]
    return text + b" " * (width - len(text))


def _number(value: float, width: int = 8) -> bytes:
    text = f"{value:.6g}"
    if len(text) > width:
        raise ValueError(f"{value} does not fit {width} characters")
    return _field(text, width)


def write_edf_discontinuous(path: str | Path, segments: Sequence[tuple[float, np.ndarray]], labels: Sequence[str],
                            fs: int, record_s: int = 1, physical_range: tuple[float, float] | None = None,
                            annotations: Sequence[tuple[float, float, str]] = (),
                            meas_date: datetime = datetime(2020, 1, 2, 3, 4, 5)) -> Path:
    """An EDF+D file written by hand: `segments` [(start s on the file clock, (n_i, C) µV)], each n_i a multiple of
    fs * record_s, start s a multiple of record_s; the records' time-keeping TALs carry the starts (the gaps), the
    annotations (onset s on the file clock, duration, text) go in the TAL of the record holding their onset (the
    last before it). 16-bit; physical range the data's (whole µV) unless given: see `quantisation_step`."""
    spr = fs * record_s
    all_data = np.concatenate([d for _, d in segments])
    ranges = physical_ranges(all_data, physical_range)
    d_lo, d_hi = EDF_DIGITAL
    records: list[tuple[float, np.ndarray]] = []
    for start, data in segments:
        if len(data) % spr:
            raise ValueError(f"segment of {len(data)} samples is not whole {record_s}-s records")
        records += [(start + r * record_s, data[r * spr:(r + 1) * spr]) for r in range(len(data) // spr)]
    ann_samples = 60  # 120 bytes of TAL per record
    ns = len(labels) + 1
    head = (_field("0", 8) + _field("X X X X", 80)
            + _field(f"Startdate {meas_date.strftime('%d-%b-%Y').upper()} X X X", 80)
            + _field(meas_date.strftime("%d.%m.%y"), 8) + _field(meas_date.strftime("%H.%M.%S"), 8)
            + _field(256 * (ns + 1), 8) + _field("EDF+D", 44) + _field(len(records), 8) + _field(record_s, 8)
            + _field(ns, 4))
    sig_labels = [*labels, "EDF Annotations"]
    sig_ranges = [*ranges, (-1.0, 1.0)]
    head += b"".join(_field(label, 16) for label in sig_labels)
    head += b"".join(_field("", 80) for _ in sig_labels)
    head += b"".join(_field("uV", 8) for _ in labels) + _field("", 8)
    head += b"".join(_number(lo) for lo, _ in sig_ranges) + b"".join(_number(hi) for _, hi in sig_ranges)
    head += b"".join(_field(d_lo, 8) for _ in sig_labels) + b"".join(_field(d_hi, 8) for _ in sig_labels)
    head += b"".join(_field("", 80) for _ in sig_labels)
    head += b"".join(_field(spr, 8) for _ in labels) + _field(ann_samples, 8)
    head += b"".join(_field("", 32) for _ in sig_labels)
    assert len(head) == 256 * (ns + 1)
    cal = np.array([(hi - lo) / (d_hi - d_lo) for lo, hi in ranges])
    lows = np.array([lo for lo, _ in ranges])
    body = []
    for i, (onset, data) in enumerate(records):
        digital = np.clip(np.round((data - lows) / cal + d_lo), d_lo, d_hi).astype("<i2")
        tal = f"+{onset:g}\x14\x14\x00".encode()
        nxt = records[i + 1][0] if i + 1 < len(records) else np.inf
        for a_on, a_dur, text in annotations:
            if onset <= a_on < nxt:
                tal += f"+{a_on:g}\x15{a_dur:g}\x14{text}\x14\x00".encode()
        if len(tal) > 2 * ann_samples:
            raise ValueError("too many annotations in one record")
        body.append(digital.T.tobytes() + tal + b"\x00" * (2 * ann_samples - len(tal)))
    Path(path).write_bytes(head + b"".join(body))
    return Path(path)


def write_brainvision(path: str | Path, data_uv: np.ndarray, labels: Sequence[str], fs: float,
                      unit: str = "µV") -> Path:
    """(n, C) µV -> a BrainVision header `path` (.vhdr) with its .vmrk and .eeg (IEEE float32, multiplexed,
    resolution 1 `unit`): float32 rounding of the µV values."""
    path = Path(path)
    stem = path.with_suffix("")
    np.asarray(data_uv, "<f4").tofile(stem.with_suffix(".eeg"))
    channels = "\n".join(f"Ch{i + 1}={label},,1,{unit}" for i, label in enumerate(labels))
    path.write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\n"
        f"DataFile={stem.name}.eeg\nMarkerFile={stem.name}.vmrk\nDataFormat=BINARY\nDataOrientation=MULTIPLEXED\n"
        f"NumberOfChannels={len(labels)}\nSamplingInterval={1e6 / fs:g}\n\n[Binary Infos]\n"
        f"BinaryFormat=IEEE_FLOAT_32\n\n[Channel Infos]\n{channels}\n", encoding="utf-8")
    stem.with_suffix(".vmrk").write_text(
        "Brain Vision Data Exchange Marker File, Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\n"
        f"DataFile={stem.name}.eeg\n\n[Marker Infos]\nMk1=New Segment,,1,1,0\n", encoding="utf-8")
    return path


def write_eeglab(path: str | Path, data_uv: np.ndarray, labels: Sequence[str], fs: float, fdt: bool = True) -> Path:
    """(n, C) µV -> an EEGLAB .set (scipy's savemat, MATLAB v5) with its data in a separate .fdt (float32,
    multiplexed: MNE reads it lazily) or, `fdt=False`, inside the .set (MNE then loads it whole): float32 rounding."""
    from scipy.io import savemat

    path = Path(path)
    data = np.asarray(data_uv, np.float32)
    n, c = data.shape
    chanlocs = np.zeros((1, c), dtype=[("labels", object), ("type", object)])
    for i, label in enumerate(labels):
        chanlocs[0, i] = (label, "EEG")
    if fdt:
        data.astype("<f4").tofile(path.with_suffix(".fdt"))  # (n, C) C-order = channel-fastest, as EEGLAB writes
    eeg = dict(setname=path.stem, nbchan=c, trials=1, pnts=n, srate=float(fs), xmin=0.0, xmax=(n - 1) / fs,
               data=path.with_suffix(".fdt").name if fdt else data.T, chanlocs=chanlocs, event=np.zeros((0, 0)),
               icawinv=np.zeros((0, 0)), ref="common", times=np.zeros((0, 0)))
    savemat(path, {"EEG": eeg}, appendmat=False)
    return path
