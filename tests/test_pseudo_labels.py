"""`pseudo-labels`: noisy-student labels for the training code, on a synthetic training table with tiny members.

The table has offsets, several label rows per eeg_id (two pairs of them share the eeg_id AND both offsets), two
folds; the manifest two configurations x two folds of tiny members with unequal weights. The expected values are
computed directly: `HMSModel.forward` on each view's numpy montage, softmax (of the logits over the member's
temperature), mean over the views, the members' weighted mean, per label row with the members of its fold.
"""
from __future__ import annotations

import copy
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from hms_infer.cli import main
from hms_infer.constants import SUBMISSION_ORDER, VOTE_COLUMNS
from hms_infer.data import Competition
from hms_infer.metric import kl_divergence, solution_probabilities
from hms_infer.models import create_model
from hms_infer.preprocess import eeg_electrodes, spectrogram_image
from hms_infer.montage import bipolar
from hms_infer.tasks.pseudo_labels import pseudo_labels
from hms_infer.synthetic import write_competition

from .conftest import TINY_ARCH

VIEWS = ("none", "lrfb")
# two configurations of tiny members (one WaveNet block: the cheapest the architecture allows on the CPU)
ARCH_A = copy.deepcopy(TINY_ARCH)
ARCH_A["wavenet"].update(n_blocks=1, out_channels=3)
ARCH_B = copy.deepcopy(TINY_ARCH)
ARCH_B["stft"].update(n_fft=190, win_length=96, hop_length=24, window="hann")
ARCH_B["wavenet"].update(n_blocks=1, out_channels=4)
MEMBERS = {"a/f0": (ARCH_A, 0, 1.0), "a/f1": (ARCH_A, 1, 1.0), "b/f0": (ARCH_B, 0, 3.0),
           "b/f1": (ARCH_B, 1, 3.0)}  # name -> (arch, fold, weight)
TEMPERATURES = {"b/f1": 2.0}  # the manifest's optional member field; 1 for the others
HEAD_SCALE = 20.0  # random init gives logits near 0; trained models' spread over units


def write_manifest(path: Path, weights: Path, swap: bool = False, folds=(0, 1)) -> Path:
    """The four members (`swap`: each checkpoint under the other fold), absolute checkpoint paths."""
    members = []
    for name, (arch, fold, weight) in MEMBERS.items():
        if fold in folds:
            members.append({"name": name, "checkpoint": str(weights / f"{name.replace('/', '_')}.pt"),
                            "arch": arch, "weight": weight, "fold": 1 - fold if swap else fold,
                            "temperature": TEMPERATURES.get(name, 1.0)})
    path.write_text(yaml.safe_dump({"version": 1, "tta": list(VIEWS), "blend": "prob", "members": members}))
    return path


