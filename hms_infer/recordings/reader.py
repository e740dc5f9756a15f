"""Any recording MNE reads -> the 19 electrodes in µV at 200 Hz, segment by segment, block by block (lazily).

`open_recording` reads the header only (`mne.io.read_raw(path, preload=False)`); `ClinicalRecording.blocks` reads
`RECORDING_BLOCK_S` of 200-Hz signal at a time through `raw.get_data(picks, start, stop)` and resamples it with
`resample.Resampler` (exactly `scipy.signal.resample_poly` of the whole segment), so memory does not grow with the
recording's length. What was done is listed, one line each, in `ClinicalRecording.steps`.

- Channels: `channels.match_channels` on MNE's channel names (a channel map names others); missing electrodes are
  all-NaN columns (only with `allow_missing`).
- Units: MNE gives volts for voltage channels; x 1e6 -> µV. MNE scales an EDF/BDF channel by its physical dimension
  (`uV`/`µV` 1e-6, `mV` 1e-3, anything else 1: taken as volts); here `nV` is corrected (x 1e-9) and an electrode
  channel whose dimension is not a voltage, or (other formats) whose MNE unit is not volts, is an error.
- Rates: every rate >= `RECORDING_MIN_FS` is resampled to 200 Hz. EDF/BDF channels at different rates: MNE brings
  every channel to the highest rate by an FFT resampling of each `get_data` call (edge artefacts at every block
  boundary when not preloaded); here each rate's channels are opened on their own (`include=`), read at their own
  rate and resampled to 200 Hz each.
- Segments: MNE reads an EDF+D (or BDF+D) file's data records back to back, ignoring the gaps (its annotations keep
  the true times); here the records' time-keeping TAL onsets split it into continuous segments. Other formats mark
  gaps as `BAD_ACQ_SKIP` annotations (FIF, EGI, NSx, MEF ...): the signal between them is a segment. `start_s` is on
  the file clock: seconds from the file's first sample.
- Channel check: an electrode flat (max == min) or all-NaN in each of `RECORDING_CHECK_SPANS` evenly spread
  `RECORDING_CHECK_SPAN_S`-s spans is an error, or missing (NaN) with `allow_missing`.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from ..constants import (
    EEG_FS, EEG_WINDOW, ELECTRODES, RECORDING_BLOCK_S, RECORDING_CHECK_SPAN_S, RECORDING_CHECK_SPANS,
    RECORDING_MIN_FS,
)
from ..errors import HMSInputError
from .channels import ChannelMatch, load_channel_map, match_channels
from .resample import Resampler, output_length, rate_ratio

logger = logging.getLogger(__name__)

# The formats `find_recordings` lists and their names (MNE's `read_raw` readers for them); lower-case suffixes.
FORMATS: dict[str, str] = {
    ".edf": "EDF", ".bdf": "BDF", ".gdf": "GDF", ".vhdr": "BrainVision", ".ahdr": "BrainVision", ".set": "EEGLAB",
    ".fif": "FIF", ".fif.gz": "FIF", ".lay": "Persyst", ".eeg": "Nihon Kohden", ".cnt": "CNT", ".mff": "EGI MFF",
    ".nxe": "eXimia", ".mefd": "MEF",
}
GAP_DESCRIPTION = "BAD_ACQ_SKIP"  # MNE's annotation of an acquisition gap
_TAL_ONSET = re.compile(rb"([+-]\d+(?:\.\d*)?)\x14")
_TAL_LABELS = ("EDF Annotations", "BDF Annotations")  # MNE's annotation signals (left out of its channels)
_FIFF_UNIT_V = 107  # mne.io.constants.FIFF.FIFF_UNIT_V


@dataclass(frozen=True)
class Segment:
    """A continuous part of a recording: `start_s` on the file clock, `samples` at 200 Hz."""

    index: int
    start_s: float
    samples: int

    @property
    def duration_s(self) -> float:
        return self.samples / EEG_FS


@dataclass(frozen=True)
class Annotation:
    """An annotation of the file (gap marks excluded): onset on the file clock, duration in seconds."""

    onset_s: float
    duration_s: float
    description: str


@dataclass(frozen=True)
class _EdfHeader:
    """What MNE does not expose of an EDF/BDF header: per-signal labels, dimensions and samples per record."""

    labels: tuple[str, ...]
    dimensions: tuple[str, ...]
    samples_per_record: tuple[int, ...]
    record_s: float
    n_records: int
    header_bytes: int
    sample_bytes: int
    discontinuous: bool
    plus: bool  # EDF+ / BDF+ (time-keeping TALs in each record)

    @property
    def annotation_signal(self) -> int | None:
        hits = [i for i, label in enumerate(self.labels) if label in _TAL_LABELS]
        return hits[0] if hits else None


@dataclass
class _Group:
    """Electrodes read together at one rate: their raw, fs, the output columns and the raw's channel picks."""

    raw: object
    fs: float
    columns: list[int]
    picks: list[int]
    scale: np.ndarray  # (C,) factor from MNE's values to µV (polarity included)


