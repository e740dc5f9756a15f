"""The multitaper spectrogram (`recordings.multitaper`) and its check against Kaggle's files (`tasks.multitaper_check`):
hand-computed powers, frames, windows, NaN chains, regions, the Kaggle column names, a round trip, real and synthetic
train folders."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from hms_infer.constants import ELECTRODES, SPECT_REGION_CHAINS, SPECT_REGIONS
from hms_infer.data import read_eeg_recording, read_spectrogram_recording
from hms_infer.errors import HMSInputError
from hms_infer.recordings.multitaper import (
    BIN_HZ, frame_count, frame_times, frequencies, kaggle_columns, kaggle_names, multitaper_frames, nearest_bins,
    region_chains, tapers, to_kaggle_frame, window_first_frame, window_frames,
)
from hms_infer.synthetic import write_recording
from hms_infer.tasks.multitaper_check import multitaper_check

from .conftest import COMPACT_REFERENCE, FULL_REFERENCE

FS = 200
SAMPLES = [p / "hms_sample" for p in (COMPACT_REFERENCE, FULL_REFERENCE) if (p / "hms_sample").is_dir()]


def _eeg(n: int, signals: dict[str, np.ndarray] | None = None) -> np.ndarray:
    x = np.zeros((n, len(ELECTRODES)))
    for name, s in (signals or {}).items():
        x[:, ELECTRODES.index(name)] = s
    return x


def _sine(bin_k: int, amplitude: float, n: int, phase: float = 0.3) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * bin_k * BIN_HZ * np.arange(n) / FS + phase)


def _reference_power(chain: np.ndarray) -> np.ndarray:
    """One chain's 800 samples -> (100,) power, written out taper by taper (not vectorised)."""
    out = np.zeros(100)
    for h in tapers():
        out += np.abs(np.fft.fft(chain * h, 1024)[3:103]) ** 2 / FS
    return out / len(tapers())


