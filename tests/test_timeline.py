"""`timeline`: whole recordings, window by window, against the main command on test rows built from the same windows.

The recordings are synthetic training recordings (`synthetic.write_recording`): 90 s with labelled windows on the
stride's grid and off it; 60 s whose spectrogram ends before the EEG; 30 s (shorter than a window). The members
are two tiny random models with `head_all` scaled (as `bench`), unequal weights, two views. Expected values come
from `predict` on a test folder whose files are the windows cut by hand (pandas, not hms_infer's cutting code), from
the table by hand (shift, KL), and from the count formula.
"""
from __future__ import annotations

import base64
import copy
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

from hms_infer import data as data_module  # noqa: E402
from hms_infer import predict  # noqa: E402
from hms_infer.cli import main  # noqa: E402
from hms_infer.constants import EEG_COLUMNS, SUBMISSION_CLASSES, VOTE_COLUMNS  # noqa: E402
from hms_infer.data import Competition, cut_spectrogram, eeg_start, spectrogram_start  # noqa: E402
from hms_infer.ensemble import Ensemble  # noqa: E402
from hms_infer.errors import HMSInputError  # noqa: E402
from hms_infer.preprocess import eeg_electrodes, spectrogram_image  # noqa: E402
from hms_infer.report import timeline_figure  # noqa: E402
from hms_infer.report.timeline import draw_timeline  # noqa: E402
from hms_infer.members import random_model  # noqa: E402
from hms_infer.synthetic import write_competition, write_recording  # noqa: E402
from hms_infer.tasks.timeline import timeline  # noqa: E402
from hms_infer.timeline import (  # noqa: E402
    Label, Recording, RecordingResult, RecordingWindows, plan_recordings, plan_windows, predict_recordings,
    stride_samples, timeline_frame, window_count,
)

from .test_report import Tables  # noqa: E402

# the cheapest tiny member the architecture allows (one WaveNet block, a coarse STFT)
ARCH = {"backbone": "test_efficientnet", "backbone_comp": "test_efficientnet",
        "stft": {"n_fft": 64, "win_length": 64, "hop_length": 100, "fmax": 40.0, "window": "cosine",
                 "freq_scale": "linear", "stack_factor": 2},
        "wavenet": {"n_blocks": 1, "out_channels": 3, "ds_factor": 20}}
STRIDE = 10.0
LONG, CLIPPED, SHORT = 7001, 7002, 7003  # eeg_ids; spectrogram_id = eeg_id + 1000
RECORDINGS = {LONG: dict(seconds=90.0, label_offsets=(20.0, 33.0), shift_s=100.0),
              CLIPPED: dict(seconds=60.0, label_offsets=(0.0, 6.0), shift_s=40.0, spect_end_s=300.0),
              SHORT: dict(seconds=30.0, label_offsets=(0.0,), shift_s=20.0)}
WINDOWS = {LONG: [0.0, 10.0, 20.0, 30.0, 33.0, 40.0], CLIPPED: [0.0, 6.0, 10.0], SHORT: [0.0]}


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("timeline")
    data = root / "data"
    for k, (eeg_id, spec) in enumerate(RECORDINGS.items()):
        write_recording(data, eeg_id, eeg_id + 1000, seed=k, **spec)
    weights = root / "weights"
    weights.mkdir()
    members = []
    for k in range(2):
        torch.save(random_model(ARCH, seed=20 + k).state_dict(), weights / f"m{k}.pt")
        members.append({"name": f"m{k}", "checkpoint": f"m{k}.pt", "arch": copy.deepcopy(ARCH), "weight": 1.0 + k})
    manifest = weights / "weights_manifest.yaml"
    manifest.write_text(yaml.safe_dump({"version": 1, "tta": ["none", "lr"], "blend": "prob", "members": members}))
    return {"root": root, "data": data, "manifest": manifest, "table": pd.read_csv(data / "train.csv")}


