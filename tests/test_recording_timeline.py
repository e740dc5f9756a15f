"""`timeline --recording`: clinical files (FIF, EDF, BDF, EDF+D, pyedflib's own test file) through the ensemble,
against the competition-folder path on the same signals.

The signals are a synthetic training recording (`synthetic.write_recording`, 900 s, NaN replaced by 0: EDF cannot
hold NaN) written both as the Kaggle parquet and as clinical files (`tests/recording_files`). The members are two
tiny random models whose heads answer their inputs (`test_timeline_heads.spread_model`), unequal weights, two views.
Expected values: the `--data-dir` path's (its windows cut from the parquet file, every window preprocessed there),
the count formula, and the window table recomputed with numpy.
"""
from __future__ import annotations

import copy
import json
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

pytest.importorskip("matplotlib")
pytest.importorskip("mne")
pyedflib = pytest.importorskip("pyedflib")

import hms_infer  # noqa: E402
from hms_infer.cli import main  # noqa: E402
from hms_infer.constants import ELECTRODES, SUBMISSION_CLASSES, VOTE_COLUMNS  # noqa: E402
from hms_infer.errors import HMSInputError  # noqa: E402
from hms_infer.recordings import windows as windows_module  # noqa: E402
from hms_infer.synthetic import write_recording  # noqa: E402
from hms_infer.timeline import window_count  # noqa: E402

from .recording_files import quantisation_step, write_edf, write_edf_discontinuous, write_fif  # noqa: E402
from .test_timeline import ARCH  # noqa: E402
from .test_timeline_heads import spread_model  # noqa: E402