class ViewProbs:
    """(member name, label_id) -> (V, 6) the member's probabilities of each view of the row's window, computed on
    first use (the tests need 12 of the 16 member x window pairs)."""

    def __init__(self, models: dict, inputs: dict, windows: dict):
        self.models, self.inputs, self.windows, self.done = models, inputs, windows, {}

    def __call__(self, name: str, label_id: int) -> torch.Tensor:
        key = (name, self.windows[label_id])
        if key not in self.done:
            with torch.inference_mode():
                logits = self.models[name](*self.inputs[key[1]])["all"].double()
                self.done[key] = (logits / TEMPERATURES.get(name, 1.0)).softmax(-1)
        return self.done[key]


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("pseudo")
    data = write_competition(root / "data", n_test=1, n_train_eegs=2, seed=4)  # 2 eeg_ids x 2 label rows
    table = pd.read_csv(data / "train.csv")
    table["fold"] = table["eeg_id"].map({e: i % 2 for i, e in enumerate(dict.fromkeys(table["eeg_id"]))})
    assert table["fold"].tolist() == [0, 0, 1, 1] and table["eeg_label_offset_seconds"].iloc[[1, 3]].gt(0).all()
    # two more label rows on the windows of existing rows (same eeg_id, spectrogram and offsets), other votes
    dups = table.iloc[[0, len(table) - 1]].copy()
    dups["label_id"] = table["label_id"].max() + np.array([1, 2])
    dups["eeg_sub_id"] += 10
    dups[list(VOTE_COLUMNS)] = [[0, 3, 0, 1, 0, 0], [2, 0, 0, 0, 0, 5]]
    table = pd.concat([table, dups], ignore_index=True)
    table = table.iloc[np.random.default_rng(0).permutation(len(table))].reset_index(drop=True)
    table.to_csv(root / "train_folds.csv", index=False)
    table.groupby("fold").head(1).to_csv(root / "small.csv", index=False)  # one window per fold

    weights = root / "weights"
    weights.mkdir()
    models = {}
    for k, (name, (arch, _, _)) in enumerate(MEMBERS.items()):
        torch.manual_seed(k)
        model = create_model(arch).eval()
        with torch.no_grad():
            model.head_all.weight.mul_(HEAD_SCALE)
            model.head_all.bias.mul_(HEAD_SCALE)
        torch.save(model.state_dict(), weights / f"{name.replace('/', '_')}.pt")
        models[name] = model
    windows, inputs = {}, {}
    for row, eeg, spect in Competition(data, "train", table=table):
        key = (row.eeg_id, row.eeg_offset_s, row.spectrogram_id, row.spectrogram_offset_s)
        if key not in inputs:
            electrodes, image = eeg_electrodes(eeg), torch.from_numpy(spectrogram_image(spect))
            inputs[key] = (torch.from_numpy(np.stack([bipolar(electrodes, v) for v in VIEWS])),  # (V, 24, T)
                           image[None].expand(len(VIEWS), -1, -1, -1))  # (V, 10, 300, 100)
        windows[row.key] = key
    return {"root": root, "data": data, "table": table, "weights": weights, "windows": len(inputs),
            "view_probs": ViewProbs(models, inputs, windows), "manifest": write_manifest(root / "m.yaml", weights),
            "swapped": write_manifest(root / "swapped.yaml", weights, swap=True)}


def expected(case: dict, table: pd.DataFrame, swap: bool = False) -> dict[int, np.ndarray]:
    """label_id -> (6,) the weighted mean over the row's fold's members of the mean over views."""
    out = {}
    for label_id, fold in zip(table["label_id"], table["fold"]):
        members = [(n, w) for n, (_, f, w) in MEMBERS.items() if (1 - f if swap else f) == fold]
        total = sum(w for _, w in members)
        out[int(label_id)] = sum(w * case["view_probs"](n, label_id).mean(0) for n, w in members).numpy() / total
    return out


def args(case: dict, out: Path, manifest: Path | None = None, *extra: str) -> list[str]:
    return ["pseudo-labels", "--data-dir", str(case["data"]), "--table", str(case["root"] / "train_folds.csv"),
            "--manifest", str(manifest or case["manifest"]), "--out", str(out), "--device", "cpu",
            "--batch-size", "1", "--num-workers", "0", "--chunk-rows", "1", *extra]


def load(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f)


@pytest.fixture(scope="module")
def single(case, tmp_path_factory) -> dict:
    """One uninterrupted run through the API (what the CLI calls), counting the EEG windows read."""
    out = tmp_path_factory.mktemp("single") / "oof_noisy_student.pkl"
    reads = []
    original = Competition.read_eeg
    Competition.read_eeg = lambda self, row: reads.append(row.key) or original(self, row)
    try:
        summary = pseudo_labels(data_dir=case["data"], table=case["root"] / "train_folds.csv",
                                manifest=case["manifest"], out=out, device="cpu", batch_size=1, num_workers=0,
                                chunk_rows=1, progress=False)
    finally:
        Competition.read_eeg = original
    return {"out": out, "reads": reads, "summary": summary}


