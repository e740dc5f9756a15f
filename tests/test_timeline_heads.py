"""`timeline --heads eeg` and `--spectrogram multitaper` on a competition folder, and its `labels.csv`.

The members are two tiny random models whose `head_all`, `head_eeg` and `head_1d` are redrawn to answer their inputs
(`HMSModel.spread_head`), so a wrong head, a wrong combination or a wrong spectrogram moves the numbers. Expected
values: the two heads' softmax averaged by hand (numpy), the blend by hand, the model inputs built by hand from the
parquet files with the package's pure functions, and the members' own forward (`HMSModel.forward`, the reference).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

pytest.importorskip("matplotlib")

from hms_infer.blending import eeg_heads  # noqa: E402
from hms_infer.cli import main  # noqa: E402
from hms_infer.constants import CLASSES, HEADS, SUBMISSION_ORDER, VOTE_COLUMNS  # noqa: E402
from hms_infer.ensemble import Ensemble  # noqa: E402
from hms_infer.members import random_model  # noqa: E402
from hms_infer.montage import bipolar  # noqa: E402
from hms_infer.preprocess import eeg_electrodes, spectrogram_image  # noqa: E402
from hms_infer.recordings.multitaper import multitaper_frames, window_frames  # noqa: E402
from hms_infer.synthetic import write_recording  # noqa: E402

from .test_timeline import ARCH  # noqa: E402

STRIDE = 20.0
EEG_ID, SPECT_ID = 8101, 9101
OFFSETS = (0.0, 20.0, 33.0)  # 90 s: grid windows 0, 20, 40 and the labelled 33
WEIGHTS = (1.0, 3.0)


def spread_model(seed: int) -> torch.nn.Module:
    """A tiny random member whose three prediction heads answer their inputs."""
    model = random_model(ARCH, seed=seed)
    g = torch.Generator().manual_seed(seed)
    eeg, spect = torch.randn(4, 24, 10000, generator=g) * 3, torch.randn(4, 10, 300, 100, generator=g)
    for head in ("head_all", "head_eeg", "head_1d"):
        model.spread_head(eeg, spect, 2.0, seed=seed, head=head)
    return model


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("heads")
    data = root / "data"
    write_recording(data, EEG_ID, SPECT_ID, 90.0, label_offsets=OFFSETS[1:] + (0.0,), shift_s=100.0, seed=3)
    weights = root / "weights"
    weights.mkdir()
    members = []
    for k, w in enumerate(WEIGHTS):
        torch.save(spread_model(40 + k).state_dict(), weights / f"m{k}.pt")
        members.append({"name": f"m{k}", "checkpoint": f"m{k}.pt", "arch": copy.deepcopy(ARCH), "weight": w,
                        "temperature": 1.5})
    manifest = weights / "weights_manifest.yaml"
    manifest.write_text(yaml.safe_dump({"version": 1, "tta": ["none", "lr"], "blend": "prob", "members": members}))
    ens = Ensemble.from_manifest(manifest, device="cpu")
    return {"root": root, "data": data, "manifest": manifest, "ens": ens}


def run(case: dict, out: Path, *extra: str) -> pd.DataFrame:
    assert main(["timeline", "--data-dir", str(case["data"]), "--all", "--stride", str(STRIDE), "--manifest",
                 str(case["manifest"]), "--device", "cpu", "--batch-size", "2", "--num-workers", "0", "--out",
                 str(out), *extra]) == 0
    return pd.read_parquet(out / "timeline.parquet")


def expected(case: dict, heads: str, multitaper: bool) -> np.ndarray:
    """(4, 6) blended probabilities (submission order) at the windows 0, 20, 33, 40 s, by hand: inputs from the
    parquet files, every head of every member and view from `HMSModel.forward`, the heads' mixture and the blend
    in numpy (computed once per case)."""
    key = (heads, multitaper)
    if key not in case.setdefault("expected", {}):
        case["expected"][key] = _expected(case, heads, multitaper)
    return case["expected"][key]


def _expected(case: dict, heads: str, multitaper: bool) -> np.ndarray:
    eeg = pd.read_parquet(case["data"] / "train_eegs" / f"{EEG_ID}.parquet").to_numpy(np.float32)[:, :19]
    spect = pd.read_parquet(case["data"] / "train_spectrograms" / f"{SPECT_ID}.parquet")
    time, power = spect["time"].to_numpy(), spect.drop(columns="time").to_numpy(np.float32)
    power = power.reshape(len(power), 4, 100)[:, [0, 1, 3, 2]]  # file order LL, RL, LP, RP -> LL, RL, RP, LP
    frames = multitaper_frames(eeg)
    out = []
    for offset in (0.0, 20.0, 33.0, 40.0):
        start = int(offset * 200)
        x = eeg_electrodes(eeg[start:start + 10000])
        if multitaper:
            window, _ = window_frames(frames, start / 200)
        else:
            first = int(offset + 100) | 1  # the spectrogram offset, made odd
            window = power[(time >= first) & (time <= first + 598)]
        image = torch.from_numpy(spectrogram_image(window))[None]
        probs = np.zeros(6)
        for m, w in zip(case["ens"].members, WEIGHTS):
            views = []
            for view in case["ens"].views:
                with torch.no_grad():
                    o = m.model(torch.from_numpy(bipolar(x, view))[None], image)
                if heads == "eeg":
                    p = (torch.softmax(o["eeg_stft"].double(), -1) + torch.softmax(o["eeg_wavenet"].double(), -1)) / 2
                else:
                    p = torch.softmax(o["all"].double() / 1.5, -1)
                views.append(p[0].numpy())
            probs += w / sum(WEIGHTS) * np.mean(views, axis=0)
        out.append(probs[list(SUBMISSION_ORDER)])
    return np.array(out)


def test_eeg_heads_by_hand():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, len(HEADS), 6, generator=g)
    x = logits.numpy().astype(np.float64)
    soft = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    want = np.log((soft[..., 2, :] + soft[..., 3, :]) / 2)
    got = eeg_heads(logits)
    assert got.shape == (2, 3, 4, 6)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)
    np.testing.assert_allclose(got.exp().sum(-1).numpy(), 1.0, atol=1e-12)
    assert HEADS[2:] == ("eeg_stft", "eeg_wavenet")


@pytest.mark.parametrize("heads, multitaper", [("eeg", False), ("all", True), ("eeg", True)])
def test_timeline_heads_and_spectrogram(case, tmp_path, heads, multitaper):
    extra = ["--heads", heads] + (["--spectrogram", "multitaper"] if multitaper else [])
    frame = run(case, tmp_path / "out", *extra)
    assert frame["offset_s"].tolist() == [0.0, 20.0, 33.0, 40.0]
    got = frame[list(VOTE_COLUMNS)].to_numpy()
    want = expected(case, heads, multitaper)
    np.testing.assert_allclose(got, want, atol=1e-6)
    if heads == "eeg":  # the EEG-only heads do not see the spectrogram: Kaggle's or rebuilt, the same numbers
        other = expected(case, "eeg", not multitaper)
        np.testing.assert_allclose(got, other, atol=1e-6)
    assert np.abs(want - expected(case, "all" if heads == "eeg" else "eeg", multitaper)).max() > 1e-3
    assert np.ptp(got, axis=0).max() > 0.05  # the windows differ: the members answer their inputs
    # padding: 90 s of EEG give 44 frames (0 .. 43), all inside each window's 300 (at 0 s: frames -138 .. 161)
    if multitaper:
        assert frame["spect_padded_frames"].tolist() == [256] * 4


def test_labels_csv_scores_with_evaluate(case, tmp_path):
    run(case, tmp_path / "kaggle")
    run(case, tmp_path / "eeg", "--heads", "eeg")
    run(case, tmp_path / "multitaper", "--spectrogram", "multitaper")
    labels = pd.read_csv(tmp_path / "kaggle" / "labels.csv")
    table = pd.read_csv(case["data"] / "train.csv")
    assert labels.columns.tolist() == ["label_id", "eeg_id", *VOTE_COLUMNS]
    assert sorted(labels["label_id"]) == sorted(table["label_id"])
    frame = pd.read_parquet(tmp_path / "kaggle" / "timeline.parquet").set_index("offset_s")
    for _, row in labels.iterrows():
        offset = float(table.set_index("label_id").loc[row["label_id"], "eeg_label_offset_seconds"])
        np.testing.assert_allclose(row[list(VOTE_COLUMNS)].to_numpy(float),
                                   frame.loc[offset, list(VOTE_COLUMNS)].to_numpy(float), atol=1e-9)
    assert main(["evaluate", "--table", str(case["data"] / "train.csv"), "--submission",
                 f"kaggle={tmp_path / 'kaggle' / 'labels.csv'}", "--submission",
                 f"eeg={tmp_path / 'eeg' / 'labels.csv'}", "--submission",
                 f"multitaper={tmp_path / 'multitaper' / 'labels.csv'}", "--bootstrap", "0", "--min-votes", "1",
                 "--out", str(tmp_path / "evaluation")]) == 0
    scores = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    assert sorted(scores["sets"]) == ["eeg", "kaggle", "multitaper"], scores.keys()


def test_bad_heads_options(case, tmp_path, capsys):
    assert main(["timeline", "--data-dir", str(case["data"]), "--all", "--manifest", str(case["manifest"]),
                 "--allow-missing", "--out", str(tmp_path / "x")]) == 2
    assert "--allow-missing: options of --recording" in capsys.readouterr().err
    assert main(["timeline", "--data-dir", str(case["data"]), "--all", "--manifest", str(case["manifest"]),
                 "--threshold", "0.4", "--chunk-windows", "9", "--out", str(tmp_path / "x")]) == 2
    assert "--chunk-windows, --threshold: options of --recording" in capsys.readouterr().err
    assert main(["timeline", "--data-dir", str(case["data"]), "--all", "--manifest", str(case["manifest"]),
                 "--threshold", "0", "--out", str(tmp_path / "x")]) == 2  # 0 is given too
    assert "--threshold: options of --recording" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert CLASSES[SUBMISSION_ORDER[0]] == "seizure"