def test_tapers_and_frequencies():
    h = tapers()
    assert h.shape == (3, 800)
    np.testing.assert_allclose((h ** 2).sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(h @ h.T, np.eye(3), atol=1e-10)  # orthonormal Slepians
    f = frequencies()
    assert f.shape == (100,) and f[0] == 3 * 200 / 1024 and f[-1] == 102 * 200 / 1024
    assert f[27] == pytest.approx(5.859375)  # bin 30


def test_sine_on_a_bin_obeys_parseval():
    # Two-sided density: S(f_k) = mean over tapers |X(k)|^2 / fs, and sum_k S(f_k) df over all 1024 bins (df = fs /
    # 1024) = sum_n (x_n h_n)^2 (Parseval for the zero-padded DFT) ~ A^2 / 2 for a unit-energy taper (the A^2 / 2
    # cos(2 w n) term is the taper's spectrum at 2 f0, negligible). Half of it lies at -f0: the bins around +f0 hold
    # A^2 / 4. A sine in one chain of LL (Fp1 - F7 = s: only Fp1 carries it) and zero in the other three: the region
    # mean holds A^2 / 16 around bin 30 (5.859 Hz).
    amplitude, n = 40.0, 2000
    power = multitaper_frames(_eeg(n, {"Fp1": _sine(30, amplitude, n)}))
    assert power.shape == (4, 4, 100) and power.dtype == np.float32
    ll = power[:, SPECT_REGIONS.index("LL")].astype(np.float64)
    assert (ll.argmax(axis=1) == 30 - 3).all()
    # the 100 bins (0.59 - 19.9 Hz, f0 +- 5.3 Hz) hold all but the far leakage; +-10 bins (1.95 Hz, beyond W = 0.5 Hz)
    # hold 99.8% (the third taper keeps only 96% of its energy within W)
    np.testing.assert_allclose(ll.sum(axis=1) * BIN_HZ, amplitude ** 2 / 16, rtol=1e-3)
    assert (ll[:, 27 - 10:27 + 11].sum(axis=1) * BIN_HZ > 0.997 * amplitude ** 2 / 16).all()
    assert np.abs(power[:, [SPECT_REGIONS.index("RL"), SPECT_REGIONS.index("RP")]]).max() == 0.0
    lp = power[:, SPECT_REGIONS.index("LP")]  # Fp1 - F3 carries it too: the same A^2 / 16
    np.testing.assert_allclose(lp, ll, rtol=1e-6)


def test_vectorised_frames_match_the_loop():
    rng = np.random.default_rng(1)
    n = 3000
    eeg = rng.standard_normal((n, 19)) * 30 + rng.uniform(-200, 200, 19)  # offsets: no detrending either way
    power = multitaper_frames(eeg)
    chains = region_chains(eeg)
    assert chains.shape == (n, 4, 4)
    r, c = SPECT_REGIONS.index("RP"), 2
    a, b = SPECT_REGION_CHAINS["RP"][c]
    np.testing.assert_array_equal(chains[:, r, c], eeg[:, ELECTRODES.index(a)] - eeg[:, ELECTRODES.index(b)])
    for j in range(len(power)):
        seg = chains[400 * j:400 * j + 800]
        want = np.mean([_reference_power(seg[:, r, c]) for c in range(4)], axis=0)
        np.testing.assert_allclose(power[j, r], want, rtol=1e-5)


def test_white_noise_density():
    # white noise of variance s^2 on each electrode: a chain a - b has variance 2 s^2, a two-sided density of
    # 2 s^2 / fs at every frequency
    rng = np.random.default_rng(2)
    power = multitaper_frames(rng.standard_normal((200 * 400, 19)) * 30)
    assert power.mean() == pytest.approx(2 * 900 / FS, rel=0.01)


def test_frame_count_and_times():
    assert [frame_count(n) for n in (0, 799, 800, 1199, 1200, 720_000)] == [0, 0, 1, 1, 2, 1799]
    assert multitaper_frames(_eeg(799)).shape == (0, 4, 100)
    assert multitaper_frames(_eeg(1200)).shape == (2, 4, 100)
    np.testing.assert_array_equal(frame_times(3), [2.0, 4.0, 6.0])  # the centres of [0, 4), [2, 6), [4, 8) s


def test_window_frames_centring_and_padding():
    power = np.arange(200, dtype=np.float32)[:, None, None] * np.ones((1, 4, 100), np.float32)
    # offset 0: centre 25 s; j0 = round((0 - 276) / 2) = -138, so frames -138 .. 161: 138 padded before, frames
    # 0..161 after (frame 149 - 138 = 11 at 24 s and 12 at 26 s straddle the centre)
    window, padded = window_frames(power, 0.0)
    assert window.shape == (300, 4, 100) and padded == 138
    assert np.isnan(window[:138]).all() and window[138, 0, 0] == 0 and window[299, 0, 0] == 161
    assert (frame_times(200)[[int(window[149, 0, 0]), int(window[150, 0, 0])]] == [24, 26]).all()
    # 100 frames only: 138 before and 300 - 138 - 100 = 62 after
    window, padded = window_frames(power[:100], 0.0)
    assert padded == 200 and np.isnan(window[238:]).all() and window[237, 0, 0] == 99
    # offset 300: j0 = 12, frames 12 .. 311 of 400: none padded
    window, padded = window_frames(np.concatenate([power, power + 200]), 300.0)
    assert padded == 0 and window[0, 0, 0] == 12 and window[-1, 0, 0] == 311
    assert window_frames(power[:0], 100.0)[1] == 300
    # odd offsets always round the same way (half up): 275 -> 0, 277 -> 1, 279 -> 2 (round-half-even: 0, 0, 2)
    assert [window_first_frame(o) for o in (275.0, 277.0, 279.0, 1.0, 3.0)] == [0, 1, 2, -137, -136]
    # frames first .. first + F - 1 of a longer signal: the same window as from the whole signal's frames
    whole = np.concatenate([power, power + 200])
    for offset in (0.0, 300.0, 700.0):
        j0 = max(window_first_frame(offset), 0)
        got = window_frames(whole[j0:j0 + 300], offset, j0, len(whole))
        want = window_frames(whole, offset)
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1] == want[1]
    with pytest.raises(ValueError, match="frames 12 .. 311 needed"):
        window_frames(whole[20:], 300.0, 20, len(whole))


def test_nan_chains_are_left_out():
    rng = np.random.default_rng(3)
    eeg = rng.standard_normal((1600, 19)) * 20
    clean = multitaper_frames(eeg)
    ll = SPECT_REGIONS.index("LL")
    chains = region_chains(eeg)[:, ll]
    x = eeg.copy()
    x[100, ELECTRODES.index("F7")] = np.nan  # Fp1-F7 and F7-T3 are out of frame 0 (samples 0..799) only
    power = multitaper_frames(x)
    want = np.mean([_reference_power(chains[:800, c]) for c in (2, 3)], axis=0)
    np.testing.assert_allclose(power[0, ll], want, rtol=1e-5)
    np.testing.assert_array_equal(power[1:], clean[1:])
    other = [SPECT_REGIONS.index(r) for r in ("RL", "RP", "LP")]
    np.testing.assert_array_equal(power[:, other], clean[:, other])
    x[500, ELECTRODES.index("T5")] = np.inf  # T3-T5, T5-O1 out of frames 0 and 1: frame 0 has no LL chain left
    power = multitaper_frames(x)
    assert np.isnan(power[0, ll]).all() and np.isfinite(power[1:, ll]).all()
    want = np.mean([_reference_power(chains[400:1200, c]) for c in (0, 1)], axis=0)
    np.testing.assert_allclose(power[1, ll], want, rtol=1e-5)
    assert np.isfinite(power[:, other]).all()