def _err(path: Path, text: str) -> HMSInputError:
    return HMSInputError(f"{path}: {text}")


def _mne_said(e: BaseException) -> str:
    """MNE's exception in a few words, on one line."""
    text = " ".join(str(e).split())
    if not text:
        return type(e).__name__
    return f"{type(e).__name__}: {text[:160]}{'...' if len(text) > 160 else ''}"


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".fif.gz" if name.endswith(".fif.gz") else path.suffix.lower()


def _read_edf_header(path: Path, bdf: bool) -> _EdfHeader:
    """The fixed EDF/BDF header fields MNE's reader does not expose; raises ValueError when malformed."""
    with open(path, "rb") as f:
        head = f.read(256)
        if len(head) < 256:
            raise ValueError("header shorter than 256 bytes")
        header_bytes, reserved = int(head[184:192]), head[192:236].decode("latin-1").strip()
        n_records, record_s, ns = int(head[236:244]), float(head[244:252]), int(head[252:256])
        fields = f.read(256 * ns)
        if len(fields) < 256 * ns:
            raise ValueError("signal headers truncated")

    def field(offset: int, width: int) -> list[str]:
        base = offset * ns
        return [fields[base + i * width:base + (i + 1) * width].decode("latin-1").strip() for i in range(ns)]

    labels, dims = field(0, 16), field(16 + 80, 8)
    spr = [int(x) for x in field(16 + 80 + 8 + 8 * 4 + 80, 8)]
    kind = "BDF" if bdf else "EDF"
    return _EdfHeader(tuple(labels), tuple(dims), tuple(spr), record_s or 1.0, n_records, header_bytes,
                      3 if bdf else 2, reserved.startswith(f"{kind}+D"), reserved.startswith(f"{kind}+"))


def _edf_segments(onsets: np.ndarray, record_s: float) -> list[tuple[int, int]]:
    """Record onsets -> [(first record, stop record)) of each run of records that follow each other without a gap
    (an onset within 1 µs of the previous one + record_s)."""
    if len(onsets) == 0:
        return []
    breaks = np.flatnonzero(np.abs(np.diff(onsets) - record_s) > 1e-6) + 1
    edges = [0, *breaks.tolist(), len(onsets)]
    return list(zip(edges[:-1], edges[1:]))


def _gap_spans(raw, n_times: int, sfreq: float) -> list[tuple[int, int]]:
    """MNE's BAD_ACQ_SKIP annotations -> the [start, stop) raw sample ranges between them (the segments)."""
    ann = raw.annotations
    skips = sorted((max(0, round((o - raw.first_time) * sfreq)), min(n_times, round((o - raw.first_time + d) * sfreq)))
                   for o, d, desc in zip(ann.onset, ann.duration, ann.description) if desc == GAP_DESCRIPTION)
    spans, at = [], 0
    for a, b in skips:
        if a > at:
            spans.append((at, a))
        at = max(at, b)
    if at < n_times:
        spans.append((at, n_times))
    return spans


def mne_module():
    """MNE-Python, imported on first use; without it an `HMSInputError` saying how to install it."""
    try:
        import mne
    except ModuleNotFoundError:
        raise HMSInputError("clinical recordings are read with MNE-Python: pip install 'hms_infer[recordings]'") \
            from None
    return mne