def test_pickle_holds_every_label_row_out_of_fold(case, single):
    labels = load(single["out"])
    table = case["table"]
    assert list(labels) == table["label_id"].tolist() and all(type(k) is int for k in labels)
    want = expected(case, table)
    for label_id, p in labels.items():
        assert isinstance(p, torch.Tensor) and p.dtype == torch.float32 and p.shape == (6,)
        assert abs(float(p.sum()) - 1) < 1e-6
        np.testing.assert_allclose(p.numpy(), want[label_id], atol=1e-6, rtol=0)
    # the rows that share a window were read once: one read per distinct (fold, window)
    assert len(single["reads"]) == case["windows"] == len(table) - 2
    # the Parquet twin: the same probabilities, submission column order
    frame = pd.read_parquet(single["out"].with_suffix(".parquet"))
    assert list(frame.columns) == ["label_id", "eeg_id", "fold", *VOTE_COLUMNS]
    assert frame[["label_id", "eeg_id", "fold"]].equals(table[["label_id", "eeg_id", "fold"]].astype(np.int64))
    probs = np.stack([labels[i].numpy() for i in table["label_id"]])
    np.testing.assert_array_equal(frame[list(VOTE_COLUMNS)].to_numpy(), probs[:, list(SUBMISSION_ORDER)])
    # by hand: the pickle is alphabetical (gpd, grda, lpd, lrda, other, seizure), the Parquet in submission order
    for column, k in (("gpd_vote", 0), ("grda_vote", 1), ("lpd_vote", 2), ("lrda_vote", 3), ("other_vote", 4),
                      ("seizure_vote", 5)):
        np.testing.assert_array_equal(frame[column].to_numpy(), probs[:, k])
    # the score printed is Kaggle's KL of these labels against the votes
    score = kl_divergence(solution_probabilities(table), probs[:, list(SUBMISSION_ORDER)])
    assert single["summary"]["score"] == pytest.approx(score, abs=1e-12) and 0.1 < score < 20
    assert single["summary"]["windows"] == case["windows"] and single["summary"]["rows"] == len(table)
    report = json.loads(single["out"].with_suffix(".issues.json").read_text())
    assert report["rows"] == len(table) and report["problem_rows"] == []
    assert not Path(f"{single['out']}.parts").exists()


def test_swapping_the_folds_changes_the_values(case, single, tmp_path, capsys):
    """On one window per fold (the small table), through the CLI."""
    out = tmp_path / "swapped.pkl"
    argv = args(case, out, case["swapped"])
    argv[argv.index("--table") + 1] = str(case["root"] / "small.csv")
    assert main(argv) == 0
    swapped, labels = load(out), load(single["out"])
    small = pd.read_csv(case["root"] / "small.csv")
    want = expected(case, small, swap=True)
    assert list(swapped) == small["label_id"].tolist()
    for label_id, p in swapped.items():
        np.testing.assert_allclose(p.numpy(), want[label_id], atol=1e-6, rtol=0)
        assert float((p - labels[label_id]).abs().max()) > 1e-2
    probs = np.stack([p.numpy() for p in swapped.values()])
    score = kl_divergence(solution_probabilities(small), probs[:, list(SUBMISSION_ORDER)])
    printed = capsys.readouterr().out
    assert f"score {score:.6f}" in printed
    assert "2 label rows (2 distinct windows read and predicted; 0 degraded, 0 fallback) in" in printed


def test_a_stopped_run_resumes_into_the_same_file(case, single, tmp_path, capsys):
    out = tmp_path / "oof_noisy_student.pkl"
    parts = Path(f"{out}.parts")
    n_chunks = single["summary"]["chunks"]
    assert n_chunks == case["windows"] == 4  # --chunk-rows 1, --batch-size 1
    # --time-limit 0: the run computes one chunk and stops (exit 3), the files not written
    assert main(args(case, out, None, "--time-limit", "0")) == 3
    assert not out.exists() and [p.name for p in parts.glob("chunk-*.npz")] == ["chunk-000000.npz"]
    assert "stopped by --time-limit: 1 windows computed" in capsys.readouterr().out
    # what a killed run leaves (a part's temporary file), a part of another run and a damaged part: computed again
    (parts / ".chunk-000002.npz.123.abcd.tmp").write_bytes(b"half a part")
    with np.load(parts / "chunk-000000.npz") as z:
        np.savez(parts / "chunk-000002.npz", key=np.array("another run"), probs=z["probs"], notes=z["notes"])
    (parts / "chunk-000003.npz").write_bytes(b"PK\x03\x04 damaged")
    # shard 1 of 2 computes chunks 1 and 3 and leaves the merge to whoever completes the set
    assert main(args(case, out, None, "--shard", "1/2")) == 0
    assert "shard 1/2: 2 windows computed" in capsys.readouterr().out and not out.exists()
    # a plain run takes the parts of both (the chunks do not depend on the shards) and computes chunk 2 only
    assert main(args(case, out)) == 0
    printed = capsys.readouterr().out
    assert f"3 of {n_chunks} chunks were on disk" in printed
    assert out.read_bytes() == single["out"].read_bytes()
    assert out.with_suffix(".parquet").read_bytes() == single["out"].with_suffix(".parquet").read_bytes()
    assert not parts.exists()