def test_regions_average_their_own_four_chains():
    # A bipolar chain loop closes (LL and LP both run Fp1 -> O1), so the 16 chains cannot carry 16 independent
    # sines; instead each electrode carries its own on-bin sine, 10 bins (2 Hz) from the next (every other electrode
    # at a time: bins 10, 20, ..., 100, then 15, 25, ..., 95). An electrode in m of a region's chains gives that
    # region m / 4 of the power at its bin of a chain carrying that sine alone (interior electrodes: m = 2; the ends
    # Fp1, O1, Fp2, O2: 1 in each of their two regions); Fz, Cz, Pz are in no chain.
    n, amplitude = 1600, 30.0

    def lone(k: int, phase: float) -> np.ndarray:  # (F,) the power at bin k of one chain carrying the sine alone
        return multitaper_frames(_eeg(n, {"Fp1": _sine(k, amplitude, n, phase)}))[:, 0, k - 3] * 4

    for first, electrodes in ((10, ELECTRODES[::2]), (15, ELECTRODES[1::2])):
        bins = {e: first + 10 * i for i, e in enumerate(electrodes)}
        power = multitaper_frames(_eeg(n, {e: _sine(k, amplitude, n, phase=0.1 * k) for e, k in bins.items()}))
        for r, region in enumerate(SPECT_REGIONS):
            for e, k in bins.items():
                m = sum(e in pair for pair in SPECT_REGION_CHAINS[region])
                got = power[:, r, k - 3] / lone(k, 0.1 * k)
                if m:
                    # rtol: the other sine of the same chain (2+ Hz away) leaks up to ~1% into this bin
                    np.testing.assert_allclose(got, m / 4, rtol=0.02, err_msg=f"{region} {e}")
                else:
                    assert got.max() < 1e-3, f"{region} sees {e}"


def test_kaggle_names_are_a_rounded_grid():
    names = kaggle_names()
    assert names[:3] == ["0.59", "0.78", "0.98"] and names[-1] == "19.89"
    f = frequencies()
    hz = np.array([float(s) for s in names])
    # not the bin frequencies: 72 of the names differ from round(f_k, 2) (by -0.03 .. +0.01 Hz; the last reads 19.89
    # for 19.92); the largest gap to f_k is 0.032 Hz, 0.16 of a bin
    differ = np.round(hz - np.round(f, 2), 2)
    assert (differ != 0).sum() == 72 and differ.min() == -0.03 and differ.max() == 0.01 and f"{f[-1]:.2f}" == "19.92"
    assert np.abs(hz - f).max() == pytest.approx(0.0319, abs=1e-4)
    np.testing.assert_array_equal(nearest_bins(hz), np.arange(3, 103))  # one to one, in order
    cols = kaggle_columns()
    assert len(cols) == 400 and cols[0] == "LL_0.59" and cols[100] == "RL_0.59" and cols[-1] == "RP_19.89"
    assert [c[:2] for c in cols[::100]] == ["LL", "RL", "LP", "RP"]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.parent.name)
def test_real_files_have_the_kaggle_names(sample):
    for folder in ("train_spectrograms", "test_spectrograms"):
        for path in sorted((sample / folder).glob("*.parquet")):
            assert pq.ParquetFile(path).schema_arrow.names == ["time"] + kaggle_columns(), path


def test_to_kaggle_frame_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    power = multitaper_frames(rng.standard_normal((4000, 19)) * 25)
    power[3] = np.nan
    times = frame_times(len(power)) + 101.0
    frame = to_kaggle_frame(times, power)
    assert list(frame.columns) == ["time"] + kaggle_columns()
    path = tmp_path / "s.parquet"
    frame.to_parquet(path, index=False)
    t, p = read_spectrogram_recording(path, "test")
    np.testing.assert_array_equal(t, times)
    np.testing.assert_array_equal(p, power)
    with pytest.raises(ValueError):
        to_kaggle_frame(times[:-1], power)


def test_one_hour_in_under_five_seconds():
    eeg = np.random.default_rng(5).standard_normal((720_000, 19)).astype(np.float32) * 30
    t = time.perf_counter()
    power = multitaper_frames(eeg)
    assert time.perf_counter() - t < 5.0 and power.shape == (1799, 4, 100)