def _open_raw(path: Path, fmt: str, **kwargs):
    mne = mne_module()
    try:
        return mne.io.read_raw(path, preload=False, verbose="error", **kwargs)
    except Exception as e:  # MNE raises many kinds for bad headers
        needs = re.search(r"the module ([\w.-]+)\S* is needed", str(e))  # mne.utils._soft_import's RuntimeError
        if isinstance(e, ImportError) or needs:
            package = needs.group(1) if needs else getattr(e, "name", None) or "?"
            raise _err(path, f"MNE needs the package {package} to read {fmt} files (pip install {package})") \
                from None
        raise _err(path, f"not readable as {fmt} by MNE ({_mne_said(e)})") from None


class ClinicalRecording:
    """An opened recording (header only): its channels, rate, segments and annotations; `blocks` / `read` give
    (n, 19) float32 µV at 200 Hz of one segment, read lazily. Build it with `open_recording`."""

    def __init__(self, path: Path, fmt: str, labels: tuple[str, ...], channels: ChannelMatch, source_fs: float,
                 meas_date: datetime | None, groups: list[_Group], spans: list[tuple[float, float]],
                 starts_s: list[float], annotations: tuple[Annotation, ...], steps: list[str]):
        self.path, self.format, self.labels, self.channels = path, fmt, labels, channels
        self.source_fs, self.meas_date, self.annotations = source_fs, meas_date, annotations
        self._groups, self._spans = groups, spans  # spans: (start, stop) seconds on MNE's data axis
        samples = [min(output_length(int(np.subtract(*self._span_samples(g, s)[::-1])), *rate_ratio(g.fs))
                       for g in groups) for s in spans]
        self.segments = tuple(Segment(i, start, n) for i, (start, n) in enumerate(zip(starts_s, samples)))
        self.steps = tuple(steps)

    @staticmethod
    def _span_samples(group: _Group, span: tuple[float, float]) -> tuple[int, int]:
        return round(span[0] * group.fs), round(span[1] * group.fs)

    def __repr__(self) -> str:
        return (f"ClinicalRecording({str(self.path)!r}, {self.format}, {self.source_fs:g} Hz, "
                f"{len(self.segments)} segment(s), missing={list(self.channels.missing)})")

    def blocks(self, segment: int, start: int = 0, stop: int | None = None,
               block: int = int(RECORDING_BLOCK_S * EEG_FS)) -> Iterator[np.ndarray]:
        """Consecutive (n, 19) float32 µV arrays at 200 Hz covering samples [start, stop) of segment `segment`
        (stop None: its end), `block` samples each (the last one shorter); all-NaN columns for missing electrodes."""
        seg = self.segments[segment]
        stop = seg.samples if stop is None else min(int(stop), seg.samples)
        if not 0 <= start <= stop or block < 1:
            raise ValueError(f"samples [{start}, {stop}) in blocks of {block}: outside segment {segment} "
                             f"(0 .. {seg.samples})")
        streams = [self._stream(g, self._spans[segment], start, stop, block) for g in self._groups]
        for parts in zip(*streams):
            out = np.full((len(parts[0]), len(ELECTRODES)), np.nan, np.float32)
            for g, part in zip(self._groups, parts):
                out[:, g.columns] = part
            yield out

    def read(self, segment: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(stop - start, 19) float32 µV at 200 Hz: samples [start, stop) of a segment (the blocks joined)."""
        parts = list(self.blocks(segment, start, stop))
        return np.concatenate(parts) if parts else np.empty((0, len(ELECTRODES)), np.float32)

    def _get(self, group: _Group, a: int, b: int) -> np.ndarray:
        """Raw samples [a, b) of a group's channels: (b - a, C) float64 µV."""
        try:
            x = group.raw.get_data(picks=group.picks, start=a, stop=b)
        except Exception as e:
            raise _err(self.path, f"MNE failed reading samples {a}..{b} ({_mne_said(e)})") from None
        return x.T * group.scale

    def _stream(self, group: _Group, span: tuple[float, float], start: int, stop: int,
                block: int) -> Iterator[np.ndarray]:
        """(block, C) float32 µV at 200 Hz of one group, samples [start, stop) of the span, the last one shorter."""
        a, b = self._span_samples(group, span)
        r = Resampler(group.fs, b - a, start, stop)
        chunk = max(1, math.ceil(block * r.down / r.up))
        pending: list[np.ndarray] = []
        have, k = 0, r.input_start
        while k < r.input_stop:
            out = r.push(self._get(group, a + k, a + min(k + chunk, r.input_stop)))
            k = min(k + chunk, r.input_stop)
            pending.append(out.astype(np.float32))
            have += len(out)
            while have >= block:
                joined = np.concatenate(pending)
                yield joined[:block]
                pending, have = [joined[block:]], have - block
        if have:
            yield np.concatenate(pending)


_TAL = re.compile(rb"([+-]\d+(?:\.\d*)?)(?:\x15(\d+(?:\.\d*)?))?\x14(.*?)\x14\x00", re.DOTALL)


def _tal_annotations(tals: bytes, origin: float) -> tuple[Annotation, ...]:
    """EDF+ TAL bytes -> the annotations with a text (not the records' time-keeping ones), onsets - origin."""
    out = []
    for onset, duration, texts in _TAL.findall(tals):
        for text in texts.split(b"\x14"):
            if text:
                out.append(Annotation(float(onset) - origin, float(duration or 0.0),
                                      text.decode("utf-8", errors="replace")))
    return tuple(out)


def _edf_records(path: Path, header: _EdfHeader, n_records: int) -> tuple[np.ndarray, bytes]:
    """Every data record's time-keeping TAL onset (n_records,) and the annotation signal's bytes, all records
    joined (one small read per record)."""
    ann = header.annotation_signal
    if ann is None:
        raise ValueError("no 'EDF Annotations' signal in an EDF+ file")
    record_bytes = sum(header.samples_per_record) * header.sample_bytes
    ann_offset = sum(header.samples_per_record[:ann]) * header.sample_bytes
    ann_bytes = header.samples_per_record[ann] * header.sample_bytes
    onsets, tals = np.empty(n_records), []
    with open(path, "rb") as f:
        for r in range(n_records):
            f.seek(header.header_bytes + r * record_bytes + ann_offset)
            tal = f.read(ann_bytes)
            hit = _TAL_ONSET.match(tal)
            if hit is None:
                raise ValueError(f"data record {r} has no time-keeping TAL")
            onsets[r] = float(hit.group(1))
            tals.append(tal)
    return onsets, b"".join(tals)


def _edf_units(path: Path, header: _EdfHeader, signals: list[int], names: list[str]) -> tuple[np.ndarray, str]:
    """The factor that corrects MNE's scaling of each EDF signal to volts (MNE: `uV`/`µV` 1e-6, `mV` 1e-3, else 1)
    and a note of the dimensions; an error for a dimension that is not a voltage."""
    mne_factor = {"\u03bcV": 1e-6, "\u00b5V": 1e-6, "\x83\xcaV": 1e-6, "uV": 1e-6, "mV": 1e-3}
    true_factor = {"uv": 1e-6, "\u00b5v": 1e-6, "\u03bcv": 1e-6, "\x83\xcav": 1e-6, "mv": 1e-3, "v": 1.0, "nv": 1e-9}
    dims = [header.dimensions[i] for i in signals]
    bad = [f"{n} ({d!r})" for n, d in zip(names, dims) if d.casefold() not in true_factor]
    if bad:
        raise _err(path, f"electrode channel(s) {', '.join(bad)} have a physical dimension that is not a voltage "
                         f"(uV, mV, V, nV): cannot convert to µV")
    fix = np.array([true_factor[d.casefold()] / mne_factor.get(d, 1.0) for d in dims])
    return fix, "/".join(dict.fromkeys(dims))


def _flat(rec_path: Path, group: _Group) -> list[bool]:
    """Per channel of the group: flat (max == min) or all-NaN in every one of the evenly spread check spans."""
    n = group.raw.n_times
    span = max(1, min(n, round(RECORDING_CHECK_SPAN_S * group.fs)))
    flat = np.ones(len(group.picks), bool)
    for a in np.unique(np.linspace(0, n - span, RECORDING_CHECK_SPANS).round().astype(int)):
        try:
            x = group.raw.get_data(picks=group.picks, start=int(a), stop=int(a) + span)
        except Exception as e:
            raise _err(rec_path, f"MNE failed reading samples {a}..{a + span} ({_mne_said(e)})") from None
        finite = np.isfinite(x)
        lo = np.where(finite, x, np.inf).min(axis=1)
        hi = np.where(finite, x, -np.inf).max(axis=1)
        flat &= ~finite.any(axis=1) | (hi == lo)
    return flat.tolist()


def _short(found: Mapping[str, str]) -> str:
    return ", ".join(e if label == e else f"{e}={label}" for e, label in found.items())


def open_recording(path: str | Path, *, channel_map: Mapping[str, str] | str | Path | None = None,
                   allow_missing: bool = False, invert_polarity: bool = False) -> ClinicalRecording:
    """Open a recording MNE reads (header only) as the 19 electrodes in µV at 200 Hz: its channels matched
    (`channel_map`: a mapping or a YAML file), units, rates, segments and annotations checked and listed in
    `.steps`. Errors (`HMSInputError`, one line starting with the path): file missing, unsupported or unreadable,
    no EEG channel, missing (unless `allow_missing`) or flat electrodes, a rate below `RECORDING_MIN_FS`, a
    unit that is not a voltage, less than 50 s of signal."""
    mne = mne_module()

    path = Path(path)
    if not path.exists():
        raise _err(path, "recording not found")
    suffix = _suffix(path)
    fmt = FORMATS.get(suffix)
    if fmt is None:
        raise _err(path, f"unsupported file type {suffix or '(no suffix)'!r} (recordings: {', '.join(FORMATS)})")
    if isinstance(channel_map, (str, Path)):
        channel_map = load_channel_map(channel_map)
    raw = _open_raw(path, fmt)
    labels = tuple(raw.ch_names)
    match = match_channels(labels, channel_map, allow_missing, source=str(path))
    steps = [f"read {path.name} with MNE {mne.__version__} ({fmt}, {len(labels)} channels, "
             f"{raw.info['sfreq']:g} Hz, {raw.n_times} samples), lazily in blocks of {RECORDING_BLOCK_S:g} s"]
    cols = [e for e, i in enumerate(match.picks) if i is not None]
    header = _read_header(path, fmt) if fmt in ("EDF", "BDF") else None
    sign = -1.0 if invert_polarity else 1.0
    groups, unit_note = _groups(path, fmt, raw, header, match, cols, sign)
    steps.append(f"electrodes: {_short(match.found)}"
                 + (f"; ignored: {', '.join(match.ignored)}" if match.ignored else "")
                 + (f"; missing (NaN): {', '.join(match.missing)}" if match.missing else ""))
    steps.append(f"units: MNE's volts x 1e6 -> µV ({unit_note})")
    steps.append("polarity inverted: every electrode x -1 (--invert-polarity)" if invert_polarity
                 else "polarity as recorded (not inverted)")
    if header is not None and (held := round(raw.n_times / (raw.info["sfreq"] * header.record_s))) != \
            header.n_records:
        steps.append(f"the header says {header.n_records} data records, the file holds {held} (cut short?): "
                     f"read those")
    match, groups = _drop_flat(path, match, groups, allow_missing, steps)
    for g in groups:
        if g.fs < RECORDING_MIN_FS:
            raise _err(path, f"sampling rate {g.fs:g} Hz is below {RECORDING_MIN_FS:g} Hz: too low for the "
                             f"200-Hz signal the models need")
        steps.append(f"resampled {_names(g)}: {Resampler(g.fs, 1).describe()}")
    spans, starts, offset_s, annotations, how = _segments(path, raw, header)
    date = raw.info["meas_date"]
    meas_date = None if date is None else date + timedelta(seconds=raw.first_time + offset_s)
    rec = ClinicalRecording(path, fmt, labels, match, float(max(g.fs for g in groups)), meas_date, groups, spans,
                            starts, annotations, steps)
    total = sum(s.samples for s in rec.segments)
    if total < EEG_WINDOW:
        raise _err(path, f"{total / EEG_FS:.1f} s of signal: shorter than one {EEG_WINDOW / EEG_FS:g}-s window")
    rec.steps += (f"{len(rec.segments)} segment(s) ({how}): "
                  + ", ".join(f"{s.start_s:g} s + {s.duration_s:g} s" for s in rec.segments),)
    logger.debug("%s: %s", path, "; ".join(rec.steps[1:]))
    return rec


def _read_header(path: Path, fmt: str) -> _EdfHeader:
    try:
        return _read_edf_header(path, fmt == "BDF")
    except (ValueError, OSError) as e:
        raise _err(path, f"malformed {fmt} header ({_mne_said(e)})") from None


def _names(group: _Group) -> str:
    return " ".join(ELECTRODES[c] for c in group.columns) if len(group.columns) < len(ELECTRODES) else "all"


def _groups(path: Path, fmt: str, raw, header: _EdfHeader | None, match: ChannelMatch, cols: list[int],
            sign: float) -> tuple[list[_Group], str]:
    """The electrodes grouped by rate, each group with the raw to read it from, and a note of the units."""
    picks = [match.picks[c] for c in cols]
    names = [raw.ch_names[i] for i in picks]
    bad = [f"{n} ({raw.info['chs'][i]['unit']})" for n, i in zip(names, picks)
           if raw.info["chs"][i]["unit"] != _FIFF_UNIT_V]
    if bad:
        raise _err(path, f"electrode channel(s) {', '.join(bad)} are not in volts according to MNE (FIFF unit "
                         f"code shown): cannot convert to µV")
    if header is None:
        return [_Group(raw, float(raw.info["sfreq"]), cols, picks, np.full(len(picks), 1e6 * sign))], \
            "MNE unit V"
    signals = [i for i, label in enumerate(header.labels) if label not in _TAL_LABELS]  # MNE's channels, in order
    sig = [signals[i] for i in picks]
    fix, dims = _edf_units(path, header, sig, names)
    fs = np.array([header.samples_per_record[s] / header.record_s for s in sig])
    groups = []
    for rate in sorted(set(fs.tolist()), reverse=True):
        member = np.flatnonzero(fs == rate)
        if rate == raw.info["sfreq"]:
            g_raw, g_picks = raw, [picks[m] for m in member]
        else:  # MNE would bring it to the highest rate block by block: open this rate's channels on their own
            wanted = [header.labels[sig[m]] for m in member]
            g_raw = _open_raw(path, fmt, include=wanted)
            try:
                g_picks = [g_raw.ch_names.index(w) for w in wanted]
            except ValueError:
                raise _err(path, f"channels {', '.join(wanted)} at {rate:g} Hz: labels repeated in the file, "
                                 f"cannot be read at their own rate") from None
        groups.append(_Group(g_raw, float(rate), [cols[m] for m in member], g_picks, 1e6 * sign * fix[member]))
    note = f"file dimension {dims}" + (", nV corrected (MNE takes it as V)" if (fix != 1).any() else "")
    if len(groups) > 1:
        note += "; rates " + ", ".join(f"{g.fs:g} Hz ({_names(g)})" for g in groups) + ", each read at its own"
    return groups, note


def _drop_flat(path: Path, match: ChannelMatch, groups: list[_Group], allow_missing: bool,
               steps: list[str]) -> tuple[ChannelMatch, list[_Group]]:
    """The channel check: flat / all-NaN electrodes are an error, or (allow_missing) missing."""
    flat: list[int] = []
    kept = []
    for g in groups:
        is_flat = _flat(path, g)
        flat += [c for c, f in zip(g.columns, is_flat) if f]
        keep = [j for j, f in enumerate(is_flat) if not f]
        if keep:
            kept.append(_Group(g.raw, g.fs, [g.columns[j] for j in keep], [g.picks[j] for j in keep],
                               g.scale[keep]))
    if not flat:
        return match, groups
    what = ", ".join(f"{ELECTRODES[c]} ({match.labels[match.picks[c]]})" for c in sorted(flat))
    spans = f"{RECORDING_CHECK_SPANS} spans of {RECORDING_CHECK_SPAN_S:g} s"
    if not allow_missing or not kept:
        raise _err(path, f"electrode channel(s) {what} flat or NaN in all {spans}"
                         + ("" if kept else ": no usable EEG channel") + ("" if allow_missing else
                                                                         " (--allow-missing: fill them with NaN)"))
    steps.append(f"flat or NaN in all {spans}, treated as missing (NaN): {what}")
    flat_labels = {match.labels[match.picks[c]] for c in flat}
    picks = tuple(None if c in flat else p for c, p in enumerate(match.picks))
    match = dataclasses.replace(
        match, picks=picks, missing=tuple(e for e, p in zip(ELECTRODES, picks) if p is None),
        ignored=tuple(label for label in match.labels if label in flat_labels or label in match.ignored))
    return match, kept


def _segments(path: Path, raw, header: _EdfHeader | None) -> tuple[list[tuple[float, float]], list[float], float,
                                                                     tuple[Annotation, ...], str]:
    """The continuous segments as (start, stop) s on MNE's data axis and their start_s on the file clock, the
    first sample's offset from the header's start time, the annotations (gap marks left out) and how gaps
    were found."""
    sfreq = float(raw.info["sfreq"])
    ann = raw.annotations
    annotations = tuple(Annotation(float(o - raw.first_time), float(d), str(t))
                        for o, d, t in zip(ann.onset, ann.duration, ann.description) if t != GAP_DESCRIPTION)
    if header is not None and header.plus:
        n_records = round(raw.n_times / (sfreq * header.record_s))
        try:
            onsets, tals = _edf_records(path, header, n_records if header.discontinuous else min(1, n_records))
        except (ValueError, OSError) as e:
            raise _err(path, f"malformed EDF+ data record ({_mne_said(e)})") from None
        origin = float(onsets[0]) if len(onsets) else 0.0
        if header.discontinuous:
            runs = _edf_segments(onsets, header.record_s)
            spans = [(a * header.record_s, b * header.record_s) for a, b in runs]
            starts = [float(onsets[a]) - origin for a, _ in runs]
            # MNE drops annotations past its (gapless) data length: the TALs give them all, on the file clock
            return spans, starts, origin, _tal_annotations(tals, origin), "EDF+D record onsets"
        return [(0.0, raw.n_times / sfreq)], [0.0], origin, annotations, "EDF+C: continuous"
    gaps = _gap_spans(raw, raw.n_times, sfreq)
    how = f"between MNE's {GAP_DESCRIPTION} annotations" if len(gaps) > 1 or (gaps and gaps[0] != (0, raw.n_times)) \
        else "continuous"
    return [(a / sfreq, b / sfreq) for a, b in gaps], [a / sfreq for a, _ in gaps], 0.0, annotations, how


@dataclass
class RecordingData:
    """A whole recording in memory: `segments[i]` (n_i, 19) float32 µV at 200 Hz of `recording.segments[i]`."""

    recording: ClinicalRecording
    segments: list[np.ndarray]


def read_recording(path: str | Path, *, channel_map: Mapping[str, str] | str | Path | None = None,
                   allow_missing: bool = False, invert_polarity: bool = False) -> RecordingData:
    """The whole file (for notebooks): returns the 19 electrodes (`ELECTRODES` order, all-NaN columns for missing
    ones) in µV at 200 Hz, one (n, 19) float32 array per continuous segment; `.recording.steps` says what was done
    (channels, units, polarity, resampling, segments). Options and errors as `open_recording`."""
    rec = open_recording(path, channel_map=channel_map, allow_missing=allow_missing, invert_polarity=invert_polarity)
    return RecordingData(rec, [rec.read(s.index) for s in rec.segments])


def find_recordings(folder: str | Path) -> list[Path]:
    """Every recording MNE reads in `folder` (not recursive), sorted: files with a `FORMATS` suffix (any case;
    `.mff` folders), a `.eeg` only when no `.vhdr`/`.vmrk` of its stem is beside it (then it is BrainVision's data
    file, read through the `.vhdr`), MNE's `*annot.fif` annotation files left out. An error if there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise _err(folder, "recording folder not found" if not folder.exists() else "not a folder")
    names = {p.name.lower() for p in folder.iterdir()}
    found = []
    for p in sorted(folder.iterdir()):
        suffix = _suffix(p)
        if suffix not in FORMATS or p.is_dir() != (suffix == ".mff"):
            continue
        stem = p.name[:-len(suffix)].lower()
        if suffix == ".eeg" and {f"{stem}.vhdr", f"{stem}.vmrk"} & names:
            continue
        if suffix in (".fif", ".fif.gz") and stem.endswith("annot"):
            continue
        found.append(p)
    if not found:
        raise _err(folder, f"no recording in this folder (suffixes read: {', '.join(FORMATS)})")
    return found