def args(case: dict, out: Path, *extra: str) -> list[str]:
    return ["timeline", "--data-dir", str(case["data"]), "--all", "--stride", str(STRIDE), "--manifest",
            str(case["manifest"]), "--device", "cpu", "--batch-size", "2", "--num-workers", "0",
            "--chunk-recordings", "1", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def single(case, tmp_path_factory) -> dict:
    """One uninterrupted run of the command over the three recordings, with the zoom of --at 20."""
    out = tmp_path_factory.mktemp("single") / "timeline"
    assert main(args(case, out, "--at", "20")) == 0
    return {"out": out, "frame": pd.read_parquet(out / "timeline.parquet"),
            "report": json.loads((out / "timeline.json").read_text())}


def test_window_count_stride_and_plan():
    for rows, stride, want in ((10000, 2.0, 1), (10399, 2.0, 1), (10400, 2.0, 2), (720000, 2.0, 1776),
                               (18000, 10.0, 5), (18000, 0.005, 8001), (6000, 2.0, 1)):
        step = stride_samples(stride)
        length = rows / 200
        assert window_count(rows, step) == (int(np.floor((length - 50) / stride)) + 1 if length >= 50 else 1) == want
    for bad in (0, -2, 0.001, 2.0025, float("nan"), "2"):
        with pytest.raises(HMSInputError, match="--stride must be a positive multiple of 0.005 s"):
            stride_samples(bad)
    rec = Recording(1, 2, 7.0, (Label(0, 10, 20.0, 27.0, None), Label(1, 11, 3.0, 10.5, None)))
    w = plan_windows(rec, 80 * 200, 400)  # 80 s, stride 2 s: 16 grid windows and the off-grid label at 3 s
    assert len(w.start) == 17 and w.offset_s.tolist() == sorted([2.0 * k for k in range(16)] + [3.0])
    assert w.start.tolist() == [int(o * 200) for o in w.offset_s]
    k3, k20 = w.offset_s.tolist().index(3.0), w.offset_s.tolist().index(20.0)
    assert w.spect_offset_s[k3] == 10.5 and w.spect_offset_s[k20] == 27.0  # a label row's own offsets
    assert w.spect_offset_s[0] == 7.0 and w.spect_offset_s[-1] == 37.0  # offset + shift


def _test_folder(case: dict, root: Path, windows: list[tuple[int, float]]) -> Path:
    """A test folder whose row k's EEG and spectrogram files are window k cut by hand from its recording: EEG rows
    [int(o * 200), + 10000) (NaN past the end), spectrogram frames [s, s + 598], s = int(o + shift) made odd."""
    table = case["table"]
    (root / "test_eegs").mkdir(parents=True)
    (root / "test_spectrograms").mkdir()
    rows = []
    for k, (eeg_id, offset) in enumerate(windows):
        eeg = pd.read_parquet(case["data"] / "train_eegs" / f"{eeg_id}.parquet")
        cut = eeg.iloc[int(offset * 200):int(offset * 200) + 10000].reset_index(drop=True)
        cut = cut.reindex(range(10000))  # NaN rows past the end
        assert list(cut.columns) == list(EEG_COLUMNS)
        cut.to_parquet(root / "test_eegs" / f"{k}.parquet", index=False)
        shift = float((table.spectrogram_label_offset_seconds - table.eeg_label_offset_seconds)[
            table.eeg_id == eeg_id].iloc[0])
        start = int(offset + shift)
        start += start % 2 == 0
        spect = pd.read_parquet(case["data"] / "train_spectrograms" / f"{eeg_id + 1000}.parquet")
        times = pd.DataFrame({"time": start + 2.0 * np.arange(300)})
        times.merge(spect, on="time", how="left").to_parquet(root / "test_spectrograms" / f"{k}.parquet",
                                                              index=False)
        rows.append({"spectrogram_id": k, "eeg_id": k, "patient_id": 1})
    pd.DataFrame(rows).to_csv(root / "test.csv", index=False)
    return root


def test_each_window_equals_predict_on_a_test_row_of_the_same_window(case, single, tmp_path):
    """The start, the middle and the end (no label: their spectrogram offset is offset + shift), a labelled offset
    on the grid and one off it (the label row's offsets), a window whose spectrogram runs off the file, a recording
    shorter than 50 s: the timeline's probabilities are predict's for the test row holding that window."""
    frame = single["frame"]
    assert frame[["eeg_id", "offset_s"]].values.tolist() == [[e, o] for e in WINDOWS for o in WINDOWS[e]]
    picks = [(LONG, 0.0), (LONG, 30.0), (LONG, 40.0), (LONG, 20.0), (LONG, 33.0), (CLIPPED, 10.0), (SHORT, 0.0)]
    folder = _test_folder(case, tmp_path / "test", picks)
    sub = predict(folder, out=tmp_path / "sub.csv", manifest=case["manifest"], device="cpu", batch_size=4,
                  num_workers=0, progress=False)
    for k, (eeg_id, offset) in enumerate(picks):
        row = frame[(frame.eeg_id == eeg_id) & (frame.offset_s == offset)]
        np.testing.assert_allclose(row[list(VOTE_COLUMNS)].to_numpy()[0], sub.loc[k, list(VOTE_COLUMNS)].to_numpy(),
                                   rtol=0, atol=1e-6)
    probs = frame[list(VOTE_COLUMNS)].to_numpy()
    assert np.abs(probs.sum(axis=1) - 1).max() < 1e-9 and np.ptp(probs, axis=0).max() > 1e-4  # windows differ
    # the window's input quality: the spectrogram of the clipped recording ends at 299 s, before its windows
    clipped = frame[frame.eeg_id == CLIPPED]
    assert (clipped.spect_padded_frames > 0).all() and (frame[frame.eeg_id == LONG].spect_padded_frames == 0).all()
    short = frame[frame.eeg_id == SHORT]
    assert short.eeg_nan_share.iloc[0] > 0.4  # 20 of its 50 s are padding
    # C3 is flat from 18 s of the long recording on: the windows after it count it, those before not
    flat = dict(zip(frame[frame.eeg_id == LONG].offset_s, frame[frame.eeg_id == LONG].flat_channels))
    assert flat[20.0] >= 1 and flat[0.0] < flat[20.0]


def _window_inputs(comp: Competition, rec: Recording, step: int, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """The timeline's model inputs for its window at `offset` s of `rec`: (19, 10000) electrodes, the spectrogram
    image."""
    pieces = list(RecordingWindows(comp, [rec], step, 64).recording(0))
    k = np.concatenate([p.offset_s for p, _, _ in pieces]).tolist().index(offset)
    return torch.cat([e for _, e, _ in pieces])[k].numpy(), torch.cat([s for _, _, s in pieces])[k].numpy()


def _assert_predicts_inputs(comp: Competition, rec: Recording, step: int, row: int) -> None:
    """The window at `row`'s offset has the inputs `predict` reads for that row (`Competition`), bit for bit."""
    r = comp.rows[row]
    electrodes, image = _window_inputs(comp, rec, step, r.eeg_offset_s)
    np.testing.assert_array_equal(electrodes, eeg_electrodes(comp.read_eeg(r)))
    np.testing.assert_array_equal(image, spectrogram_image(comp.read_spectrogram(r)))


def test_a_labelled_window_on_the_grid_starts_where_predict_does(tmp_path):
    """Label offset 4.6 s with --stride 4.6: the grid puts its window at sample 920, predict at
    int(4.6 * 200) = 919 (4.6 * 200 = 919.99...): the labelled window is predict's."""
    data = write_recording(tmp_path / "data", 7201, 8201, 56.0, (4.6,), shift_s=10.0, seed=3)
    comp = Competition(data, "train")
    (rec,) = plan_recordings(comp)
    step = stride_samples(4.6)
    w = plan_windows(rec, 56 * 200, step)
    assert w.offset_s.tolist() == [0.0, 4.6] and w.start.tolist() == [0, eeg_start(4.6, 56 * 200)] == [0, 919]
    _assert_predicts_inputs(comp, rec, step, 0)


def test_a_test_table_with_offsets_is_predicts_window(case, tmp_path):
    """A test table with offset columns: predict reads the row's window there, not the centre; so does the
    timeline (its window at the row's offset)."""
    data = tmp_path / "data"
    for kind in ("eegs", "spectrograms"):
        (data / f"test_{kind}").mkdir(parents=True)
        shutil.copy(case["data"] / f"train_{kind}" / f"{LONG + 1000 * (kind != 'eegs')}.parquet",
                    data / f"test_{kind}")
    pd.DataFrame([{"spectrogram_id": LONG + 1000, "eeg_id": LONG, "eeg_label_offset_seconds": 4.6,
                   "spectrogram_label_offset_seconds": 57.0}]).to_csv(data / "test.csv", index=False)
    comp = Competition(data, "test")
    (rec,) = plan_recordings(comp)
    assert rec.shift_s is None and (rec.eeg_offset_s, rec.spectrogram_offset_s) == (4.6, 57.0)
    w = plan_windows(rec, 90 * 200, 2000, np.array([1.0, 999.0]))
    assert (w.start.tolist(), w.offset_s.tolist(), w.spect_offset_s.tolist()) == ([919], [4.6], [57.0])
    _assert_predicts_inputs(comp, rec, 2000, 0)


def test_the_shift_is_applied_and_disagreeing_rows_are_an_error(case, tmp_path, capsys):
    comp = Competition(case["data"], "train")
    recs = {r.eeg_id: r for r in plan_recordings(comp)}
    assert [r.shift_s for r in recs.values()] == [100.0, 40.0, 20.0]
    assert [lab.offset_s for lab in recs[LONG].labels] == list(RECORDINGS[LONG]["label_offsets"])
    # the spectrogram image of the window at 10 s is the one at 10 + 100 s of its file, not at 10 s
    (piece, _, images), = [item for item in RecordingWindows(comp, [recs[LONG]], 2000, 6).recording(0)]
    assert piece.offset_s.tolist() == WINDOWS[LONG]
    spect = data_module.read_spectrogram_recording(comp.spectrogram_path(LONG + 1000), "test")
    for k, shift in ((1, 100.0), (1, 0.0)):
        image = spectrogram_image(cut_spectrogram(*spect, spectrogram_start(10.0 + shift))[0])
        assert np.array_equal(images[k].numpy(), image) == (shift == 100.0)
    # rows of one eeg_id whose shifts disagree: a one-line error naming the eeg_id and both rows, before the models
    data = tmp_path / "data"
    shutil.copytree(case["data"], data)
    table = case["table"].copy()
    table.loc[1, "spectrogram_label_offset_seconds"] += 2
    table.to_csv(data / "train.csv", index=False)
    out = tmp_path / "out"
    argv = args(case, out)
    argv[argv.index("--data-dir") + 1] = str(data)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(rf"hms_infer: error: .*train\.csv: eeg_id {LONG}: rows 0 and 1 disagree "
                        r"\(spectrogram_label_offset_seconds - eeg_label_offset_seconds 100 s vs 102 s\).*\n", err)
    assert not out.exists()
    table = case["table"].copy()
    table.loc[2, "spectrogram_id"] = 5
    with pytest.raises(HMSInputError, match=rf"eeg_id {CLIPPED}: rows 2 and 3 disagree \(spectrogram_id 5 vs 8002\)"):
        plan_recordings(Competition(case["data"], "train", table=table))


@pytest.mark.parametrize("workers", [0, 2])
def test_each_file_is_opened_once_per_recording(case, single, tmp_path, monkeypatch, workers):
    """Counted in every process (the workers append to a file); the batches, hence the numbers, do not depend on
    the number of workers."""
    opens = tmp_path / "opens.txt"
    original = data_module._open_parquet

    def spy(path, where):
        with open(opens, "a") as f:
            f.write(f"{path}\n")
        return original(path, where)

    monkeypatch.setattr(data_module, "_open_parquet", spy)
    comp = Competition(case["data"], "train")
    recs = plan_recordings(comp, [LONG, CLIPPED])
    ens = Ensemble.from_manifest(case["manifest"], device="cpu")
    results = dict(predict_recordings(ens, comp, recs, STRIDE, batch_size=2, num_workers=workers, progress=False))
    opened = opens.read_text().splitlines()
    files = [str(comp.eeg_path(e)) for e in (LONG, CLIPPED)] + [str(comp.spectrogram_path(e + 1000))
                                                                for e in (LONG, CLIPPED)]
    assert sorted(opened) == sorted(files)  # one open per file: 9 windows, 4 opens
    for k, eeg_id in enumerate((LONG, CLIPPED)):
        want = single["frame"][single["frame"].eeg_id == eeg_id].reset_index(drop=True)
        pd.testing.assert_frame_equal(results[k].frame, want, check_exact=True)


def test_a_dead_worker_is_replaced_by_reading_in_the_main_process(case, single, monkeypatch, caplog):
    """A worker killed mid-run (as by the out-of-memory killer): the recordings not done are read in this process,
    in the same batches, so the numbers are the single run's."""
    import os

    from torch.utils.data import get_worker_info
    recording = RecordingWindows.recording

    def dies_in_a_worker(self, i):
        if get_worker_info() is not None and self.recordings[i].eeg_id == CLIPPED:
            os._exit(1)
        return recording(self, i)
    monkeypatch.setattr(RecordingWindows, "recording", dies_in_a_worker)
    comp = Competition(case["data"], "train")
    recs = plan_recordings(comp, [SHORT, CLIPPED])
    ens = Ensemble.from_manifest(case["manifest"], device="cpu")
    results = dict(predict_recordings(ens, comp, recs, STRIDE, batch_size=2, num_workers=2, progress=False))
    assert "DataLoader worker" in caplog.text and "reading the remaining recordings in the main process" in caplog.text
    for k, eeg_id in enumerate((SHORT, CLIPPED)):
        want = single["frame"][single["frame"].eeg_id == eeg_id].reset_index(drop=True)
        pd.testing.assert_frame_equal(results[k].frame, want, check_exact=True)


def test_sharded_and_resumed_runs_write_the_single_run_bytes(case, single, tmp_path, capsys):
    out = tmp_path / "timeline"
    parts = out / "timeline.parts"
    # --time-limit 0: one part (one recording) computed, then exit 3 with nothing merged
    assert main(args(case, out, "--at", "20", "--time-limit", "0")) == 3
    assert "stopped by --time-limit" in capsys.readouterr().out
    assert sorted(p.name for p in parts.glob("part-*.npz")) == ["part-000000.npz"]
    assert not (out / "timeline.parquet").exists() and (out / f"{LONG}.html").is_file()
    # a damaged part and a part of another run are computed again; shard 1/2 computes part 1
    (parts / "part-000002.npz").write_bytes(b"PK\x03\x04 damaged")
    assert main(args(case, out, "--at", "20", "--shard", "1/2")) == 0
    assert "shard 1/2:" in capsys.readouterr().out and not (out / "timeline.parquet").exists()
    # the plain run finds parts 0 and 1 and computes part 2 only
    assert main(args(case, out, "--at", "20")) == 0
    printed = capsys.readouterr().out
    assert "1 windows computed" in printed and "2 of 3 parts were on disk" in printed
    for name in ("timeline.parquet", "timeline.json"):
        assert (out / name).read_bytes() == (single["out"] / name).read_bytes()
    assert not parts.exists()


def test_pages_pngs_markers_and_the_index(case, single):
    out, frame, report = single["out"], single["frame"], single["report"]
    table = case["table"]
    index = Tables((out / "index.html").read_text())
    rows = index.rows("recordings")
    assert [int(a["data-eeg-id"]) for a, _ in rows] == list(RECORDINGS)
    assert sorted(index.links) == sorted(f"{e}.html" for e in RECORDINGS)  # every page, linked
    for attrs, cells in rows:
        eeg_id = int(attrs["data-eeg-id"])
        mine = table[table.eeg_id == eeg_id]
        windows = frame[frame.eeg_id == eeg_id]
        # the KL at each labelled window, by hand: votes / sum against the timeline's probabilities there
        kls = []
        for _, lab in mine.iterrows():
            y = lab[list(VOTE_COLUMNS)].to_numpy(float)
            y /= y.sum()
            p = windows[windows.offset_s == lab.eeg_label_offset_seconds][list(VOTE_COLUMNS)].to_numpy()[0]
            kls.append(sum(a * np.log(a / b) for a, b in zip(y, p) if a > 0))
        assert float(cells["mean_kl"]) == pytest.approx(np.mean(kls), rel=1e-9)
        assert float(cells["max_kl"]) == pytest.approx(max(kls), rel=1e-9)
        worst = mine.iloc[int(np.argmax(kls))]
        assert int(cells["max_kl_label_id"]) == worst.label_id
        assert float(cells["max_kl_offset_s"]) == worst.eeg_label_offset_seconds
        assert int(cells["windows"]) == len(windows) == len(WINDOWS[eeg_id])
        assert float(cells["length_s"]) == RECORDINGS[eeg_id]["seconds"]
        assert cells["status"] == ("short" if eeg_id == SHORT else "ok")
        # the page: linked back, its markers at the labelled offsets with the votes, the model and the KL there
        page_text = (out / attrs["data-page"]).read_text()
        page = Tables(page_text)
        assert "index.html" in page.links
        labels = page.rows("labels")
        assert [float(a["data-offset"]) for a, _ in labels] == mine.eeg_label_offset_seconds.tolist()
        for (_, c), kl, (_, lab) in zip(labels, kls, mine.iterrows()):
            assert float(c["kl"]) == pytest.approx(kl, rel=1e-9)
            model = [float(c[f"model:{k}"]) for k in SUBMISSION_CLASSES]
            p = windows[windows.offset_s == lab.eeg_label_offset_seconds][list(VOTE_COLUMNS)].to_numpy()[0]
            np.testing.assert_array_equal(model, p)
        shown = page.rows("windows")
        assert [float(a["data-offset"]) for a, _ in shown] == windows.offset_s.tolist()
        np.testing.assert_array_equal([[float(c[k]) for k in SUBMISSION_CLASSES] for _, c in shown],
                                      windows[list(VOTE_COLUMNS)].to_numpy())
        assert [int(c["flat_channels"]) for _, c in shown] == windows.flat_channels.tolist()
        # the PNG: embedded, the size of the figure, not blank; no network resources
        png = out / f"{eeg_id}.png"
        assert page.sources[0] == "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
        assert imread(png).shape[:2] == (800, 1600) and imread(png)[..., :3].std() > 0.1
        assert not [u for u in page.links + page.sources if re.match(r"(https?:)?//", u)]
        # --at 20: the report's figure and numbers of that window (the long recording's is a labelled one)
        (_, blend), = [r for r in page.rows("blend") if r[0]["data-kind"] == "blend"]
        at = windows[windows.offset_s == 20.0]
        if len(at):
            np.testing.assert_allclose([float(blend[k]) for k in SUBMISSION_CLASSES],
                                       at[list(VOTE_COLUMNS)].to_numpy()[0], rtol=0, atol=1e-6)
        assert len(page.sources) == 2 and "The window at 20 s (--at)" in page_text
    # the figure's markers sit at the labelled offsets (drawn again from the run's summary)
    summary = report["recordings"][0]
    rec = plan_recordings(Competition(case["data"], "train"), [LONG])[0]
    fig = draw_timeline(RecordingResult(rec, frame[frame.eeg_id == LONG], summary), STRIDE, 20.0)
    (markers,) = [line for line in fig.axes[0].lines if line.get_gid() == "labelled-windows"]
    assert list(markers.get_xdata()) == list(RECORDINGS[LONG]["label_offsets"])


def test_python_api_frame_and_figure(case, single):
    ens = Ensemble.from_manifest(case["manifest"], device="cpu")
    comp = Competition(case["data"], "train")
    frame = timeline_frame(ens, comp, CLIPPED, stride=STRIDE, members=True, batch_size=2)  # the single run's batches
    want = single["frame"][single["frame"].eeg_id == CLIPPED].reset_index(drop=True)
    pd.testing.assert_frame_equal(frame.drop(columns=[c for c in frame if "/" in c]), want, check_exact=True)
    # each member's probabilities; the blend is their weighted mean (weights 1 and 2, prob blend)
    members = [frame[[f"m{k}/{c}" for c in VOTE_COLUMNS]].to_numpy() for k in range(2)]
    np.testing.assert_allclose((members[0] + 2 * members[1]) / 3, frame[list(VOTE_COLUMNS)].to_numpy(), atol=1e-12)
    assert np.abs(members[0] - members[1]).max() > 1e-3
    fig = timeline_figure(ens, comp, SHORT, stride=STRIDE)
    (markers,) = [line for line in fig.axes[0].lines if line.get_gid() == "labelled-windows"]
    assert list(markers.get_xdata()) == [0.0]
    with pytest.raises(HMSInputError, match="--eeg-id 424242: no row of .*train.csv has this eeg_id"):
        timeline_frame(ens, comp, 424242)


def test_test_split_is_one_window_per_recording_the_rows_own(case, tmp_path, capsys):
    data = write_competition(tmp_path / "data", n_test=2, n_train_eegs=0, seed=5)
    out = tmp_path / "timeline"
    assert main(["timeline", "--data-dir", str(data), "--split", "test", "--all", "--manifest", str(case["manifest"]),
                 "--device", "cpu", "--num-workers", "0", "--out", str(out)]) == 0
    frame = pd.read_parquet(out / "timeline.parquet")
    sub = predict(data, manifest=case["manifest"], device="cpu", num_workers=0, progress=False)
    assert frame.eeg_id.tolist() == sub.eeg_id.tolist() and (frame.offset_s == 0).all()
    np.testing.assert_allclose(frame[list(VOTE_COLUMNS)].to_numpy(), sub[list(VOTE_COLUMNS)].to_numpy(), atol=1e-6)
    page = (out / f"{sub.eeg_id[0]}.html").read_text()
    assert "test split: one window, the row&#x27;s own" in page and (out / f"{sub.eeg_id[0]}.png").is_file()


def test_bad_recordings_are_logged_choices_and_the_others_are_done(case, tmp_path, capsys):
    """No EEG file, a damaged one: skipped with the reason (listed, no page); no spectrogram: predicted from the
    EEG alone (degraded, every frame padding); shorter than 50 s: one NaN-padded window (short)."""
    data = tmp_path / "data"
    shutil.copytree(case["data"], data)
    for k, eeg_id in enumerate((7101, 7102, 7103)):
        write_recording(data, eeg_id, eeg_id + 1000, 56.0, (0.0,), shift_s=10.0, seed=30 + k)
    (data / "train_eegs" / "7101.parquet").unlink()
    (data / "train_eegs" / "7102.parquet").write_bytes(b"PAR1 not a parquet file")
    (data / "train_spectrograms" / "8103.parquet").unlink()
    out = tmp_path / "timeline"
    assert main(["timeline", "--data-dir", str(data), "--eeg-id", "7101", "7102", "7103", str(SHORT), "--stride",
                 str(STRIDE), "--manifest", str(case["manifest"]), "--device", "cpu", "--num-workers", "0",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    printed = captured.out
    assert "4 recordings (2 skipped, 1 degraded, 1 short), 2 windows" in printed
    assert re.search(r"7101  skipped .*7101\.parquet: file not found", printed)
    assert re.search(r"7102  skipped .*7102\.parquet: unreadable or corrupt parquet file", printed)
    assert re.search(r"7103  degraded .*8103\.parquet: file not found: predicted from the EEG alone", printed)
    report = {s["eeg_id"]: s for s in json.loads((out / "timeline.json").read_text())["recordings"]}
    assert {e: s["status"] for e, s in report.items()} == {7101: "skipped", 7102: "skipped", 7103: "degraded",
                                                            SHORT: "short"}
    frame = pd.read_parquet(out / "timeline.parquet")
    assert frame.eeg_id.tolist() == [SHORT, 7103]
    assert (frame[frame.eeg_id == 7103].spect_padded_frames == 300).all()
    assert np.isfinite(frame[list(VOTE_COLUMNS)].to_numpy()).all()
    index = Tables((out / "index.html").read_text())
    assert sorted(index.links) == [f"{SHORT}.html", "7103.html"]
    notes = {int(a["data-eeg-id"]): c["notes"] for a, c in index.rows("recordings")}
    assert "file not found" in notes[7101] and "corrupt" in notes[7102]
    assert not (out / "7101.html").exists() and (out / "7103.png").is_file()


@pytest.mark.parametrize("change, message", [
    (["--eeg-id", "7001", "424242"], r"--eeg-id 424242: no row of .*train\.csv has this eeg_id"),
    (["--stride", "0.001"], r"--stride must be a positive multiple of 0\.005 s"),
    (["--at", "-3"], r"--at must be a non-negative number of seconds"),
    ([], r"is a file; --out is the timeline's folder"),
])
def test_bad_options_fail_before_any_work(case, tmp_path, capsys, change, message):
    out = tmp_path / "out"
    argv = args(case, out, *change)  # a later --stride overrides the earlier one
    if not change:
        out.write_text("not a folder")
    if "--eeg-id" in change:
        argv.remove("--all")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and len(err.strip().splitlines()) == 1
    assert not out.is_dir()
    with pytest.raises(HMSInputError, match="name the recordings"):
        timeline(data_dir=case["data"], out=tmp_path / "o2", manifest=case["manifest"])


def test_a_label_row_without_votes_is_predicted_and_left_out_of_the_kl(case, single, tmp_path, capsys):
    """A hand-edited table whose row of LONG at 33 s has six zero votes: the run completes, the window is predicted
    (the same numbers as with votes), its label has no votes and no KL (its --at zoom too), and one warning names
    the file, the row (0-based data row and file line) and the label_id."""
    data = tmp_path / "data"
    shutil.copytree(case["data"], data)
    table = pd.read_csv(data / "train.csv")
    i = int(np.flatnonzero((table.eeg_id == LONG) & (table.eeg_label_offset_seconds == 33.0))[0])
    table.loc[i, list(VOTE_COLUMNS)] = 0
    table.to_csv(data / "train.csv", index=False)
    out = tmp_path / "timeline"
    argv = args({**case, "data": data}, out, "--eeg-id", str(LONG), "--at", "33")  # the zoom: its label row
    argv.remove("--all")
    assert main(argv) == 0
    err = capsys.readouterr().err
    warning = (f"WARNING hms_infer.timeline: {data / 'train.csv'}: 1 of 2 rows without votes (all six vote columns "
               f"zero), the first row {i} (line {i + 2}, label_id {table.label_id[i]}, eeg_id {LONG}): its window is "
               f"predicted, without votes or KL in the summaries")
    assert [line for line in err.splitlines() if line.startswith("WARNING")] == [warning]  # once
    (summary,) = json.loads((out / "timeline.json").read_text())["recordings"]
    labels = {lab["offset_s"]: lab for lab in summary["labels"]}
    assert labels[33.0]["votes"] is None and labels[33.0]["kl"] is None and len(labels[33.0]["probs"]) == 6
    assert labels[20.0]["kl"] is not None and summary["mean_kl"] == labels[20.0]["kl"]  # the voted row alone
    frame = pd.read_parquet(out / "timeline.parquet")
    want = single["frame"][single["frame"].eeg_id == LONG].reset_index(drop=True)
    assert frame.offset_s.tolist() == WINDOWS[LONG]
    pd.testing.assert_frame_equal(frame, want, check_exact=True)  # the votes change nothing predicted
    page = (out / f"{LONG}.html").read_text()
    assert "The window at 33 s (--at)" in page  # the report's figure of that row, drawn without votes