def _synthetic_train(root: Path, shift_s: float = 101.0) -> Path:
    """A train folder whose spectrogram file is the multitaper of its EEG, frames at spectrogram time 2 j + 2 +
    shift_s."""
    write_recording(root, 7001, 8001, seconds=240, label_offsets=(0.0, 10.0), shift_s=shift_s)
    eeg = read_eeg_recording(root / "train_eegs" / "7001.parquet", "test")
    power = multitaper_frames(eeg)
    to_kaggle_frame(frame_times(len(power)) + shift_s, power).to_parquet(
        root / "train_spectrograms" / "8001.parquet", index=False)
    return root


def test_check_of_a_spectrogram_that_is_the_multitaper(tmp_path):
    root = _synthetic_train(tmp_path / "data")
    result = multitaper_check(data_dir=root, out=tmp_path / "out", max_lag_s=2)
    rec = result["recordings"][0]
    assert rec["eeg_id"] == 7001 and rec["shift_s"] == 101.0 and rec["best_lag_s"] == 0
    assert rec["r"] == pytest.approx(1.0, abs=1e-9) and result["overall"]["best_lag_s"] == 0
    assert rec["frames"] == frame_count(240 * FS) - int(np.isnan(multitaper_frames(read_eeg_recording(
        root / "train_eegs" / "7001.parquet", "test"))).all(axis=(1, 2)).sum())
    assert rec["r_by_lag"]["1"] < 0.999 and rec["r_by_lag"]["-2"] < 0.999
    for region, numbers in rec["regions"].items():
        assert numbers["median_ratio"] == pytest.approx(1.0, abs=1e-3), region
        assert numbers["mean_abs_log10_ratio"] == pytest.approx(0.0, abs=1e-6), region
        for key in ("r", "r_delta", "r_theta", "r_alpha", "r_beta"):
            assert numbers[key] == pytest.approx(1.0, abs=1e-6), (region, key)
    saved = json.loads((tmp_path / "out" / "multitaper_check.json").read_text())
    assert saved["overall"]["regions"]["LL"]["r"] == pytest.approx(1.0, abs=1e-6)
    table = pd.read_csv(tmp_path / "out" / "multitaper_check.csv")
    assert list(table["region"]) == list(SPECT_REGIONS) * 2 and list(table["eeg_id"].astype(str)[4:]) == ["all"] * 4


def test_check_finds_a_shifted_spectrogram(tmp_path):
    # the file's frames are 2 s later than the table's shift (99 s) says: Kaggle t <-> EEG t - 99 - 2, lag -2
    root = _synthetic_train(tmp_path / "data", shift_s=101.0)
    table = pd.read_csv(root / "train.csv")
    table["spectrogram_label_offset_seconds"] -= 2
    table.to_csv(root / "train.csv", index=False)
    rec = multitaper_check(data_dir=root, max_lag_s=3)["recordings"][0]
    assert rec["shift_s"] == 99.0 and rec["best_lag_s"] == -2 and rec["r"] == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.parent.name)
def test_check_on_the_real_sample(sample, tmp_path):
    result = multitaper_check(data_dir=sample, out=tmp_path)
    assert result["recordings"] and all("error" not in r for r in result["recordings"])
    overall = result["overall"]
    assert overall["frames"] > 10 and -4 <= overall["best_lag_s"] <= 4
    for numbers in overall["regions"].values():
        assert all(np.isfinite(v) for v in numbers.values())
        assert 0.1 < numbers["median_ratio"] < 10  # the scale agrees (two-sided density, no doubling)


def test_check_errors(tmp_path, synthetic_dir):
    with pytest.raises(HMSInputError, match="no train_eegs/ folder"):
        multitaper_check(data_dir=tmp_path)
    with pytest.raises(HMSInputError, match="--max-lag"):
        multitaper_check(data_dir=synthetic_dir, max_lag_s=-1)
    with pytest.raises(HMSInputError, match="--eeg-id 5"):
        multitaper_check(data_dir=synthetic_dir, eeg_ids=[5])
    result = multitaper_check(data_dir=synthetic_dir)  # the synthetic spectrograms are unrelated: finite numbers
    assert len(result["recordings"]) == 3 and result["overall"]["frames"] > 0
    root = _synthetic_train(tmp_path / "data")
    write_recording(root, 7002, 8002, seconds=60)
    (root / "train_eegs" / "7002.parquet").unlink()
    result = multitaper_check(data_dir=root)  # a recording without its EEG is reported, the others compared
    assert "7002.parquet: file not found" in result["recordings"][1]["error"]
    assert result["overall"]["r"] == pytest.approx(1.0, abs=1e-9)
