"""`recordings.windows`: the windows streamed from a clinical file, block by block, against the same windows cut
from the whole signal (`ClinicalRecording.read`) and preprocessed with the package's pure functions.

Strides longer than a block, batches that do not divide the blocks, units that continue one another or not, odd
block sizes, two DataLoader workers: every window's model inputs must be those of the whole signal's cut.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

pytest.importorskip("mne")

from hms_infer.constants import ELECTRODES  # noqa: E402
from hms_infer.preprocess import eeg_electrodes, spectrogram_image  # noqa: E402
from hms_infer.recordings import windows as windows_module  # noqa: E402
from hms_infer.recordings.multitaper import multitaper_frames, window_frames  # noqa: E402
from hms_infer.recordings.reader import open_recording  # noqa: E402
from hms_infer.recordings.windows import ReadOptions, Unit, WindowStream  # noqa: E402
from hms_infer.timeline import window_count  # noqa: E402

from .recording_files import write_fif  # noqa: E402

SECONDS = 1500


@pytest.fixture(scope="module")
def path(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    x = rng.normal(0, 30, size=(SECONDS * 200, len(ELECTRODES))).cumsum(axis=0) * 0.05
    x[100_000:100_400, 4] = np.nan  # 2 s of NaN in F7
    return write_fif(tmp_path_factory.mktemp("windows") / "rec.fif", x, ELECTRODES, 200)


def units(n: int, chunk: int, skip: tuple[int, ...] = ()) -> list[Unit]:
    return [u for k, u in enumerate(Unit(0, 0, a, min(chunk, n - a)) for a in range(0, n, chunk)) if k not in skip]


def expected(path: Path, step: int, spectrogram: bool) -> dict[float, tuple[np.ndarray, np.ndarray | None, int]]:
    """offset -> (electrodes (19, 10000), spectrogram image or None, padded frames) from the whole signal."""
    whole = open_recording(path).read(0)
    frames = multitaper_frames(whole) if spectrogram else None
    out = {}
    for k in range(window_count(len(whole), step)):
        start = k * step
        image, padded = None, 300
        if spectrogram:
            window, padded = window_frames(frames, start / 200)
            image = spectrogram_image(window)
        out[start / 200] = (eeg_electrodes(whole[start:start + 10000]), image, padded)
    return out


def check(pieces, want: dict, spectrogram: bool) -> int:
    seen = 0
    for piece, electrodes, spect in pieces:
        assert piece.error is None
        for j, offset in enumerate(piece.offset_s.tolist()):
            e, image, padded = want[offset]
            np.testing.assert_array_equal(electrodes[j].numpy(), e)
            assert piece.quality[j, 2] == padded
            if spectrogram:
                np.testing.assert_array_equal(spect[j].numpy(), image)
            else:
                assert not spect[j].numpy().any()
            seen += 1
    return seen


@pytest.mark.parametrize("stride, batch, spectrogram", [(70, 1, False), (100, 2, False), (100, 4, False),
                                                        (400, 1, False), (70, 2, True), (400, 4, True)])
def test_windows_equal_the_whole_signal_cut(path, monkeypatch, stride, batch, spectrogram):
    monkeypatch.setattr(windows_module, "RECORDING_BLOCK_S", 37.3)  # blocks that divide nothing
    step = stride * 200
    n = window_count(SECONDS * 200, step)
    want = expected(path, step, spectrogram)
    for skip in ((), (1,)):  # units that continue one another; then one left out (on disk): the next one seeks
        stream = WindowStream([path], ReadOptions(), units(n, 3, skip), step, batch, spectrogram)
        seen = check(iter(stream), want, spectrogram)
        assert seen == n - (min(3, n - 3) if skip else 0)


def test_two_workers_split_the_units(path):
    step = 50 * 200
    n = window_count(SECONDS * 200, step)
    want = expected(path, step, True)
    stream = WindowStream([path], ReadOptions(), units(n, 4), step, 3, True)
    loader = DataLoader(stream, batch_size=None, num_workers=2, collate_fn=lambda item: item)
    pieces = list(loader)
    assert check(pieces, want, True) == n
    assert sorted({p.unit for p, _, _ in pieces}) == list(range(len(units(n, 4))))
