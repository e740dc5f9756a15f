"""Whole recordings: the ensemble's prediction for every 50-s window along an EEG, each file read once.

A recording is one `eeg_id` of a competition table. Window k starts at EEG sample k x stride x 200 (offset
k x stride s), for every k whose window lies inside the EEG: floor((length - 50) / stride) + 1 windows (length =
rows / 200 s). A recording shorter than 50 s has one window at 0, NaN-padded as the main command pads (`short`).
Train split: a window's spectrogram offset is its EEG offset plus the recording's shift
(spectrogram_label_offset_seconds - eeg_label_offset_seconds, the same in every label row of the eeg_id, as is its
spectrogram_id: rows that disagree are an error naming them), and every labelled offset off that grid is a window
too, with its row's own offsets (its EEG from sample `data.eeg_start`, int(offset x 200), as on the grid): the
prediction at a labelled window is exactly the one `predict` gives that row. Spectrogram windows that run off the
file are NaN-padded as usual and counted. Test split: one window per recording, its first row's own (what `predict`
sees: the table's offsets if it has them, else the centre).

Each window is cut from the recording read once (`data.read_eeg_recording` / `read_spectrogram_recording`, then
`cut_eeg` / `cut_spectrogram`: the main command's own functions) and preprocessed as the main command does, so its
model inputs are those of a test row holding the same window. DataLoader workers take whole recordings (recording i
to worker i mod W) and yield batches that never span two recordings, so the batches, hence the numbers, do not
depend on the number of workers; the batches go through `Ensemble.stream_logits`, the main command's path.

`heads="eeg"` predicts from the two EEG-only heads (`window_probabilities`); `spectrogram="multitaper"` replaces the
spectrogram file by the multitaper spectrogram of the recording's own EEG (`recordings.multitaper`), each window's
300 frames centred on its 50 s. Clinical files (EDF, BDF, ...) stream through `recordings.windows` instead.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm

from .blending import blend, eeg_heads
from .constants import (
    EEG_FS, EEG_WINDOW, ELECTRODES, HEAD_CHOICES, SPECT_FRAMES, SPECT_FREQS, SPECT_REGIONS, SPECTROGRAM_SOURCES,
    SUBMISSION_ORDER, TIMELINE_SHIFT_TOLERANCE_S, TIMELINE_STRIDE_S, VOTE_COLUMNS,
)
from .data import (
    Competition, cut_eeg, cut_spectrogram, eeg_start, read_eeg_recording, read_spectrogram_recording,
    spectrogram_offset, spectrogram_start,
)
from .errors import HMSInputError, UnusableInput
from .loader import resolve_workers, worker_died
from .metric import kl_divergence, no_votes, vote_probabilities
from .preprocess import eeg_electrodes, spectrogram_image
from .recordings.multitaper import multitaper_frames, window_frames
from .runtime import RunStats

if TYPE_CHECKING:
    from .ensemble import Ensemble

log = logging.getLogger(__name__)
QUALITY_COLUMNS = ("eeg_nan_share", "flat_channels", "spect_padded_frames")
# a clinical recording's windows (`timeline --recording`) also count the electrodes the file lacks (NaN)
RECORDING_QUALITY_COLUMNS = (*QUALITY_COLUMNS, "missing_channels")
SKIPPED, DEGRADED, SHORT = "skipped", "degraded", "short"  # a recording's flags (none: "ok")


@dataclass(frozen=True)
class Label:
    """One label row of a recording: its table position, offsets and (6,) normalised votes in submission order
    (None when the table has no votes, or this row has none)."""

    row: int
    label_id: int
    offset_s: float
    spectrogram_offset_s: float
    votes: tuple[float, ...] | None


@dataclass(frozen=True)
class Recording:
    """One eeg_id: its spectrogram, shift (train; None on the test split: the row's own window) and label rows;
    on the test split the first row's EEG and spectrogram offsets (None: the table has none, the centre)."""

    eeg_id: int
    spectrogram_id: int
    shift_s: float | None
    labels: tuple[Label, ...] = ()
    eeg_offset_s: float | None = None
    spectrogram_offset_s: float | None = None


@dataclass(frozen=True)
class Windows:
    """A recording's windows, ascending: start (W,) first EEG samples, offset_s (W,) EEG offsets, spect_offset_s (W,)
    spectrogram offsets (s)."""

    start: np.ndarray
    offset_s: np.ndarray
    spect_offset_s: np.ndarray


@dataclass
class Piece:
    """What a worker sends for windows [first, first + n) of recording `index`: offsets (n,), quality (n, 3) (see
    `QUALITY_COLUMNS`) and the time it took to cut and preprocess them. The first piece of a recording also carries
    its sample count, read time, flags and notes; a recording without usable EEG is one piece of 0 windows."""

    index: int
    first: int
    windows: int  # of the whole recording
    offset_s: np.ndarray
    quality: np.ndarray
    prep_s: float = 0.0
    rows: int | None = None
    read_s: float = 0.0
    flags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass
class TimelineStats(RunStats):
    """`RunStats` plus the workers' input time: parquet reads, and cutting + preprocessing windows."""

    read_s: float = 0.0
    prep_s: float = 0.0


@dataclass
class RecordingResult:
    """A recording's windows as a frame (`frame_columns`) and its summary (JSON-able: `summarise`)."""

    recording: Recording
    frame: pd.DataFrame
    summary: dict = field(default_factory=dict)


def stride_samples(stride: float) -> int:
    """The stride in EEG samples; it must be a positive multiple of one sample (0.005 s)."""
    samples = float(stride) * EEG_FS if isinstance(stride, (int, float)) else math.nan
    if not math.isfinite(samples) or samples < 1 or abs(samples - round(samples)) > 1e-6 * samples:
        raise HMSInputError(f"--stride must be a positive multiple of {1 / EEG_FS} s (one EEG sample), got {stride!r}")
    return int(round(samples))


def window_count(n_rows: int, step: int) -> int:
    """Grid windows of an n_rows EEG at a stride of `step` samples: floor((length - 50) / stride) + 1, 1 when
    shorter than 50 s."""
    return (n_rows - EEG_WINDOW) // step + 1 if n_rows >= EEG_WINDOW else 1


def plan_windows(rec: Recording, n_rows: int, step: int, time: np.ndarray | None = None) -> Windows:
    """The windows of `rec` (module docstring). `time`: the spectrogram's frame times (the test split's window
    rule; None without a usable spectrogram)."""
    if rec.shift_s is None:
        start = eeg_start(rec.eeg_offset_s, n_rows)
        offset = start / EEG_FS if rec.eeg_offset_s is None else rec.eeg_offset_s
        spect = math.nan if time is None else float(spectrogram_offset(rec.spectrogram_offset_s, time))
        return Windows(np.array([start]), np.array([offset]), np.array([spect]))
    start = np.arange(window_count(n_rows, step), dtype=np.int64) * step
    offset = start / EEG_FS
    spect = offset + rec.shift_s
    grid = {o: k for k, o in enumerate(offset.tolist())}
    own = {}
    for lab in rec.labels:
        own.setdefault(lab.offset_s, lab.spectrogram_offset_s)
    for o, s in own.items():
        if o in grid:  # predict's start: int(o x 200) may be a sample before k x step (4.6 x 200 = 919.99...)
            start[grid[o]] = eeg_start(o, n_rows)
            spect[grid[o]] = s
    extra = sorted(o for o in own if o not in grid)
    if extra:
        start = np.concatenate([start, [eeg_start(o, n_rows) for o in extra]])
        offset = np.concatenate([offset, extra])
        spect = np.concatenate([spect, [own[o] for o in extra]])
        order = np.argsort(offset, kind="stable")
        start, offset, spect = start[order], offset[order], spect[order]
    return Windows(start, offset, spect)


def eeg_quality(raw: np.ndarray) -> tuple[float, int]:
    """(T, 19) raw window -> (share of NaN samples, channels without variation: constant or no finite value)."""
    nan = np.isnan(raw)
    lo = np.where(nan, np.inf, raw).min(axis=0)
    hi = np.where(nan, -np.inf, raw).max(axis=0)
    return float(nan.mean()), int((~(hi > lo)).sum())


def plan_recordings(comp: Competition, eeg_ids: Sequence[int] | None = None) -> list[Recording]:
    """The recordings of `eeg_ids` (in that order, without repeats; None: every eeg_id of the table, ascending).
    An unknown eeg_id, or two rows of one eeg_id that disagree on the spectrogram_id or (train) on the shift, are an
    `HMSInputError` naming them. A label row without votes (all six zero) keeps its window, with `votes` None (no
    KL); one warning names the first such row of these recordings and counts them."""
    table = comp.table.reset_index(drop=True)
    name = str(comp.root / comp.table_name)
    positions: dict[int, list[int]] = {}
    for i, e in enumerate(table["eeg_id"].tolist()):
        positions.setdefault(int(e), []).append(i)
    wanted = sorted(positions) if eeg_ids is None else list(dict.fromkeys(int(e) for e in eeg_ids))
    for e in wanted:
        if e not in positions:
            raise HMSInputError(f"--eeg-id {e}: no row of {name} has this eeg_id")
    train = comp.split == "train"
    if train and comp.rows[0].eeg_offset_s is None:
        raise HMSInputError(f"{name}: no eeg_label_offset_seconds and spectrogram_label_offset_seconds columns: the "
                            f"train split's windows need them (the shift of each recording's spectrogram)")
    votes, unvoted = vote_probabilities(table, name) if train and all(c in table.columns for c in VOTE_COLUMNS) \
        else (None, None)
    if unvoted is not None:
        mine = [i for e in wanted for i in positions[e]]
        if unvoted[mine].any():
            log.warning(f"{no_votes(name, table.iloc[mine], unvoted[mine])}: its window is predicted, without "
                        f"votes or KL in the summaries")
    out = []
    for e in wanted:
        rows = [comp.rows[i] for i in positions[e]]
        first = rows[0]
        shift = None if not train else first.spectrogram_offset_s - first.eeg_offset_s
        for r in rows[1:]:
            other = None if not train else r.spectrogram_offset_s - r.eeg_offset_s
            if r.spectrogram_id != first.spectrogram_id or (train and abs(other - shift) > TIMELINE_SHIFT_TOLERANCE_S):
                what = (f"spectrogram_id {first.spectrogram_id} vs {r.spectrogram_id}"
                        if r.spectrogram_id != first.spectrogram_id else
                        f"spectrogram_label_offset_seconds - eeg_label_offset_seconds {shift:g} s vs {other:g} s")
                raise HMSInputError(f"{name}: eeg_id {e}: rows {first.index} and {r.index} disagree ({what}); "
                                    f"a recording's windows need one spectrogram and one shift")
        labels = tuple(Label(r.index, r.key, r.eeg_offset_s, r.spectrogram_offset_s,
                             None if votes is None or unvoted[i] else tuple(votes[i].tolist()))
                       for r, i in zip(rows, positions[e])) if train else ()
        own = (None, None) if train else (first.eeg_offset_s, first.spectrogram_offset_s)
        out.append(Recording(e, first.spectrogram_id, shift, labels, *own))
    return out


class RecordingWindows(IterableDataset):
    """Recording i goes to worker i mod W (the main process when W = 0), which reads its two files once, then cuts,
    preprocesses and yields its windows in batches of `batch_size`, never two recordings in one:
    `(Piece, electrodes (n, 19, 10000), spect (n, 10, 300, 100))`, or `(Piece, None, None)` for a recording without
    usable EEG (skipped). An unusable spectrogram gives all-NaN spectrogram windows (the main command's `degraded`)."""

    def __init__(self, comp: Competition, recordings: Sequence[Recording], step: int, batch_size: int,
                 spectrogram: str = "kaggle"):
        self.comp, self.recordings, self.step, self.batch_size = comp, list(recordings), step, batch_size
        self.spectrogram = spectrogram

    def __iter__(self) -> Iterator[tuple[Piece, torch.Tensor | None, torch.Tensor | None]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for i in range(worker, len(self.recordings), workers):
            yield from self.recording(i)

    def recording(self, i: int) -> Iterator[tuple[Piece, torch.Tensor | None, torch.Tensor | None]]:
        rec, comp = self.recordings[i], self.comp
        where = f"{comp.table_name} eeg_id {rec.eeg_id}"
        t0 = time.perf_counter()
        try:
            eeg = read_eeg_recording(comp.eeg_path(rec.eeg_id), where)
        except UnusableInput as e:
            empty = np.zeros(0)
            yield Piece(i, 0, 0, empty, np.zeros((0, len(QUALITY_COLUMNS))), read_s=time.perf_counter() - t0,
                        flags=(SKIPPED,), notes=(f"{e.path}: {e.reason}",)), None, None
            return
        flags, notes = [], []
        frames = multitaper_frames(eeg) if self.spectrogram == "multitaper" else None
        try:
            spect = None if frames is not None else \
                read_spectrogram_recording(comp.spectrogram_path(rec.spectrogram_id), where)
        except UnusableInput as e:
            spect = None
            flags.append(DEGRADED)
            notes.append(f"{e.path}: {e.reason}: predicted from the EEG alone (all-NaN spectrogram windows)")
        read_s = time.perf_counter() - t0
        windows = plan_windows(rec, len(eeg), self.step, None if spect is None else spect[0])
        if frames is not None:  # the test split's window: its EEG offset; the spectrogram follows it
            windows = Windows(windows.start, windows.offset_s, windows.start / EEG_FS)
        if len(eeg) < EEG_WINDOW:
            flags.append(SHORT)
            notes.append(f"{comp.eeg_path(rec.eeg_id)}: {len(eeg)} samples ({len(eeg) / EEG_FS:g} s), shorter than "
                         f"50 s: one window at 0 s, NaN-padded")
        if spect is not None and rec.shift_s is not None:
            end = float(np.nanmax(spect[0]))
            eeg_end = len(eeg) / EEG_FS + rec.shift_s
            if end + 2 < eeg_end:
                notes.append(f"{comp.spectrogram_path(rec.spectrogram_id)}: ends at {end:g} s, before the EEG "
                             f"(its end at {eeg_end:g} s on the spectrogram's clock)")
        n = len(windows.start)
        for a in range(0, n, self.batch_size):
            t = time.perf_counter()
            b = min(a + self.batch_size, n)
            electrodes = np.empty((b - a, len(ELECTRODES), EEG_WINDOW), dtype=np.float32)
            images = []
            quality = np.empty((b - a, len(QUALITY_COLUMNS)))
            for j, k in enumerate(range(a, b)):
                raw = cut_eeg(eeg, int(windows.start[k]))
                electrodes[j] = eeg_electrodes(raw)
                if frames is not None:  # centred on the EEG window (`multitaper.window_frames`)
                    window, padded = window_frames(frames, float(windows.spect_offset_s[k]))
                elif spect is None:
                    window, padded = np.full((SPECT_FRAMES, len(SPECT_REGIONS), SPECT_FREQS), np.nan, np.float32), \
                        SPECT_FRAMES
                else:
                    window, padded = cut_spectrogram(*spect, spectrogram_start(float(windows.spect_offset_s[k])))
                images.append(spectrogram_image(window))
                quality[j] = (*eeg_quality(raw), padded)
            first = a == 0
            piece = Piece(i, a, n, windows.offset_s[a:b], quality, time.perf_counter() - t,
                          rows=len(eeg) if first else None, read_s=read_s if first else 0.0,
                          flags=tuple(flags) if first else (), notes=tuple(notes) if first else ())
            yield piece, torch.from_numpy(electrodes), torch.from_numpy(np.stack(images))


def _as_is(item: object) -> object:
    return item


def frame_columns(member_names: Sequence[str] = ()) -> list[str]:
    """`eeg_id`, `offset_s`, the six probabilities (submission columns), each member's (`<member>/<column>`), then
    the window's input quality (`QUALITY_COLUMNS`)."""
    return ["eeg_id", "offset_s", *VOTE_COLUMNS, *(f"{m}/{c}" for m in member_names for c in VOTE_COLUMNS),
            *QUALITY_COLUMNS]


def window_frame(eeg_id: int, offset_s: np.ndarray, probs: np.ndarray, quality: np.ndarray,
                 member_probs: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """(W,) offsets, (W, 6) probabilities in `CLASSES` order, (W, 3) quality, {member: (W, 6)} -> the frame."""
    cols: dict[str, np.ndarray] = {"eeg_id": np.full(len(offset_s), eeg_id, dtype=np.int64),
                                   "offset_s": np.asarray(offset_s, dtype=np.float64)}
    for name, p in [("", probs), *(member_probs or {}).items()]:
        for j, c in enumerate(VOTE_COLUMNS):
            cols[f"{name}/{c}" if name else c] = np.asarray(p, dtype=np.float64).reshape(-1, 6)[:, SUBMISSION_ORDER[j]]
    cols[QUALITY_COLUMNS[0]] = quality[:, 0].astype(np.float64)
    for k, c in enumerate(QUALITY_COLUMNS[1:], 1):
        cols[c] = quality[:, k].astype(np.int64)
    return pd.DataFrame(cols)


def summarise(rec: Recording, frame: pd.DataFrame, rows: int | None, flags: Sequence[str], notes: Sequence[str]
              ) -> dict:
    """A recording's summary: ids, status (`ok`, or its flags), notes, length, windows, windows with spectrogram
    padding, and per label row its votes, the model's probabilities at its window and their KL divergence, with
    the mean KL and the largest (which label row)."""
    labels = []
    at = dict(zip(frame["offset_s"].tolist(), frame[list(VOTE_COLUMNS)].to_numpy()))
    for lab in rec.labels:
        p = at.get(lab.offset_s)
        kl = None
        if p is not None and lab.votes is not None and np.isfinite(p).all():
            kl = kl_divergence(np.array([lab.votes]), p[None])
        labels.append({"row": lab.row, "label_id": lab.label_id, "offset_s": lab.offset_s,
                       "votes": None if lab.votes is None else list(lab.votes),
                       "probs": None if p is None else p.tolist(), "kl": kl})
    kls = [(lab["kl"], lab) for lab in labels if lab["kl"] is not None]
    worst = max(kls, key=lambda x: x[0])[1] if kls else None
    return {"eeg_id": rec.eeg_id, "spectrogram_id": rec.spectrogram_id, "status": ", ".join(flags) or "ok",
            "notes": list(notes), "rows": rows, "length_s": None if rows is None else rows / EEG_FS,
            "shift_s": rec.shift_s, "windows": len(frame),
            "padded_windows": int((frame[QUALITY_COLUMNS[2]] > 0).sum()), "labels": labels,
            "mean_kl": float(np.mean([k for k, _ in kls])) if kls else None,
            "max_kl": None if worst is None else worst["kl"],
            "max_kl_label_id": None if worst is None else worst["label_id"],
            "max_kl_offset_s": None if worst is None else worst["offset_s"]}


class WindowAccumulator:
    """`count` windows' batches as they arrive, in order (one worker yields them): offsets, quality, probabilities
    and each member's; `add` says when the last one is in."""

    def __init__(self, count: int):
        self.count, self.done = count, 0
        self.offsets: list[np.ndarray] = []
        self.quality: list[np.ndarray] = []
        self.probs: list[np.ndarray] = []
        self.members: list[np.ndarray] = []

    def add(self, offset_s: np.ndarray, quality: np.ndarray, probs: np.ndarray, members: np.ndarray | None) -> bool:
        self.offsets.append(offset_s)
        self.quality.append(quality)
        self.probs.append(probs)
        if members is not None:
            self.members.append(members)
        self.done += len(offset_s)
        return self.done == self.count

    def arrays(self) -> dict[str, np.ndarray]:
        """`offset_s` (W,), `quality` (W, Q), `probs` (W, 6) and, when given, `members` (M, W, 6)."""
        out = {"offset_s": np.concatenate(self.offsets), "quality": np.concatenate(self.quality),
               "probs": np.concatenate(self.probs)}
        if self.members:
            out["members"] = np.concatenate(self.members, axis=1)
        return out


class _Pending(WindowAccumulator):
    """A recording's pieces as they arrive, and its first piece (its sample count, flags, notes)."""

    def __init__(self, first: Piece):
        super().__init__(first.windows)
        self.first = first


def _finish(rec: Recording, first: Piece, pending: _Pending | None, member_names: Sequence[str]) -> RecordingResult:
    if pending is None:
        quality = np.zeros((0, len(QUALITY_COLUMNS)))
        frame = window_frame(rec.eeg_id, np.zeros(0), np.zeros((0, 6)), quality,
                             {m: np.zeros((0, 6)) for m in member_names})
    else:
        got = pending.arrays()
        frame = window_frame(rec.eeg_id, got["offset_s"], got["probs"], got["quality"],
                             dict(zip(member_names, got["members"])) if "members" in got else None)
    result = RecordingResult(rec, frame, summarise(rec, frame, first.rows, first.flags, first.notes))
    padded = result.summary["padded_windows"]
    for note in first.notes:
        log.warning("eeg_id %d: %s", rec.eeg_id, note)
    if padded and SKIPPED not in first.flags:
        log.info("eeg_id %d: %d of %d windows have NaN-padded spectrogram frames (their 10 minutes run off the "
                 "spectrogram file)", rec.eeg_id, padded, len(frame))
    return result


def run_description(ens: Ensemble, batch_size: int) -> str:
    """`M members x V views on <devices> <precision>, batch B`: how a run computed (its summary line)."""
    devices = ",".join(str(d) for d in ens.devices)
    return f"{len(ens.members)} members x {len(ens.views)} views on {devices} {ens.precision}, batch {batch_size}"


def check_heads(heads: str, spectrogram: str) -> None:
    """`heads` one of `HEAD_CHOICES`, `spectrogram` one of `SPECTROGRAM_SOURCES`."""
    if heads not in HEAD_CHOICES:
        raise HMSInputError(f"--heads must be one of {list(HEAD_CHOICES)}, got {heads!r}")
    if spectrogram not in SPECTROGRAM_SOURCES:
        raise HMSInputError(f"--spectrogram must be one of {list(SPECTROGRAM_SOURCES)}, got {spectrogram!r}")


def window_probabilities(ens: Ensemble, logits: torch.Tensor, heads: str = "all", members: bool = False
                         ) -> tuple[np.ndarray, np.ndarray | None]:
    """(M, n, V, 6) `head_all` logits (`heads` = eeg: (M, n, V, 4, 6), every head) -> (n, 6) blended probabilities
    in `CLASSES` order and, with `members`, (M, n, 6) each member's alone. `eeg`: the EEG-only heads
    (`blending.eeg_heads`) blended with the members' weights and the manifest's blend, without the temperatures
    (fitted on `head_all`)."""
    if heads == "eeg":
        logits = eeg_heads(logits)
        temperatures = [1.0] * len(ens.members)
    else:
        temperatures = [m.temperature for m in ens.members]
    probs = blend(logits, [m.weight for m in ens.members], ens.blend_mode, temperatures).numpy()
    each = None
    if members:
        each = np.stack([blend(logits[m:m + 1], [1.0], ens.blend_mode, [t]).numpy()
                         for m, t in enumerate(temperatures)])
    return probs, each


def _results(ens: Ensemble, comp: Competition, recordings: Sequence[Recording], step: int, size: int, workers: int,
             members: bool, stats: TimelineStats, heads: str, spectrogram: str
             ) -> Iterator[tuple[int, RecordingResult]]:
    """`predict_recordings` with `workers` DataLoader workers."""
    cuda = any(d.type == "cuda" for d in ens.devices)
    names = [m.name for m in ens.members] if members else []
    loader = DataLoader(RecordingWindows(comp, recordings, step, size, spectrogram), batch_size=None,
                        num_workers=workers, collate_fn=_as_is, pin_memory=cuda,
                        prefetch_factor=2 if workers else None)
    skipped: list[Piece] = []

    def batches() -> Iterator[tuple[Piece, torch.Tensor, torch.Tensor]]:
        for piece, electrodes, spect in loader:
            stats.read_s += piece.read_s
            stats.prep_s += piece.prep_s
            if electrodes is None:
                skipped.append(piece)
            else:
                yield piece, electrodes, spect

    pending: dict[int, _Pending] = {}
    for piece, logits in ens.stream_logits(batches(), size, stats, heads == "eeg"):
        while skipped:
            p = skipped.pop(0)
            yield p.index, _finish(recordings[p.index], p, None, names)
        probs, each = window_probabilities(ens, logits, heads, members)
        acc = pending.setdefault(piece.index, _Pending(piece))
        if acc.add(piece.offset_s, piece.quality, probs, each):
            del pending[piece.index]
            yield piece.index, _finish(recordings[piece.index], acc.first, acc, names)
    for p in skipped:
        yield p.index, _finish(recordings[p.index], p, None, names)


def predict_recordings(ens: Ensemble, comp: Competition, recordings: Sequence[Recording],
                       stride: float = TIMELINE_STRIDE_S,
                       batch_size: int | str = "auto", num_workers: int | str = "auto", members: bool = False,
                       stats: TimelineStats | None = None, progress: bool = True, heads: str = "all",
                       spectrogram: str = "kaggle") -> Iterator[tuple[int, RecordingResult]]:
    """(position in `recordings`, its result) for each recording, as each completes; a recording without usable EEG
    gives an empty frame and the flag `skipped`. `members`: each member's probabilities too (the ensemble's blend
    of that member alone). `heads`: `all` (head_all) or `eeg` (the EEG-only heads, `window_probabilities`);
    `spectrogram`: `kaggle` (the files') or `multitaper` (rebuilt from the EEG, `recordings.multitaper`). A
    DataLoader worker that dies (killed for memory, say) is replaced by reading the recordings not yet done in this
    process (the same batches, so the same numbers)."""
    step = stride_samples(stride)
    check_heads(heads, spectrogram)
    size = ens.batch_size(batch_size)
    workers = min(resolve_workers(num_workers), len(recordings))
    stats = stats if stats is not None else TimelineStats()
    if recordings and recordings[0].shift_s is None:
        log.info("test split: each recording is one window, the row's own (what predict sees)")
    bar = tqdm(total=len(recordings), desc="hms_infer timeline", unit="recording", disable=not progress)
    done: set[int] = set()
    try:
        try:
            for i, result in _results(ens, comp, recordings, step, size, workers, members, stats, heads,
                                      spectrogram):
                done.add(i)
                bar.update(1)
                yield i, result
            return
        except RuntimeError as e:
            if not worker_died(e, workers, "recordings"):
                raise
        rest = [i for i in range(len(recordings)) if i not in done]
        for k, result in _results(ens, comp, [recordings[i] for i in rest], step, size, 0, members, stats, heads,
                                  spectrogram):
            bar.update(1)
            yield rest[k], result
    finally:
        bar.close()


def recording_timeline(ens: Ensemble, comp: Competition, eeg_id: int, stride: float = TIMELINE_STRIDE_S,
                       members: bool = False,
                       batch_size: int | str = "auto", num_workers: int | str = 0, progress: bool = False,
                       heads: str = "all", spectrogram: str = "kaggle") -> RecordingResult:
    """One recording's result; a recording without usable EEG is an `HMSInputError` saying why."""
    (rec,) = plan_recordings(comp, [eeg_id])
    [(_, result)] = list(predict_recordings(ens, comp, [rec], stride, batch_size, num_workers, members,
                                            progress=progress, heads=heads, spectrogram=spectrogram))
    if SKIPPED in result.summary["status"]:
        raise HMSInputError(f"eeg_id {eeg_id}: no usable EEG: {result.summary['notes'][0]}")
    return result


def timeline_frame(ensemble: Ensemble, competition: Competition, eeg_id: int, stride: float = TIMELINE_STRIDE_S,
                   members: bool = False, batch_size: int | str = "auto", num_workers: int | str = 0,
                   progress: bool = False, heads: str = "all", spectrogram: str = "kaggle") -> pd.DataFrame:
    """The ensemble's prediction along recording `eeg_id`: one row per 50-s window of its EEG every `stride`
    seconds (train split: plus its labelled offsets; test split: the row's own window), with `eeg_id`, `offset_s`,
    the six probabilities (the submission's columns), with `members` each member's (`<member>/<column>`), and the
    window's input quality (`eeg_nan_share`, `flat_channels`, `spect_padded_frames`). Each file is read once.
    `heads`, `spectrogram`: see `predict_recordings`."""
    return recording_timeline(ensemble, competition, eeg_id, stride, members, batch_size, num_workers,
                              progress, heads, spectrogram).frame