def test_batches_of_several_windows_never_span_two_folds(case, single, tmp_path):
    """Batch 3, two windows per fold: one DataLoader reads every chunk, and a batch starts at each chunk (a batch of
    3 would take a window of the next fold otherwise, predicted by the wrong members); sharded runs write the same
    bytes as one run."""
    one, shard = tmp_path / "one" / "p.pkl", tmp_path / "shard" / "p.pkl"
    bigger = ["--batch-size", "3", "--chunk-rows", "2"]  # flags given twice: argparse keeps the last
    assert main([*args(case, one), *bigger]) == 0
    labels, want = load(one), expected(case, case["table"])
    for label_id, probs in labels.items():
        np.testing.assert_allclose(probs.double().numpy(), want[label_id], rtol=0, atol=1e-6)
    assert main([*args(case, shard), *bigger, "--shard", "1/2"]) == 0 and not shard.exists()
    assert main([*args(case, shard), *bigger, "--shard", "0/2"]) == 0
    for suffix in (".pkl", ".parquet", ".issues.json"):
        assert one.with_suffix(suffix).read_bytes() == shard.with_suffix(suffix).read_bytes(), suffix


def test_torchrun_two_processes_write_the_single_process_file(case, single, tmp_path):
    out = tmp_path / "oof_noisy_student.pkl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "hms_infer", *args(case, out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "shard 1/2:" in done.stdout and f"{len(case['table'])} label rows" in done.stdout
    labels, want = load(out), load(single["out"])
    assert list(labels) == list(want)
    for label_id, p in labels.items():
        np.testing.assert_allclose(p.numpy(), want[label_id].numpy(), atol=1e-6, rtol=0)
    assert not Path(f"{out}.parts").exists()


