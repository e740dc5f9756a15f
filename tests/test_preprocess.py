"""Preprocessing against the training code's reference vectors and hand-computed cases (SPEC §2)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from hms_infer.cli import main
from hms_infer.constants import ELECTRODES
from hms_infer.montage import BIPOLAR_PAIRS, VIEWS
from hms_infer.preprocess import eeg_electrodes, spectrogram_image
from hms_infer.montage import bipolar, montage_index

from .conftest import reference_strides


@pytest.mark.parametrize("split", ["test", "train"])
def test_inputs_command_reproduces_every_reference_row_and_view(reference, split, tmp_path):
    expected = np.load(reference / "expected_inputs.npz")
    eeg_stride, spect_stride = reference_strides(reference)  # the compact set keeps every n-th value
    wanted = [k for k in expected.files if k.startswith(f"{split}/")]
    assert wanted
    got = {}
    for view in VIEWS:
        out = tmp_path / f"{split}_{view}.npz"
        assert main(["inputs", "--data-dir", str(reference / "hms_sample"), "--split", split,
                     "--flip", view, "--out", str(out)]) == 0
        got.update(np.load(out))
    for key in wanted:
        assert key in got, key
        value = got[key][:, ::eeg_stride] if "/eeg/" in key else got[key][:, ::spect_stride, ::spect_stride]
        assert value.shape == expected[key].shape and got[key].dtype == np.float32
        np.testing.assert_allclose(value, expected[key], rtol=0, atol=1e-4, err_msg=key)


def test_flip_index_maps_follow_the_electrode_renaming():
    first, second = montage_index("lr")
    names = [(ELECTRODES[a], ELECTRODES[b]) for a, b in zip(first, second)]
    assert names[0] == ("O2", "T6") and names[4] == ("O1", "T5")  # chain A left <-> right
    assert names[16] == ("Fz", "F8") and names[22] == ("P4", "P3")
    first, second = montage_index("fb")
    names = [(ELECTRODES[a], ELECTRODES[b]) for a, b in zip(first, second)]
    assert names[0] == ("Fp1", "F7") and names[18] == ("Cz", "T3") and names[22] == ("F3", "F4")
    first, second = montage_index("lrfb")
    assert (ELECTRODES[first[0]], ELECTRODES[second[0]]) == ("Fp2", "F8")
    assert montage_index("none") == tuple(
        tuple(ELECTRODES.index(p[i]) for p in BIPOLAR_PAIRS) for i in (0, 1))


def test_bipolar_views_are_signed_permutations_of_the_unflipped_signals():
    rng = np.random.default_rng(0)
    el = rng.standard_normal((19, 50)).astype(np.float32)
    none, fb = bipolar(el, "none"), bipolar(el, "fb")
    np.testing.assert_array_equal(none[0], el[ELECTRODES.index("O1")] - el[ELECTRODES.index("T5")])
    np.testing.assert_array_equal(fb[0], -none[3])  # O1-T5 -> Fp1-F7 = -(F7-Fp1)
    np.testing.assert_array_equal(bipolar(el, "lr")[0], none[4])  # O1-T5 -> O2-T6


def test_eeg_nan_rules_clip_scale_and_causal_filter():
    x = np.zeros((400, 19), dtype=np.float32)
    x[:, 0] = 10.0
    x[::2, 0] = np.nan  # column 0: NaN -> its nanmean (10)
    x[:, 1] = np.nan  # all-NaN column -> 0
    x[:, 2] = 5000.0  # clipped to 1024
    x[:, 3] = np.arange(400)
    out = eeg_electrodes(x)
    assert out.shape == (19, 400) and out.dtype == np.float32
    b, a = signal.butter(4, 0.5, btype="low")
    expect = signal.lfilter(b, a, np.full(400, 10 / 32)).astype(np.float32)
    np.testing.assert_allclose(out[0], expect, atol=1e-7)
    assert np.all(out[1] == 0)
    np.testing.assert_allclose(out[2], signal.lfilter(b, a, np.full(400, 32.0)).astype(np.float32), atol=1e-6)
    assert out[3, 0] == pytest.approx(0.0) and out[3, 0] != out[3, 1]  # causal: starts from zero state


def test_spectrogram_layout_differences_and_normalisation():
    rng = np.random.default_rng(1)
    x = rng.lognormal(2, 1, size=(300, 4, 100)).astype(np.float32)
    img = spectrogram_image(x)
    assert img.shape == (10, 300, 100) and img.dtype == np.float32
    raw = np.concatenate([x.transpose(1, 0, 2), np.stack([x[:, i] - x[:, j] for i, j in
                          ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))])])
    logged = np.log(np.clip(raw, np.exp(-7), np.exp(10)))
    m, s = logged.mean(), logged.std() + 1e-6
    np.testing.assert_allclose(img, np.clip((logged - m) / s, -16, 16), atol=1e-4)


def test_spectrogram_nan_fill_depends_on_the_mean():
    # mean of the logs >= 1: NaN -> the mean, which normalises to exactly 0
    high = np.empty((300, 4, 100), dtype=np.float32)
    high[:] = np.array([1e4, 1e3, 1e2, 10], dtype=np.float32)[:, None]
    high[0, 0, 0] = np.nan  # region 0 and its differences with regions 1-3 are NaN there
    img = spectrogram_image(high)
    assert abs(img[0, 0, 0]) < 1e-6 and abs(img[4, 0, 0]) < 1e-6 and abs(img[3, 0, 0]) > 0.1
    # mean < 1: NaN -> 0 before normalising, so it lands at (0 - m) / s
    low = np.full((300, 4, 100), 0.5, dtype=np.float32)
    low[0, 0, 0] = np.nan
    logs = np.concatenate([np.full(4 * 30000, np.log(0.5)), np.full(6 * 30000, -7.0)])
    logs = np.delete(logs, [0, 4 * 30000, 5 * 30000, 6 * 30000])  # the NaN entries (region 0 and its 3 diffs)
    m, s = logs.mean(), logs.std() + 1e-6
    assert m < 1
    assert spectrogram_image(low)[0, 0, 0] == pytest.approx((0 - m) / s, abs=1e-4)
    assert np.all(spectrogram_image(np.full((300, 4, 100), np.nan, dtype=np.float32)) == 0)
