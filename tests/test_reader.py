"""hms_infer.recordings.resample and .reader: block resampling equal to resample_poly, files of every kind read as
the 19 electrodes in µV at 200 Hz, segments, channel check, errors."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import mne
import numpy as np
import pyedflib
import pytest
from scipy.signal import resample_poly

from hms_infer.constants import ELECTRODES
from hms_infer.errors import HMSInputError
from hms_infer.recordings.reader import find_recordings, open_recording, read_recording
from hms_infer.recordings.resample import Resampler, output_length, rate_ratio

from .recording_files import (
    quantisation_step, write_brainvision, write_edf, write_edf_discontinuous, write_eeglab, write_fif,
)

F32 = 2.0 ** -23  # float32 relative rounding (output arrays are float32)


def _signal(n: int, c: int = 19, seed: int = 0) -> np.ndarray:
    """(n, c) random µV with a different offset and scale per channel (channel i ~ i * 10 µV + noise)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, c)) * (10 + np.arange(c)) + 10.0 * np.arange(c)


def _feed(r: Resampler, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Push x[input_start:input_stop] in random block sizes; the outputs joined."""
    out, k = [], r.input_start
    while k < r.input_stop:
        b = int(rng.integers(1, 900))
        out.append(r.push(x[k:k + b]))
        k += b
    return np.concatenate(out)


# --- resample -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fs, ratio", [(256, (25, 32)), (500, (2, 5)), (512, (25, 64)), (1000, (1, 5)),
                                       (250, (4, 5)), (200, (1, 1)), (128, (25, 16)), (400.0, (1, 2))])
def test_rate_ratio_exact(fs, ratio):
    assert rate_ratio(fs) == ratio
    assert fs * ratio[0] / ratio[1] == 200


def test_rate_ratio_rounded_for_long_decimals():
    up, down = rate_ratio(333.33)  # 20000 / 33333 exactly: too long a filter, rounded to down <= 1000
    assert (up, down) == (3, 5) and abs(333.33 * up / down - 200) < 0.01
    with pytest.raises(ValueError):
        rate_ratio(0.0)


@pytest.mark.parametrize("fs", [256, 500, 512, 1000, 250, 200])
def test_resampler_equals_resample_poly_whatever_the_blocks(fs):
    rng = np.random.default_rng(fs)
    x = _signal(int(fs * 97.3), 3, seed=fs)
    up, down = rate_ratio(fs)
    whole = x if (up, down) == (1, 1) else resample_poly(x, up, down, axis=0)
    assert len(whole) == output_length(len(x), up, down)
    n = len(whole)
    for start, stop in [(0, None), (n // 2 + 7, None), (333, n - 501), (n - 3, None), (5, 6)]:
        r = Resampler(fs, len(x), start, stop)
        y = _feed(r, x, rng)
        ref = whole[start:stop]
        assert y.shape == ref.shape and r.done
        # the same products summed in the same order: bitwise equal (identity too)
        np.testing.assert_array_equal(y, ref)
        if start > 1000 and fs != 200:
            assert r.input_start > 0  # resuming reads from the middle, not from the start


def test_resampler_keeps_only_context():
    r = Resampler(256, 10 ** 7)
    for _ in range(20):
        r.push(np.zeros((5000, 2)))
    assert len(r._buf) < 2 * r.down + r.half_len // r.up + 2  # a few dozen samples, never the signal


def test_resampler_describe_states_the_filter():
    text = Resampler(256, 100).describe()
    assert "up 25 / down 32" in text and "641 taps" in text and "Kaiser window beta 5" in text
    assert "cutoff 100 Hz" in text
    assert "not resampled" in Resampler(200, 100).describe()
    assert "effective rate 199.998" in Resampler(333.33, 100).describe()


# --- reader: values -----------------------------------------------------------------------------------------------

def test_fif_round_trip_exact(tmp_path):
    x = _signal(200 * 70)
    date = datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    path = write_fif(tmp_path / "a_raw.fif", x, ELECTRODES, 200, meas_date=date, annotations=[(3.0, 1.5, "sz")])
    rec = open_recording(path)
    assert rec.format == "FIF" and rec.source_fs == 200 and rec.meas_date == date
    assert rec.segments == (rec.segments[0],) and rec.segments[0].samples == 14000
    assert rec.annotations[0].onset_s == 3.0 and rec.annotations[0].description == "sz"
    y = rec.read(0)
    assert y.dtype == np.float32 and y.shape == (14000, 19)
    np.testing.assert_allclose(y, x, rtol=F32, atol=1e-6)  # exact up to float32 rounding


@pytest.mark.parametrize("bdf", [False, True])
def test_edf_bdf_in_microvolts_within_the_quantisation_step(tmp_path, bdf):
    x = _signal(200 * 60)
    path = write_edf(tmp_path / ("a.bdf" if bdf else "a.edf"), x, ELECTRODES, 200, bdf=bdf)
    rec = open_recording(path)
    assert rec.format == ("BDF" if bdf else "EDF")
    step = quantisation_step(x, bdf=bdf)
    err = np.abs(rec.read(0) - x)
    assert (err <= step + F32 * np.abs(x) + 1e-9).all()  # edflib truncates: within one step
    assert err.mean() > 0.1 * step.mean()  # really quantised (the test could not pass on exact data alone)
    assert any("µV" in s and "uV" in s for s in rec.steps)


def test_edf_in_millivolts_comes_back_in_microvolts(tmp_path):
    x = _signal(200 * 60) / 1000.0  # mV
    path = write_edf(tmp_path / "mv.edf", x, ELECTRODES, 200, dimension="mV", physical_range=(-1.0, 1.0))
    y = open_recording(path).read(0)
    np.testing.assert_allclose(y, x * 1000, atol=2 / 65535 * 1000 + 1e-4)


def test_tuh_labels_shuffled_with_extra_channels(tmp_path):
    x = _signal(200 * 60, 21)
    labels = [f"EEG {e.upper()}-REF" for e in ELECTRODES] + ["EEG EKG1-REF", "PHOTIC-REF"]
    order = np.random.default_rng(1).permutation(21)
    path = write_fif(tmp_path / "tuh_raw.fif", x[:, order], [labels[i] for i in order], 200)
    rec = open_recording(path)
    assert set(rec.channels.ignored) == {"EEG EKG1-REF", "PHOTIC-REF"}
    np.testing.assert_allclose(rec.read(0), x[:, :19], rtol=F32, atol=1e-6)
    assert any("Fp1=EEG FP1-REF" in s for s in rec.steps)


@pytest.mark.parametrize("fs", [256, 500])
def test_higher_rates_resampled_like_resample_poly(tmp_path, fs):
    x = _signal(fs * 70, seed=fs)
    up, down = rate_ratio(fs)
    path = write_fif(tmp_path / f"r{fs}_raw.fif", x, ELECTRODES, fs)
    rec = open_recording(path)
    ref = resample_poly(x, up, down, axis=0)
    assert rec.segments[0].samples == len(ref) == 14000
    np.testing.assert_allclose(rec.read(0), ref, rtol=F32, atol=1e-5)
    # EDF at 256 Hz: resample_poly of what MNE reads
    edf = write_edf(tmp_path / f"r{fs}.edf", x, ELECTRODES, fs)
    q = mne.io.read_raw(edf, verbose="error").get_data().T * 1e6
    np.testing.assert_allclose(open_recording(edf).read(0), resample_poly(q, up, down, axis=0), rtol=F32, atol=1e-5)


def test_blocks_of_any_size_and_a_start_in_the_middle(tmp_path):
    x = _signal(256 * 130)
    rec = open_recording(write_edf(tmp_path / "b.edf", x, ELECTRODES, 256))
    whole = rec.read(0)
    assert len(whole) == 26000
    for block in (1000, 777, 12000, 30000):
        parts = list(rec.blocks(0, block=block))
        assert all(len(p) == block for p in parts[:-1]) and 0 < len(parts[-1]) <= block
        np.testing.assert_array_equal(np.concatenate(parts), whole)
    np.testing.assert_array_equal(rec.read(0, 12345, 20001), whole[12345:20001])
    np.testing.assert_array_equal(np.concatenate(list(rec.blocks(0, 13001, block=999))), whole[13001:])
    assert rec.read(0, 500, 500).shape == (0, 19)
    with pytest.raises(ValueError):
        rec.read(0, -1)


def test_invert_polarity(tmp_path):
    x = _signal(200 * 60)
    path = write_fif(tmp_path / "p_raw.fif", x, ELECTRODES, 200)
    rec = open_recording(path, invert_polarity=True)
    np.testing.assert_allclose(rec.read(0), -x, rtol=F32, atol=1e-6)
    assert any("inverted" in s for s in rec.steps)


def test_brainvision(tmp_path):
    x = _signal(200 * 60)
    rec = open_recording(write_brainvision(tmp_path / "bv.vhdr", x, ELECTRODES, 200))
    assert rec.format == "BrainVision"
    np.testing.assert_allclose(rec.read(0), x, rtol=F32, atol=1e-5)


@pytest.mark.parametrize("fdt", [True, False])
def test_eeglab(tmp_path, fdt):
    x = _signal(250 * 60)
    path = write_eeglab(tmp_path / "e.set", x, ELECTRODES, 250, fdt=fdt)
    assert mne.io.read_raw(path, verbose="error").preload is not fdt  # a .fdt is read lazily
    rec = open_recording(path)
    assert rec.format == "EEGLAB" and rec.segments[0].samples == 12000
    np.testing.assert_allclose(rec.read(0), resample_poly(x.astype(np.float32).astype(np.float64), 4, 5, axis=0),
                               rtol=F32, atol=1e-5)


def test_read_recording_whole_file(tmp_path):
    x = _signal(200 * 60)
    data = read_recording(write_fif(tmp_path / "w_raw.fif", x, ELECTRODES, 200))
    assert len(data.segments) == 1 and data.segments[0].shape == (12000, 19)
    assert data.recording.steps and "µV" in " ".join(data.recording.steps)


# --- reader: rates, segments --------------------------------------------------------------------------------------

def test_edf_channels_at_two_rates_each_resampled_from_its_own_rate(tmp_path):
    rng = np.random.default_rng(3)
    rates = [256 if i % 2 else 200 for i in range(19)]
    chans = [rng.normal(size=r * 70) * 20 for r in rates]
    path = write_edf(tmp_path / "m.edf", chans, ELECTRODES, rates)
    rec = open_recording(path)
    y = rec.read(0)
    assert y.shape == (14000, 19) and rec.source_fs == 256
    for i in (0, 1):  # a 200-Hz channel as stored; a 256-Hz one resample_poly of its own samples
        q = mne.io.read_raw_edf(path, include=[ELECTRODES[i]], verbose="error").get_data()[0] * 1e6
        ref = q if rates[i] == 200 else resample_poly(q, 25, 32)
        np.testing.assert_allclose(y[:, i], ref, rtol=F32, atol=1e-5)
    assert any("each read at its own" in s for s in rec.steps)


def test_faster_non_eeg_channel_does_not_resample_the_electrodes(tmp_path):
    rng = np.random.default_rng(4)
    chans = [rng.normal(size=200 * 60) * 20 for _ in ELECTRODES] + [rng.normal(size=512 * 60) * 500]
    path = write_edf(tmp_path / "ecg.edf", chans, [*ELECTRODES, "ECG"], [200] * 19 + [512])
    assert mne.io.read_raw(path, verbose="error").info["sfreq"] == 512  # MNE would upsample the EEG to 512 Hz
    rec = open_recording(path)
    assert rec.source_fs == 200 and any("not resampled" in s for s in rec.steps)
    q = mne.io.read_raw_edf(path, include=list(ELECTRODES), verbose="error").get_data().T * 1e6
    np.testing.assert_allclose(rec.read(0), q, rtol=F32, atol=1e-5)


def test_edf_plus_d_split_into_segments(tmp_path):
    x = _signal(200 * 90)
    segs = [(0.0, x[:200 * 60]), (100.0, x[200 * 60:])]
    path = write_edf_discontinuous(tmp_path / "d.edf", segs, ELECTRODES, 200,
                                   annotations=[(2.0, 1.0, "a"), (110.0, 3.0, "b")])
    rec = open_recording(path)
    assert [(s.start_s, s.samples) for s in rec.segments] == [(0.0, 12000), (100.0, 6000)]
    # MNE, reading the records back to back, would drop 'b' (past its 90 s of data): the TALs give it
    assert [(a.onset_s, a.duration_s, a.description) for a in rec.annotations] == [(2.0, 1.0, "a"),
                                                                                   (110.0, 3.0, "b")]
    step = quantisation_step(x)
    assert (np.abs(rec.read(0) - x[:12000]) <= step / 2 + 1e-4).all()
    assert (np.abs(rec.read(1) - x[12000:]) <= step / 2 + 1e-4).all()
    assert rec.meas_date == datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_edf_cut_short_is_read_as_far_as_it_goes(tmp_path):
    path = write_edf(tmp_path / "full.edf", _signal(200 * 120), ELECTRODES, 200)
    data = path.read_bytes()
    record = 19 * 200 * 2 + 2 * (len(data) - 256 * 21 - 120 * 19 * 200 * 2) // 240  # + the TAL bytes per record
    cut = tmp_path / "cut.edf"
    cut.write_bytes(data[:len(data) - 30 * record])
    rec = open_recording(cut)
    assert rec.segments[0].duration_s == 90.0
    assert any("the header says 120 data records, the file holds 90" in s for s in rec.steps)


def test_short_segment_kept_in_a_longer_file(tmp_path):
    x = _signal(200 * 80)
    path = write_edf_discontinuous(tmp_path / "s.edf", [(0.0, x[:200 * 60]), (75.0, x[200 * 60:])], ELECTRODES,
                                   200)
    assert [(s.start_s, s.duration_s) for s in open_recording(path).segments] == [(0.0, 60.0), (75.0, 20.0)]


def test_fif_gaps_from_bad_acq_skip(tmp_path):
    x = _signal(200 * 150)
    path = write_fif(tmp_path / "g_raw.fif", x, ELECTRODES, 200, annotations=[(60.0, 20.0, "BAD_ACQ_SKIP"),
                                                                              (100.0, 1.0, "event")])
    rec = open_recording(path)
    assert [(s.start_s, s.samples) for s in rec.segments] == [(0.0, 12000), (80.0, 14000)]
    assert [a.description for a in rec.annotations] == ["event"]
    np.testing.assert_allclose(rec.read(1), x[16000:], rtol=F32, atol=1e-6)


# --- reader: channels ---------------------------------------------------------------------------------------------

def test_pyedflib_test_file_needs_a_channel_map(tmp_path):
    src = Path(pyedflib.data.get_generator_filename())
    with pytest.raises(HMSInputError, match="no EEG channel"):
        open_recording(src)
    labels = mne.io.read_raw(src, verbose="error").ch_names
    assert len(labels) == 11
    cmap = tmp_path / "map.yaml"
    cmap.write_text("".join(f"'{label}': {e}\n" for label, e in zip(labels, ELECTRODES)))
    rec = open_recording(src, channel_map=cmap, allow_missing=True)
    assert len(rec.channels.missing) == 8 and rec.channels.missing == ELECTRODES[11:]
    y = rec.read(0, 0, 2000)
    assert np.isnan(y[:, 11:]).all() and np.isfinite(y[:, :11]).all()
    q = mne.io.read_raw(src, verbose="error").get_data(stop=2000).T * 1e6
    np.testing.assert_allclose(y[:, :11], q, rtol=F32, atol=1e-5)
    assert rec.segments[0].duration_s == 600.0


def test_flat_channel_error_or_missing(tmp_path):
    x = _signal(200 * 200)
    x[:, 3] = 7.0  # P3 flat
    x[:, 5] = np.nan  # T3 all NaN
    path = write_fif(tmp_path / "f_raw.fif", x, ELECTRODES, 200)
    with pytest.raises(HMSInputError, match=r"P3 .*T3 .*flat or NaN") as e:
        open_recording(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)
    rec = open_recording(path, allow_missing=True)
    assert rec.channels.missing == ("P3", "T3")
    y = rec.read(0, 0, 1000)
    assert np.isnan(y[:, [3, 5]]).all() and np.isfinite(np.delete(y, [3, 5], axis=1)).all()
    assert any("treated as missing" in s for s in rec.steps)


def test_channel_flat_in_some_spans_only_is_kept(tmp_path):
    x = _signal(200 * 400)
    x[: 200 * 300, 0] = 0.0  # Fp1 flat in the first 300 s: not in every span
    np.testing.assert_allclose(open_recording(write_fif(tmp_path / "k_raw.fif", x, ELECTRODES, 200)).read(0)[:, 0],
                               x[:, 0], rtol=F32, atol=1e-6)


# --- errors -------------------------------------------------------------------------------------------------------

def _one_line_error(path: Path, match: str, **options) -> str:
    with pytest.raises(HMSInputError, match=match) as e:
        open_recording(path, **options)
    text = str(e.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    return text


def test_bad_inputs_give_one_line_errors(tmp_path):
    _one_line_error(tmp_path / "none.edf", "not found")
    (tmp_path / "a.xyz").write_bytes(b"abc")
    _one_line_error(tmp_path / "a.xyz", "unsupported file type '.xyz'")
    (tmp_path / "garbage.edf").write_bytes(bytes(range(256)) * 20)
    _one_line_error(tmp_path / "garbage.edf", "not readable as EDF by MNE")
    good = write_edf(tmp_path / "good.edf", _signal(200 * 60), ELECTRODES, 200)
    (tmp_path / "cut.edf").write_bytes(good.read_bytes()[:600])
    _one_line_error(tmp_path / "cut.edf", "EDF")
    x = _signal(200 * 60, 2)
    _one_line_error(write_fif(tmp_path / "ecg_raw.fif", x, ["ECG", "EMG"], 200), "no EEG channel")
    _one_line_error(write_fif(tmp_path / "part_raw.fif", x, ["Fp1", "F3"], 200), "no channel for electrode")
    _one_line_error(write_fif(tmp_path / "short_raw.fif", _signal(200 * 40), ELECTRODES, 200),
                    "40.0 s of signal: shorter than one 50-s window")
    _one_line_error(write_fif(tmp_path / "slow_raw.fif", _signal(50 * 100), ELECTRODES, 50),
                    "sampling rate 50 Hz is below 100 Hz")
    _one_line_error(write_edf(tmp_path / "nounit.edf", _signal(200 * 60), ELECTRODES, 200, dimension=""),
                    "not a voltage")
    (tmp_path / "x.mff").mkdir()
    _one_line_error(tmp_path / "x.mff", "MNE needs the package mffpy")
    _one_line_error(write_fif(tmp_path / "misc_raw.fif", _signal(200 * 60), ELECTRODES, 200, ch_types="misc"),
                    "not in volts", allow_missing=True)


# --- find_recordings ----------------------------------------------------------------------------------------------

def test_find_recordings(tmp_path):
    for name in ("a.edf", "B.BDF", "c.vhdr", "c.vmrk", "c.eeg", "nk.EEG", "d_raw.fif", "d-annot.fif", "e.fif.gz",
                 "notes.txt", "p.lay", "p.dat", "s.set", "s.fdt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "m.mff").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.edf").write_bytes(b"")
    names = [p.name for p in find_recordings(tmp_path)]
    assert names == sorted(["B.BDF", "a.edf", "c.vhdr", "d_raw.fif", "e.fif.gz", "m.mff", "nk.EEG", "p.lay",
                            "s.set"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HMSInputError, match="no recording"):
        find_recordings(empty)
    with pytest.raises(HMSInputError, match="not found"):
        find_recordings(tmp_path / "nowhere")