SECONDS, STRIDE = 900.0, 100.0
EEG_ID, SPECT_ID = 8201, 9201
MODERN = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}
START = datetime(2024, 3, 1, 22, 30, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("recording")
    data = root / "data"
    write_recording(data, EEG_ID, SPECT_ID, SECONDS, label_offsets=(0.0,), shift_s=100.0, seed=5)
    path = data / "train_eegs" / f"{EEG_ID}.parquet"
    eeg = pd.read_parquet(path)
    eeg = eeg.fillna(0.0).astype(np.float32)
    eeg.to_parquet(path, index=False)
    weights = root / "weights"
    weights.mkdir()
    members = []
    for k in range(2):
        torch.save(spread_model(60 + k).state_dict(), weights / f"m{k}.pt")
        members.append({"name": f"m{k}", "checkpoint": f"m{k}.pt", "arch": copy.deepcopy(ARCH), "weight": 1.0 + k})
    manifest = weights / "weights_manifest.yaml"
    manifest.write_text(yaml.safe_dump({"version": 1, "tta": ["none", "lr"], "blend": "prob", "members": members}))
    x = eeg[list(ELECTRODES)].to_numpy(np.float64)
    return {"root": root, "data": data, "manifest": manifest, "x": x, "ekg": eeg["EKG"].to_numpy(np.float64),
            "runs": {}}


def options(case: dict, *extra: str) -> list[str]:
    return ["--stride", str(STRIDE), "--manifest", str(case["manifest"]), "--device", "cpu", "--batch-size", "4",
            "--num-workers", "0", *extra]


def kaggle(case: dict, *extra: str) -> pd.DataFrame:
    """The competition-folder timeline's grid windows (computed once per option set)."""
    key = ("kaggle", *extra)
    if key not in case["runs"]:
        out = case["root"] / f"kaggle{len(case['runs'])}"
        assert main(["timeline", "--data-dir", str(case["data"]), "--all", "--out", str(out),
                     *options(case, *extra)]) == 0
        case["runs"][key] = pd.read_parquet(out / "timeline.parquet")
    return case["runs"][key]


def recording(case: dict, path: Path, out: Path, *extra: str) -> pd.DataFrame:
    assert main(["timeline", "--recording", str(path), "--out", str(out), *options(case, *extra)]) == 0
    return pd.read_parquet(out / "timeline.parquet")


def probs(frame: pd.DataFrame) -> np.ndarray:
    return frame[list(VOTE_COLUMNS)].to_numpy()


def test_fif_identity_with_the_competition_path(case, tmp_path):
    """A float file gives the competition path's numbers for the EEG-only heads (1e-6), window for window."""
    path = write_fif(tmp_path / "rec.fif", np.column_stack([case["x"], case["ekg"]]), [*ELECTRODES, "EKG"], 200,
                     meas_date=START, ch_types=["eeg"] * 19 + ["ecg"])
    frame = recording(case, path, tmp_path / "out")
    want = kaggle(case, "--heads", "eeg")
    n = window_count(int(SECONDS * 200), int(STRIDE * 200))
    assert frame["offset_s"].tolist() == [k * STRIDE for k in range(n)] == want["offset_s"].tolist()
    np.testing.assert_allclose(probs(frame), probs(want), atol=1e-6, rtol=0)
    assert np.ptp(probs(frame), axis=0).max() > 0.05  # the windows differ
    assert (frame["recording"] == "rec.fif").all() and (frame["segment"] == 0).all()
    np.testing.assert_array_equal(frame["start_s"], frame["offset_s"])
    assert frame["time"].iloc[1] == pd.Timestamp(START) + pd.Timedelta(seconds=STRIDE)
    assert (frame["missing_channels"] == 0).all() and (frame["spect_padded_frames"] == 300).all()
    np.testing.assert_array_equal(frame["flat_channels"], want["flat_channels"])  # C3 flat from 20% on
    # the Python API: the same 19 electrodes in µV at 200 Hz
    data = hms_infer.read_recording(path)
    assert len(data.segments) == 1
    np.testing.assert_allclose(data.segments[0], case["x"], rtol=2 ** -23, atol=1e-6)


@pytest.mark.parametrize("bdf", [False, True])
def test_edf_bdf_within_the_quantisation_bound(case, tmp_path, bdf):
    """16-bit EDF / 24-bit BDF: each sample within one step q (edflib truncates) of its value, q = the channel's
    physical range / (2^16 - 1) or / (2^24 - 1). Bound: 3x the largest change the same size of error gives on the
    competition path, measured by adding uniform noise of +-q to the parquet's signals."""
    x = case["x"]
    path = write_edf(tmp_path / ("rec.bdf" if bdf else "rec.edf"), x, ELECTRODES, 200, bdf=bdf)
    frame = recording(case, path, tmp_path / "out")
    step = quantisation_step(x, bdf=bdf)
    noisy = case["root"] / f"noisy{int(bdf)}"
    if not noisy.exists():
        import shutil
        shutil.copytree(case["data"], noisy)
        eeg = pd.read_parquet(noisy / "train_eegs" / f"{EEG_ID}.parquet")
        rng = np.random.default_rng(1)
        eeg[list(ELECTRODES)] += (rng.uniform(-1, 1, size=x.shape) * step).astype(np.float32)
        eeg.to_parquet(noisy / "train_eegs" / f"{EEG_ID}.parquet", index=False)
    out = tmp_path / "noisy_out"
    assert main(["timeline", "--data-dir", str(noisy), "--all", "--heads", "eeg", "--out", str(out),
                 *options(case)]) == 0
    clean = probs(kaggle(case, "--heads", "eeg"))
    bound = 3 * np.abs(probs(pd.read_parquet(out / "timeline.parquet")) - clean).max()
    err = np.abs(probs(frame) - clean).max()
    assert step.max() < (0.1 if not bdf else 0.1 / 256)  # this signal spans about +-2500 µV
    print(f"{path.name}: step <= {step.max():.3g} µV, max |dprob| {err:.3g}, bound {bound:.3g}")
    assert 0 < err <= bound, (err, bound)


def test_clinical_labels_give_identical_output(case, tmp_path):
    """TUH-style labels with the modern names, shuffled, with ECG / photic / EMG channels: the same numbers."""
    plain = recording(case, write_fif(tmp_path / "plain.fif", case["x"], ELECTRODES, 200), tmp_path / "o1")
    rng = np.random.default_rng(0)
    labels = [f"EEG {MODERN.get(e, e).upper()}-REF" for e in ELECTRODES] + ["EEG EKG1-REF", "PHOTIC-REF", "EMG"]
    data = np.column_stack([case["x"], case["ekg"], np.zeros(len(case["x"])), rng.normal(size=len(case["x"]))])
    order = rng.permutation(len(labels))
    path = write_fif(tmp_path / "tuh.fif", data[:, order], [labels[i] for i in order], 200)
    tuh = recording(case, path, tmp_path / "o2")
    np.testing.assert_array_equal(probs(tuh), probs(plain))
    le = write_fif(tmp_path / "le.fif", case["x"], [f"{e}-LE" for e in ELECTRODES], 200)
    np.testing.assert_array_equal(probs(recording(case, le, tmp_path / "o3")), probs(plain))
    steps = json.loads((tmp_path / "o2" / "timeline.json").read_text())["recordings"][0]
    assert steps["channels"]["T3"] == "EEG T7-REF" and steps["channels"]["Fp1"] == "EEG FP1-REF"


def test_missing_electrode_error_and_allow_missing(case, tmp_path, capsys):
    keep = [e for e in ELECTRODES if e != "O2"]
    path = write_fif(tmp_path / "no_o2.fif", case["x"][:, [ELECTRODES.index(e) for e in keep]], keep, 200)
    assert main(["timeline", "--recording", str(path), "--out", str(tmp_path / "out"), *options(case)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and "no channel for electrode(s) O2" in err
    assert "labels found: Fp1, F3" in err and "--allow-missing" in err
    assert not (tmp_path / "out").exists()
    frame = recording(case, path, tmp_path / "out", "--allow-missing")
    assert (frame["missing_channels"] == 1).all() and np.isfinite(probs(frame)).all()
    np.testing.assert_allclose(frame["eeg_nan_share"].min(), 1 / 19, rtol=1e-9)
    info = json.loads((tmp_path / "out" / "timeline.json").read_text())["recordings"][0]
    assert info["missing"] == ["O2"] and any("no channel for O2" in n for n in info["notes"])
    assert "no channel for O2" in (tmp_path / "out" / "no_o2.fif.html").read_text()
    assert np.abs(probs(frame) - probs(kaggle(case, "--heads", "eeg"))).max() > 1e-4  # O2 mattered


def test_higher_rates_resampled_to_200_hz(case, tmp_path):
    """The same band-limited signal (sines of 0.5-30 Hz) sampled at 200, 256 and 500 Hz: within 2e-3 in
    probability (resample_poly's Kaiser filter passes 0-30 Hz flat to ~1e-4; its transients at the file's two ends
    enter the first and last windows)."""
    rng = np.random.default_rng(7)
    freqs, phases = rng.uniform(0.5, 30, size=(6, 19)), rng.uniform(0, 2 * np.pi, size=(6, 19))
    amps = rng.uniform(5, 60, size=(6, 19))

    def signal(fs: int) -> np.ndarray:
        t = np.arange(int(SECONDS * fs))[:, None, None] / fs
        return (amps * np.sin(2 * np.pi * freqs * t + phases)).sum(axis=1)

    frames = {fs: recording(case, write_fif(tmp_path / f"r{fs}.fif", signal(fs), ELECTRODES, fs), tmp_path / str(fs))
              for fs in (200, 256, 500)}
    for fs in (256, 500):
        err = np.abs(probs(frames[fs]) - probs(frames[200])).max()
        print(f"{fs} Hz: max |dprob| {err:.3g} against the 200-Hz file")
        assert err <= 2e-3, (fs, err)
        assert frames[fs]["offset_s"].tolist() == frames[200]["offset_s"].tolist()
    steps = json.loads((tmp_path / "256" / "timeline.json").read_text())["recordings"][0]["steps"]
    assert any("256 Hz" in s and "up 25" in s.replace("=", " ") for s in steps), steps


def test_pyedflib_test_file(case, tmp_path, capsys):
    """pyedflib's test_generator.edf (200 Hz, 600 s, written by EDF tools, no electrode names): the clear error,
    then with a channel map onto its signals (and the rest NaN) a complete timeline."""
    src = Path(pyedflib.data.get_generator_filename())
    labels = pyedflib.EdfReader(str(src)).getSignalLabels()
    assert main(["timeline", "--recording", str(src), "--out", str(tmp_path / "x"), *options(case)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(src) in err and labels[0] in err
    cmap = tmp_path / "map.yaml"
    cmap.write_text(yaml.safe_dump(dict(zip(labels, ELECTRODES))))
    frame = recording(case, src, tmp_path / "out", "--channel-map", str(cmap), "--allow-missing", "--stride", "50")
    assert len(frame) == window_count(600 * 200, 50 * 200) == 12
    assert (frame["missing_channels"] == 19 - len(labels)).all() and np.isfinite(probs(frame)).all()
    assert (tmp_path / "out" / "summary.csv").is_file() and (tmp_path / "out" / "test_generator.edf.html").is_file()


def test_discontinuous_edf_one_timeline_per_segment(case, tmp_path):
    """EDF+D with two segments and a 30-s one: each segment its own windows on the file clock, never joined; the
    short one left out with a note; the annotations on the page."""
    x = case["x"]
    segments = [(0.0, x[:200 * 200]), (300.0, x[200 * 200:420 * 200]), (700.0, x[:30 * 200])]
    path = write_edf_discontinuous(tmp_path / "d.edf", segments, ELECTRODES, 200,
                                   annotations=[(10.0, 0.0, "eyes open"), (350.0, 5.0, "seizure?")])
    frame = recording(case, path, tmp_path / "out", "--stride", "25", "--at", "330")
    assert frame["segment"].tolist() == [0] * 7 + [1] * 7
    np.testing.assert_array_equal(frame["offset_s"], [25.0 * k for k in range(7)] * 2)
    np.testing.assert_array_equal(frame["start_s"], [25.0 * k for k in range(7)] + [300 + 25.0 * k for k in range(7)])
    info = json.loads((tmp_path / "out" / "timeline.json").read_text())["recordings"][0]
    assert [s["start_s"] for s in info["segments"]] == [0.0, 300.0, 700.0]
    assert any("segment 2" in n and "left out" in n for n in info["notes"]) and info["annotations"] == 2
    page = (tmp_path / "out" / "d.edf.html").read_text()
    assert "segment 2" in page and "seizure?" in page
    # --at 330 s: the report's figure of the window starting nearest to it (segment 1 at 25 s, 325 s on the clock)
    assert "The window at 325 s (--at)" in page and "d.edf segment 1 window at 25 s (no spectrogram" in page
    assert "file not found" not in page
    assert frame["time"].iloc[7] == pd.Timestamp("2020-01-02 03:04:05", tz="UTC") + pd.Timedelta(seconds=300)


def test_summary_and_page_agree_with_the_window_table(case, tmp_path):
    path = write_fif(tmp_path / "rec.fif", case["x"], ELECTRODES, 200, meas_date=START)
    frame = recording(case, path, tmp_path / "out", "--threshold", "0.3", "--stride", "20")
    table = pd.read_csv(tmp_path / "out" / "summary.csv")
    p = probs(frame)
    hour = np.floor((frame["start_s"].to_numpy() + 25) / 3600).astype(int)
    whole = table[table["scope"] == "recording"].iloc[0]
    assert whole["windows"] == len(frame)
    np.testing.assert_allclose(whole["seizure_burden_min_per_h"], 60 * (p[:, 0] > 0.3).mean(), atol=1e-9)
    top = np.bincount(p.argmax(1), minlength=6) / len(p)
    np.testing.assert_allclose([whole[f"top_{c}"] for c in SUBMISSION_CLASSES], top, atol=1e-9)
    np.testing.assert_allclose([whole[f"mean_{c}"] for c in SUBMISSION_CLASSES], p.mean(0), atol=1e-9)
    hours = table[table["scope"] == "hour"]
    assert hours["hour"].tolist() == sorted(set(hour.tolist()))
    for _, row in hours.iterrows():
        mine = p[hour == row["hour"]]
        np.testing.assert_allclose(row["seizure_burden_min_per_h"], 60 * (mine[:, 0] > 0.3).mean(), atol=1e-9)
    assert whole["clock_start"].startswith("2024-03-01T22:30:00")
    page = (tmp_path / "out" / "rec.fif.html").read_text()
    cells = re.findall(r'data-col="seizure_burden_min_per_h" data-value="([^"]+)"', page)
    np.testing.assert_allclose(float(cells[0]), whole["seizure_burden_min_per_h"], atol=1e-9)
    assert '<img id="trend"' in page


def test_multitaper_recording_matches_the_competition_path(case, tmp_path, monkeypatch):
    """`--spectrogram multitaper` (head_all): the frames built block by block (odd 7.3-s blocks, units of 2 windows,
    frames dropped behind) equal the competition path's, built from the whole EEG at once."""
    monkeypatch.setattr(windows_module, "RECORDING_BLOCK_S", 7.3)
    path = write_fif(tmp_path / "rec.fif", case["x"], ELECTRODES, 200)
    frame = recording(case, path, tmp_path / "out", "--spectrogram", "multitaper", "--chunk-windows", "2")
    want = kaggle(case, "--spectrogram", "multitaper")
    np.testing.assert_allclose(probs(frame), probs(want), atol=1e-6, rtol=0)
    np.testing.assert_array_equal(frame["spect_padded_frames"], want["spect_padded_frames"])
    assert np.abs(probs(frame) - probs(kaggle(case, "--heads", "eeg"))).max() > 1e-3  # head_all, not the EEG heads


def test_resume_and_shards_give_the_same_table(case, tmp_path):
    path = write_fif(tmp_path / "rec.fif", case["x"], ELECTRODES, 200)
    whole = recording(case, path, tmp_path / "whole", "--chunk-windows", "3")
    out = tmp_path / "resumed"
    args = ["timeline", "--recording", str(path), "--out", str(out), *options(case, "--chunk-windows", "3")]
    assert main([*args, "--time-limit", "0"]) == 3  # stopped after the first unit
    assert len(list((out / "timeline.parts").glob("unit-*.npz"))) == 1 and not (out / "timeline.parquet").exists()
    assert main(args) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "timeline.parquet"), whole)
    sharded = tmp_path / "sharded"
    args = ["timeline", "--recording", str(path), "--out", str(sharded), *options(case, "--chunk-windows", "3")]
    assert main([*args, "--shard", "0/2"]) == 0 and not (sharded / "timeline.parquet").exists()
    assert main([*args, "--shard", "1/2"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(sharded / "timeline.parquet"), whole)


def test_folder_skips_bad_files_and_does_the_others(case, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_fif(folder / "good.fif", case["x"], ELECTRODES, 200)
    (folder / "corrupt.edf").write_bytes(b"0       garbage" * 20)
    write_fif(folder / "short.fif", case["x"][:40 * 200], ELECTRODES, 200)
    flat = case["x"].copy()
    flat[:, ELECTRODES.index("Cz")] = 3.0
    write_fif(folder / "flat.fif", flat, ELECTRODES, 200)
    nothing = write_fif(folder / "ecg.fif", case["x"][:, :3], ["ECG", "EMG", "Resp"], 200)
    (folder / "notes.txt").write_text("not a recording")
    out = tmp_path / "out"
    assert main(["timeline", "--recording", str(folder), "--out", str(out), *options(case)]) == 0
    err = capsys.readouterr().err
    frame = pd.read_parquet(out / "timeline.parquet")
    assert set(frame["recording"]) == {"good.fif"}
    info = {r["recording"]: r for r in json.loads((out / "timeline.json").read_text())["recordings"]}
    assert {k for k, r in info.items() if r["status"] == "skipped"} == {"corrupt.edf", "short.fif", "flat.fif",
                                                                      "ecg.fif"}
    assert "Cz" in info["flat.fif"]["notes"][0] and "50-s window" in info["short.fif"]["notes"][0]
    assert str(nothing) in info["ecg.fif"]["notes"][0]
    index = (out / "index.html").read_text()
    assert all(name in index for name in info) and "Traceback" not in err
    # a folder of bad files only: one error naming each
    for name in ("good.fif", "flat.fif", "ecg.fif"):
        (folder / name).unlink()
    assert main(["timeline", "--recording", str(folder), "--out", str(tmp_path / "o"), *options(case)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "none of its 2 recordings can be used" in err and "corrupt.edf" in err and "short.fif" in err
    assert not (tmp_path / "o").exists()
    # one file: its error in one line, exit 2
    assert main(["timeline", "--recording", str(folder / "corrupt.edf"), "--out", str(tmp_path / "o"),
                 *options(case)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(folder / "corrupt.edf") in err and "Traceback" not in err


def test_recording_option_errors(case, tmp_path, capsys):
    path = write_fif(tmp_path / "rec.fif", case["x"][:60 * 200], ELECTRODES, 200)
    for extra, text in ((["--heads", "all"], "--heads all needs a spectrogram"),
                        (["--spectrogram", "kaggle"], "no Kaggle spectrogram"),
                        (["--all"], "--eeg-id and --all choose recordings"),
                        (["--threshold", "1.5"], "--threshold must be a probability"),
                        (["--split", "test"], "--split: options of --data-dir"),
                        (["--chunk-recordings", "2"], "--chunk-recordings: options of --data-dir")):
        assert main(["timeline", "--recording", str(path), "--out", str(tmp_path / "o"), *options(case),
                     *extra]) == 2
        assert text in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_without_mne_a_one_line_error(case, tmp_path, capsys, monkeypatch):
    path = write_fif(tmp_path / "rec.fif", case["x"][:60 * 200], ELECTRODES, 200)
    monkeypatch.setitem(sys.modules, "mne", None)  # `import mne` fails as where it is not installed
    assert main(["timeline", "--recording", str(path), "--out", str(tmp_path / "o"), *options(case)]) == 2
    assert capsys.readouterr().err.strip() == ("hms_infer: error: clinical recordings are read with MNE-Python: pip "
                                               "install 'hms_infer[recordings]'")


def test_a_file_failing_while_read(case, tmp_path, capsys, monkeypatch):
    """A file whose data cannot be read past some point (a damaged record): in a folder, skipped with its reason
    and the others done; alone, its one-line error (exit 2). Injected: the reader fails past 300 s of b.fif."""
    from hms_infer.recordings.reader import ClinicalRecording

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.fif", "b.fif"):
        write_fif(folder / name, case["x"], ELECTRODES, 200)
    get = ClinicalRecording._get

    def damaged(self, group, a, b):
        if self.path.name == "b.fif" and b > 300 * 200:
            raise HMSInputError(f"{self.path}: MNE failed reading samples {a}..{b} (injected)")
        return get(self, group, a, b)

    monkeypatch.setattr(ClinicalRecording, "_get", damaged)
    out = tmp_path / "out"
    assert main(["timeline", "--recording", str(folder), "--out", str(out),
                 *options(case, "--chunk-windows", "2")]) == 0
    assert set(pd.read_parquet(out / "timeline.parquet")["recording"]) == {"a.fif"}
    info = {r["recording"]: r for r in json.loads((out / "timeline.json").read_text())["recordings"]}
    assert info["b.fif"]["status"] == "skipped" and "(injected)" in info["b.fif"]["notes"][0]
    assert "b.fif" in (out / "index.html").read_text()
    capsys.readouterr()
    assert main(["timeline", "--recording", str(folder / "b.fif"), "--out", str(tmp_path / "o"), *options(case)]) == 2
    err = capsys.readouterr().err.strip()  # after the progress bar, the error in one line
    assert "Traceback" not in err
    assert re.fullmatch(rf"hms_infer: error: {re.escape(str(folder / 'b.fif'))}: MNE failed reading samples "
                        r"\d+\.\.\d+ \(injected\)", err.splitlines()[-1]), err


def test_the_fingerprint_sees_every_file_of_a_recording(tmp_path):
    """A BrainVision recording is its .vhdr, .vmrk and .eeg: rewriting its data file changes the run's key (its
    parts are not reused); a file of another stem does not."""
    import os

    from hms_infer.tasks.timeline_recording import file_key

    from .recording_files import write_brainvision

    x = np.zeros((1000, 19))
    header = write_brainvision(tmp_path / "rec.vhdr", x, ELECTRODES, 200)
    write_brainvision(tmp_path / "other.vhdr", x, ELECTRODES, 200)
    key = file_key(header)
    assert [k[0] for k in key[1:]] == ["rec.eeg", "rec.vhdr", "rec.vmrk"]
    os.utime(tmp_path / "other.eeg", ns=(1, 1))
    assert file_key(header) == key
    os.utime(tmp_path / "rec.eeg", ns=(1, 1))
    assert file_key(header) != key
