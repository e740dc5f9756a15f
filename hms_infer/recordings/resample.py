"""Any sampling rate -> 200 Hz, block by block, exactly as `scipy.signal.resample_poly` does it in one go.

`resample_poly(x, up, down, axis=0)` (Kaiser window, beta 5.0) upsamples by `up`, low-pass filters with a
2 * half_len + 1 tap FIR (half_len = 10 * max(up, down), cutoff 1 / max(up, down) of the upsampled Nyquist, i.e.
min(fs, 200) / 2 Hz) and keeps every `down`-th sample, the signal being zero outside [0, n). Output sample m is a
sum over the input samples k with n_pre_pad <= (m + n_pre_remove) * down - k * up <= n_pre_pad + 2 * half_len
(scipy's own padding), so it needs about half_len / up input samples either side of m * down / up. `Resampler`
keeps that context between blocks (its buffer starts on a multiple of `down`, so that the polyphase alignment, hence
every product and sum, is the one of the whole-signal call) and never more: the concatenation of its outputs is
`resample_poly` of the whole signal, whatever the block sizes, also when the output starts at a sample `start` > 0
(resuming), the input being read from `Resampler.input_start`.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from ..constants import EEG_FS, RATE_MAX_FACTOR

KAISER_BETA = 5.0  # resample_poly's default window ("kaiser", 5.0)


def rate_ratio(fs: float) -> tuple[int, int]:
    """(up, down), coprime, for resampling `fs` Hz to 200 Hz: exact for a rate with a short decimal form (256 ->
    (25, 32), 500 -> (2, 5), 250 -> (4, 5), 200 -> (1, 1)), else the closest ratio with down <= 1000."""
    if not (fs > 0 and math.isfinite(fs)):
        raise ValueError(f"sampling rate {fs!r} Hz is not a positive number")
    exact = Fraction(EEG_FS) / Fraction(repr(float(fs)))
    ratio = exact if max(exact.numerator, exact.denominator) <= RATE_MAX_FACTOR else exact.limit_denominator(
        RATE_MAX_FACTOR)
    return ratio.numerator, ratio.denominator


def output_length(n_in: int, up: int, down: int) -> int:
    """resample_poly's output length for n_in input samples: ceil(n_in * up / down)."""
    return -(-n_in * up // down)


class Resampler:
    """Resample the input samples [input_start, n_in) of an (n_in, C) signal at `fs` Hz, fed as consecutive
    (n_i, C) blocks to `push`, into the 200-Hz samples [start, stop) of `resample_poly` of the whole signal
    (stop: None = its end, `output_length`). `push` returns each output sample once, as soon as its inputs are in;
    the last block (the one reaching `input_stop`) returns the rest. Outputs are float64 (float32 input is taken as
    float64)."""

    def __init__(self, fs: float, n_in: int, start: int = 0, stop: int | None = None):
        self.fs, self.n_in = float(fs), int(n_in)
        self.up, self.down = rate_ratio(fs)
        self.n_out = output_length(self.n_in, self.up, self.down)
        self.stop = self.n_out if stop is None else min(int(stop), self.n_out)
        if not 0 <= start <= self.stop:
            raise ValueError(f"output start {start} outside [0, {self.stop}]")
        self.identity = self.up == self.down == 1
        self.half_len = 10 * max(self.up, self.down)
        self._pre_pad = self.down - self.half_len % self.down  # scipy's n_pre_pad
        self._pre_remove = (self.half_len + self._pre_pad) // self.down  # scipy's n_pre_remove
        self.next_out = int(start)
        self.input_start = self._buffer_start(self.next_out)
        if self.identity or self.stop >= self.n_out:
            self.input_stop = self.stop if self.identity else self.n_in
        else:
            self.input_stop = min(self.n_in, self._last_input(self.stop - 1) + 1)
        self._buf: np.ndarray | None = None  # input samples [buf_start, have)
        self._buf_start = self._have = self.input_start

    def describe(self) -> str:
        """One line: the ratio and the filter."""
        if self.identity:
            return f"{self.fs:g} Hz: already 200 Hz, not resampled"
        rate = self.fs * self.up / self.down
        exact = "" if abs(rate - EEG_FS) < 1e-9 else f" (effective rate {rate:.6f} Hz: ratio rounded)"
        return (f"{self.fs:g} Hz -> 200 Hz{exact}: scipy resample_poly up {self.up} / down {self.down}, FIR "
                f"{2 * self.half_len + 1} taps at {self.fs * self.up:g} Hz, Kaiser window beta {KAISER_BETA:g}, "
                f"cutoff {min(self.fs, EEG_FS) / 2:g} Hz, zero-phase; signal taken as 0 outside each segment")

    def _first_input(self, m: int) -> int:
        """The first input sample output m uses (can be < 0)."""
        return -(-((m + self._pre_remove) * self.down - self._pre_pad - 2 * self.half_len) // self.up)

    def _last_input(self, m: int) -> int:
        """The last input sample output m uses (can be >= n_in)."""
        return ((m + self._pre_remove) * self.down - self._pre_pad) // self.up

    def _buffer_start(self, m: int) -> int:
        """Where to keep input from for outputs m, m + 1, ...: a multiple of `down` (polyphase alignment) <= the
        first input sample of m, clipped at 0."""
        if self.identity:
            return m
        return max(0, self._first_input(m)) // self.down * self.down

    @property
    def done(self) -> bool:
        return self.next_out >= self.stop

    def push(self, block: np.ndarray) -> np.ndarray:
        """(n_i, C) next input samples -> (m_i, C) next output samples (m_i may be 0)."""
        block = np.asarray(block, dtype=np.float64)
        if block.ndim != 2:
            raise ValueError(f"expected an (n, C) block, got shape {block.shape}")
        if self._have + len(block) > self.input_stop:
            block = block[:self.input_stop - self._have]
        self._have += len(block)
        if self.identity:
            out = block
            self.next_out += len(out)
            return out
        buf = block if self._buf is None else np.concatenate([self._buf, block])
        if self._have >= self.input_stop:
            hi = self.stop  # the signal ends (zeros after n_in) or enough input for the last output wanted
        else:  # outputs whose last input is in
            hi = min(self.stop, -(-(self._have * self.up + self._pre_pad) // self.down) - self._pre_remove)
        out = np.empty((0, buf.shape[1]))
        if hi > self.next_out:
            y = resample_poly(buf, self.up, self.down, axis=0)
            first = self._buf_start * self.up // self.down  # output index of y[0]
            out = y[self.next_out - first:hi - first]
            self.next_out = hi
        keep = self._buffer_start(self.next_out)
        self._buf = buf[keep - self._buf_start:]
        self._buf_start = keep
        return out
