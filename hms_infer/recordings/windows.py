"""A clinical recording's windows, streamed: each segment read once, in blocks, never whole.

A run's work is cut into *units*: windows [first, first + count) of one segment of one file (at most
`RECORDING_CHUNK_WINDOWS`), the resumable parts of `timeline --recording`. DataLoader worker w takes a contiguous
run of units, reads the segment from the first sample its first unit needs and keeps only a sliding buffer: the
next windows' 50 s (and, with the multitaper spectrogram, the 10 minutes of frames around them), so memory does not
grow with the recording's length. Batches never span two units, so the numbers do not depend on the workers.

Each window is preprocessed as a Kaggle window (`preprocess.eeg_electrodes`; the spectrogram, when there is one,
`preprocess.spectrogram_image` of the multitaper frames, `multitaper.window_first_frame`'s centring); without a
spectrogram (`--heads eeg`) the spectrogram input is zeros, which the EEG-only heads never see.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..constants import (
    EEG_FS, EEG_WINDOW, ELECTRODES, RECORDING_BLOCK_S, SPECT_CHANNELS, SPECT_FRAMES, SPECT_FREQS, SPECT_REGIONS,
)
from ..errors import HMSInputError
from ..preprocess import eeg_electrodes, spectrogram_image
from ..timeline import RECORDING_QUALITY_COLUMNS as QUALITY
from ..timeline import eeg_quality
from .multitaper import FRAME_LENGTH, FRAME_STEP, frame_count, multitaper_frames, window_first_frame, window_frames
from .reader import ClinicalRecording, open_recording



@dataclass(frozen=True)
class ReadOptions:
    """How every file of a run is opened (`reader.open_recording`'s options)."""

    channel_map: Mapping[str, str] | None = None
    allow_missing: bool = False
    invert_polarity: bool = False

    def open(self, path: Path) -> ClinicalRecording:
        return open_recording(path, channel_map=self.channel_map, allow_missing=self.allow_missing,
                              invert_polarity=self.invert_polarity)


@dataclass(frozen=True)
class Unit:
    """Windows [first, first + count) of segment `segment` of file `file` (positions in the run's lists)."""

    file: int
    segment: int
    first: int
    count: int


@dataclass
class Piece:
    """What a worker sends for windows [first, first + n) of unit `unit`: their offsets (n,) in the segment,
    quality (n, 4) (`QUALITY`) and the seconds spent reading (+ resampling) and preprocessing for them; or, for a
    unit whose file failed while being read (a damaged data record, say), `error` (one line) and no windows."""

    unit: int
    first: int
    offset_s: np.ndarray
    quality: np.ndarray
    read_s: float = 0.0
    prep_s: float = 0.0
    error: str | None = None


class SignalBuffer:
    """A sliding stretch [start, start + len) of a segment's (n, 19) signal, filled block by block from
    `ClinicalRecording.blocks`; the frames of the multitaper spectrogram computed from it as it goes."""

    def __init__(self, recording: ClinicalRecording, segment: int, start: int, spectrogram: bool):
        self.samples = recording.segments[segment].samples
        self.blocks = recording.blocks(segment, start=start, block=int(RECORDING_BLOCK_S * EEG_FS))
        self.start = start
        self.data = np.zeros((0, len(ELECTRODES)), np.float32)
        self.read_s = 0.0
        self.spectrogram = spectrogram
        self.frames_total = frame_count(self.samples)
        self.frame_first = -(-start // FRAME_STEP)  # the first frame that lies wholly in the buffer
        self.frames = np.zeros((0, len(SPECT_REGIONS), SPECT_FREQS), np.float32)

    @property
    def stop(self) -> int:
        return self.start + len(self.data)

    def fill(self, stop: int) -> None:
        """Read until the buffer reaches sample `stop` (or the segment's end), then compute the frames it allows."""
        stop = min(stop, self.samples)
        while self.stop < stop:
            t = time.perf_counter()
            block = next(self.blocks, None)
            self.read_s += time.perf_counter() - t
            if block is None:
                break
            self.data = np.concatenate([self.data, block]) if len(self.data) else block
        if self.spectrogram:
            self._frames()

    def _frames(self) -> None:
        done = self.frame_first + len(self.frames)
        last = min((self.stop - FRAME_LENGTH) // FRAME_STEP, self.frames_total - 1)
        if last >= done:
            a = done * FRAME_STEP - self.start
            new = multitaper_frames(self.data[a:a + (last - done) * FRAME_STEP + FRAME_LENGTH])
            self.frames = np.concatenate([self.frames, new]) if len(self.frames) else new

    def drop(self, before: int, frame_before: int) -> None:
        """Forget the samples before `before` and the frames before `frame_before` (at most what was read: the
        blocks go on from there, so samples not needed are still read in order)."""
        before = min(before, self.stop)
        if before > self.start:
            self.data = self.data[before - self.start:].copy()
            self.start = before
        if frame_before > self.frame_first:
            self.frames = self.frames[frame_before - self.frame_first:].copy()
            self.frame_first = frame_before

    def window(self, start: int) -> np.ndarray:
        """(10000, 19) raw samples [start, start + 10000) (the buffer holds them)."""
        return self.data[start - self.start:start - self.start + EEG_WINDOW]

    def spectrogram_window(self, offset_s: float) -> tuple[np.ndarray, int]:
        """The (300, 4, 100) multitaper window of the EEG window at `offset_s` and its padded frames
        (`multitaper.window_frames`)."""
        return window_frames(self.frames, offset_s, self.frame_first, self.frames_total)


def needed(start: int, spectrogram: bool) -> tuple[int, int]:
    """Samples [lo, hi) the window starting at sample `start` needs: its 50 s and, with the multitaper spectrogram,
    the frames of its 300 (from the segment's frame grid)."""
    if not spectrogram:
        return start, start + EEG_WINDOW
    j0 = window_first_frame(start / EEG_FS)
    return (max(min(start, j0 * FRAME_STEP), 0),
            max(start + EEG_WINDOW, (j0 + SPECT_FRAMES - 1) * FRAME_STEP + FRAME_LENGTH))


@dataclass
class WindowStream(IterableDataset):
    """The windows of `units` of `paths` (every `step` samples), in batches of `batch_size` that never span two
    units: `(Piece, electrodes (n, 19, 10000), spect (n, 10, 300, 100))`. Worker w of W takes units
    [w U / W, (w + 1) U / W), in order; consecutive units of one segment share its buffer (one pass). A unit whose
    file fails while it is read is one `Piece` with its `error` (and None tensors), and so is each later unit of
    that file (not read); the worker goes on with the other files."""

    paths: Sequence[Path]
    options: ReadOptions
    units: Sequence[Unit]
    step: int
    batch_size: int
    spectrogram: bool
    _open: dict = field(default_factory=dict, repr=False)

    def __iter__(self) -> Iterator[tuple[Piece, torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        w, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        n = len(self.units)
        buffer, at = None, None  # at: (file, segment, next unit's first window) the buffer continues into
        failed: dict[int, str] = {}  # file -> its error: its other units are not read
        for i in range(w * n // workers, (w + 1) * n // workers):
            unit = self.units[i]
            if unit.file in failed:
                yield Piece(i, 0, np.zeros(0), np.zeros((0, len(QUALITY))), error=failed[unit.file]), None, None
                continue
            try:
                if at != (unit.file, unit.segment, unit.first):
                    recording = self._recording(unit.file)
                    lo, _ = needed(unit.first * self.step, self.spectrogram)
                    buffer = SignalBuffer(recording, unit.segment, lo, self.spectrogram)
                yield from self._unit(i, unit, buffer)
                at = (unit.file, unit.segment, unit.first + unit.count)
            except HMSInputError as e:
                at, failed[unit.file] = None, str(e)
                yield Piece(i, 0, np.zeros(0), np.zeros((0, len(QUALITY))), error=str(e)), None, None

    def _recording(self, file: int) -> ClinicalRecording:
        if file not in self._open:
            self._open.clear()  # one file open at a time
            self._open[file] = self.options.open(Path(self.paths[file]))
        return self._open[file]

    def _unit(self, i: int, unit: Unit, buffer: SignalBuffer) -> Iterator[tuple[Piece, torch.Tensor, torch.Tensor]]:
        missing = sum(p is None for p in self._recording(unit.file).channels.picks)
        zeros = None if self.spectrogram else np.zeros((SPECT_CHANNELS, SPECT_FRAMES, SPECT_FREQS), np.float32)
        for a in range(unit.first, unit.first + unit.count, self.batch_size):
            b = min(a + self.batch_size, unit.first + unit.count)
            read0 = buffer.read_s
            t = time.perf_counter()
            electrodes = np.empty((b - a, len(ELECTRODES), EEG_WINDOW), np.float32)
            images = np.empty((b - a, SPECT_CHANNELS, SPECT_FRAMES, SPECT_FREQS), np.float32)
            quality = np.zeros((b - a, len(QUALITY)))
            for j, k in enumerate(range(a, b)):  # window by window: the buffer holds one window's needs
                start = k * self.step
                buffer.fill(needed(start, self.spectrogram)[1])
                raw = buffer.window(start)
                electrodes[j] = eeg_electrodes(raw)
                quality[j, :2] = eeg_quality(raw)
                if self.spectrogram:
                    window, quality[j, 2] = buffer.spectrogram_window(k * self.step / EEG_FS)
                    images[j] = spectrogram_image(window)
                else:  # no spectrogram: all of its frames absent
                    images[j], quality[j, 2] = zeros, SPECT_FRAMES
                quality[j, 3] = missing
                nxt = start + self.step
                buffer.drop(needed(nxt, self.spectrogram)[0], window_first_frame(nxt / EEG_FS))
            read_s = buffer.read_s - read0
            prep_s = time.perf_counter() - t - read_s
            offsets = np.arange(a, b) * self.step / EEG_FS
            yield (Piece(i, a - unit.first, offsets, quality, read_s, prep_s), torch.from_numpy(electrodes),
                   torch.from_numpy(images))