def test_bad_rows_any_fold_and_strict(case, tmp_path, capsys):
    """Fold 1 without members: an error naming it, or with --any-fold the fold-0 members predict its rows; a
    missing spectrogram degrades its row (listed, in the report), or with --strict stops the run."""
    data = tmp_path / "data"
    shutil.copytree(case["data"], data)
    small = pd.read_csv(case["root"] / "small.csv")  # row 0: fold 0, row 1: fold 1
    gone = data / "train_spectrograms" / f"{small['spectrogram_id'].iloc[0]}.parquet"
    gone.unlink()
    manifest = write_manifest(tmp_path / "fold0.yaml", case["weights"], folds=(0,))
    base = ["pseudo-labels", "--data-dir", str(data), "--table", str(case["root"] / "small.csv"), "--manifest",
            str(manifest), "--device", "cpu", "--batch-size", "1", "--num-workers", "0"]
    out = tmp_path / "oof.pkl"
    assert main([*base, "--out", str(out)]) == 2
    assert "fold 1: " in capsys.readouterr().err and not out.exists()

    strict = tmp_path / "strict.pkl"
    assert main([*base, "--out", str(strict), "--any-fold", "--strict"]) == 2
    assert str(gone) in capsys.readouterr().err and not strict.exists()

    assert main([*base, "--out", str(out), "--any-fold"]) == 0
    printed = capsys.readouterr().out
    assert "1 rows of folds without members predicted by all members (--any-fold)" in printed
    assert "1 degraded, 0 fallback" in printed and str(gone) in printed
    report = json.loads(out.with_suffix(".issues.json").read_text())
    assert [(r["row"], r["status"]) for r in report["problem_rows"]] == [(0, "degraded")]
    assert report["problem_rows"][0]["problems"][0]["file"] == str(gone)
    labels = load(out)
    assert list(labels) == small["label_id"].tolist()
    assert abs(float(labels[small["label_id"].iloc[0]].sum()) - 1) < 1e-6
    fold0 = [(n, w) for n, (_, f, w) in MEMBERS.items() if f == 0]
    label_id = small["label_id"].iloc[1]
    want = sum(w * case["view_probs"](n, label_id).mean(0) for n, w in fold0) / sum(w for _, w in fold0)
    np.testing.assert_allclose(labels[label_id].numpy(), want.numpy(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("change,message", [
    ("out", "give a .pkl path"),
    ("duplicate", "appears more than once"),
    ("members", "matches none of the members"),
    ("votes", "Target values must be at least zero: {table} row 2 (line 4, label_id {label_id}, eeg_id {eeg_id}) "
              "has [-1.0, 0.0, 0.0, 0.0, 0.0, 0.0]"),
    ("data-dir", "{tmp}: no train_eegs/ folder (found: t.csv); the competition folder holds train.csv, train_eegs/ "
                 "and train_spectrograms/"),
])
def test_bad_options_and_tables_fail_before_inference(case, tmp_path, capsys, change, message):
    table = case["table"].copy()
    out, extra, argv_data = tmp_path / "oof.pkl", [], str(case["data"])
    if change == "out":
        out = tmp_path / "oof.csv"
    elif change == "duplicate":
        table.loc[3, "label_id"] = table.loc[1, "label_id"]
    elif change == "members":
        extra = ["--members", "cfg_9/*"]
    elif change == "data-dir":
        argv_data = str(tmp_path)
    else:
        table.loc[2, list(VOTE_COLUMNS)] = [-1, 0, 0, 0, 0, 0]
    table.to_csv(tmp_path / "t.csv", index=False)
    message = message.format(table=tmp_path / "t.csv", tmp=tmp_path, label_id=table.label_id[2], eeg_id=table.eeg_id[2])
    argv = args(case, out, None, *extra)
    argv[argv.index("--table") + 1] = str(tmp_path / "t.csv")
    argv[argv.index("--data-dir") + 1] = argv_data
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.glob("oof*.pkl"))


def test_a_row_without_votes_is_predicted_and_left_out_of_the_score(case, single, tmp_path, capsys):
    """The small table (one window per fold) with row 1's six votes zero: both rows predicted as with votes, the
    score on row 0 alone, and one warning naming the file, the row and its label_id."""
    small = pd.read_csv(case["root"] / "small.csv")
    small.loc[1, list(VOTE_COLUMNS)] = 0
    small.to_csv(tmp_path / "t.csv", index=False)
    out = tmp_path / "oof.pkl"
    argv = args(case, out)
    argv[argv.index("--table") + 1] = str(tmp_path / "t.csv")
    assert main(argv) == 0
    captured = capsys.readouterr()
    warning = (f"WARNING hms_infer.tasks.pseudo_labels: {tmp_path / 't.csv'}: 1 of 2 rows without votes (all six vote "
               f"columns zero), the first row 1 (line 3, label_id {small.label_id[1]}, eeg_id {small.eeg_id[1]}): "
               f"predicted, and left out of the score against the votes")
    assert [line for line in captured.err.splitlines() if line.startswith("WARNING")] == [warning]
    labels, want = load(out), load(single["out"])
    assert list(labels) == small["label_id"].tolist()
    for label_id, p in labels.items():
        np.testing.assert_allclose(p.numpy(), want[label_id].numpy(), atol=1e-6, rtol=0)
    probs = np.stack([p.numpy() for p in labels.values()])[:, list(SUBMISSION_ORDER)]
    score = kl_divergence(solution_probabilities(small.iloc[:1]), probs[:1])
    assert f"score {score:.6f} (the pseudo labels against the table's votes, Kaggle's KL divergence, on the 1 rows " \
           f"with votes)" in captured.out
    frame = pd.read_parquet(out.with_suffix(".parquet"))
    assert frame.label_id.tolist() == small.label_id.tolist() and np.isfinite(frame[list(VOTE_COLUMNS)]).all().all()
