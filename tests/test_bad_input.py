"""A corpus of bad and odd input, each built from a synthetic folder and run through the main command.

Every case asserts the exit code; on 0 a valid submission (one row per test.csv row) and its issues JSON, with the
degraded / fallback rows listed; on 2 a one-line error and the previous output untouched; never a traceback, never a
leftover temporary file.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from hms_infer.cli import main
from hms_infer.constants import CLASSES, SUBMISSION_HEADER
from hms_infer.synthetic import write_competition

from .conftest import TINY_ARCH, save_tiny_checkpoint


@dataclass
class Ctx:
    root: Path  # the competition folder
    manifest: Path
    weights: Path
    out: Path
    args: list[str]

    @property
    def table(self) -> pd.DataFrame:
        return pd.read_csv(self.root / "test.csv")

    @property
    def eeg(self) -> Path:  # row 0's files
        return self.root / "test_eegs" / f"{self.table.eeg_id[0]}.parquet"

    @property
    def spect(self) -> Path:
        return self.root / "test_spectrograms" / f"{self.table.spectrogram_id[0]}.parquet"

    def edit_manifest(self, change: Callable[[dict], None]) -> None:
        d = yaml.safe_load(self.manifest.read_text())
        change(d)
        self.manifest.write_text(yaml.safe_dump(d))

    def arg(self, name: str, value: str) -> None:
        i = self.args.index(name)
        self.args[i + 1] = value


def _rewrite(path: Path, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    change(pd.read_parquet(path)).to_parquet(path, index=False)


def _duplicate_column(path: Path, name: str) -> None:
    table = pq.read_table(path)
    table = pa.Table.from_arrays([*table.columns, table.column(name)], names=[*table.column_names, name])
    pq.write_table(table, path)


def _shuffle_spectrogram_columns(path: Path) -> None:
    df = pd.read_parquet(path)
    cols = list(df.columns[1:])
    np.random.default_rng(0).shuffle(cols)
    df[["time", *cols]].to_parquet(path, index=False)


def _table(ctx: Ctx, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    change(ctx.table).to_csv(ctx.root / "test.csv", index=False)


def _set_time_inf(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[10, "time"] = np.inf
    return df


def _damaged_safetensors(ctx: Ctx) -> None:
    from safetensors.torch import save_file
    path = ctx.weights / "tiny.safetensors"
    save_file(torch.load(ctx.weights / "tiny_0.pt", weights_only=True), str(path))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    ctx.edit_manifest(lambda d: d["members"][0].update(checkpoint=str(path)))


def _checkpoint(ctx: Ctx, data: bytes) -> None:
    (ctx.weights / "tiny_0.pt").write_bytes(data)


def _out(ctx: Ctx, path: Path) -> None:
    ctx.out = path
    ctx.arg("--out", str(path))


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


LFS = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 198000000\n"

# (name, mutation, expectation, fragment): expectation is same (the base run's numbers), ok, degraded:<input>,
# fallback, or error; the fragment must be in the problem's reason (degraded / fallback) or in the error.
CASES: list[tuple[str, Callable[[Ctx], object], str, str]] = [
    # one row's input unusable: predicted from the other, or the fallback distribution
    ("eeg file missing", lambda c: c.eeg.unlink(), "degraded:eeg", "file not found"),
    ("spectrogram file missing", lambda c: c.spect.unlink(), "degraded:spectrogram", "file not found"),
    ("both files missing", lambda c: (c.eeg.unlink(), c.spect.unlink()), "fallback", "file not found"),
    ("eeg file empty", lambda c: c.eeg.write_bytes(b""), "degraded:eeg", "unreadable or corrupt parquet"),
    ("eeg file truncated", lambda c: c.eeg.write_bytes(c.eeg.read_bytes()[:5000]), "degraded:eeg",
     "unreadable or corrupt parquet"),
    ("eeg file not parquet", lambda c: c.eeg.write_text("Fp1,F3\n1,2\n"), "degraded:eeg", "unreadable or corrupt"),
    ("eeg path is a folder", lambda c: (c.eeg.unlink(), c.eeg.mkdir()), "degraded:eeg", "file not found"),
    ("spectrogram truncated", lambda c: c.spect.write_bytes(c.spect.read_bytes()[:3000]),
     "degraded:spectrogram", "unreadable or corrupt parquet"),
    ("eeg electrode missing", lambda c: _rewrite(c.eeg, lambda d: d.drop(columns=["Fp1"])), "degraded:eeg",
     "missing column(s) ['Fp1']"),
    ("eeg electrode duplicated", lambda c: _duplicate_column(c.eeg, "Fp1"), "degraded:eeg",
     "['Fp1'] appear more than once"),
    ("eeg column non-numeric", lambda c: _rewrite(c.eeg, lambda d: d.assign(T3=d["T3"].astype(str))),
     "degraded:eeg", "column 'T3' holds non-numeric data"),
    ("eeg with 0 rows", lambda c: _rewrite(c.eeg, lambda d: d.iloc[:0]), "degraded:eeg", "has no rows"),
    ("spectrogram with 0 rows", lambda c: _rewrite(c.spect, lambda d: d.iloc[:0]), "degraded:spectrogram",
     "has no rows"),
    ("spectrogram without time", lambda c: _rewrite(c.spect, lambda d: d.drop(columns=["time"])),
     "degraded:spectrogram", "missing column(s) ['time']"),
    ("spectrogram time all NaN", lambda c: _rewrite(c.spect, lambda d: d.assign(time=np.nan)),
     "degraded:spectrogram", "no finite values"),
    ("spectrogram region short", lambda c: _rewrite(c.spect, lambda d: d.drop(columns=[d.columns[1]])),
     "degraded:spectrogram", "expected 100 columns named LL_*, found 99"),
    # odd but valid
    ("eeg columns reordered", lambda c: _rewrite(c.eeg, lambda d: d[d.columns[::-1]]), "same", ""),
    ("eeg extra columns", lambda c: _rewrite(c.eeg, lambda d: d.assign(X1=1.0, EOG=2.0)), "same", ""),
    ("spectrogram columns shuffled", lambda c: _shuffle_spectrogram_columns(c.spect), "same", ""),
    ("test.csv extra columns", lambda c: _table(c, lambda t: t.assign(note="x")), "same", ""),
    ("spectrogram time +inf", lambda c: _rewrite(c.spect, _set_time_inf), "ok", ""),
    ("eeg with 1 row", lambda c: _rewrite(c.eeg, lambda d: d.iloc[:1]), "ok", ""),
    ("eeg with 9999 rows", lambda c: _rewrite(c.eeg, lambda d: d.iloc[:9999]), "ok", ""),
    ("eeg with 60000 rows", lambda c: _rewrite(c.eeg, lambda d: pd.concat([d] * 6, ignore_index=True)), "ok", ""),
    ("eeg all NaN", lambda c: _rewrite(c.eeg, lambda d: d * np.nan), "ok", ""),
    ("eeg with inf values", lambda c: _rewrite(c.eeg, lambda d: d.replace(d.iloc[5, 0], np.inf).assign(
        F3=-np.inf)), "ok", ""),
    ("eeg constant", lambda c: _rewrite(c.eeg, lambda d: d * 0 + 7.0), "ok", ""),
    ("eeg integer columns", lambda c: _rewrite(c.eeg, lambda d: d.fillna(0).astype(np.int32)), "ok", ""),
    ("spectrogram all NaN", lambda c: _rewrite(c.spect, lambda d: d.assign(**{k: np.nan for k in d.columns[1:]})),
     "ok", ""),
    ("test.csv duplicate rows", lambda c: _table(c, lambda t: pd.concat([t, t.iloc[[0]]])), "ok", ""),
    # test.csv
    ("test.csv missing", lambda c: (c.root / "test.csv").unlink(), "error", "test.csv: file not found"),
    ("test.csv a folder", lambda c: ((c.root / "test.csv").unlink(), (c.root / "test.csv").mkdir()), "error",
     "test.csv: is a folder"),
    ("test.csv empty", lambda c: (c.root / "test.csv").write_text(""), "error", "not a readable CSV table"),
    ("test.csv header only", lambda c: _table(c, lambda t: t.iloc[:0]), "error", "the table has no rows"),
    ("test.csv without eeg_id", lambda c: _table(c, lambda t: t.drop(columns=["eeg_id"])), "error",
     "missing column(s) ['eeg_id']"),
    ("test.csv non-integer id", lambda c: _table(c, lambda t: t.assign(eeg_id=t.eeg_id.astype(str) + "x")),
     "error", "row 0 (line 2): eeg_id '"),
    ("test.csv id beyond int64", lambda c: (c.root / "test.csv").write_text(
        "spectrogram_id,eeg_id,patient_id\n1,99999999999999999999,1\n"), "error", "below 2**63"),
    ("test.csv negative id", lambda c: _table(c, lambda t: t.assign(eeg_id=-t.eeg_id)), "error",
     "not a non-negative integer id"),
    # manifest
    ("manifest missing", lambda c: c.manifest.unlink(), "error", "manifest not found"),
    ("manifest invalid YAML", lambda c: c.manifest.write_text("members: [unclosed"), "error", "not valid YAML"),
    ("manifest unknown preset", lambda c: c.edit_manifest(lambda d: d["members"][0].update(arch="cfg_9")), "error",
     "unknown preset 'cfg_9'"),
    ("manifest unknown backbone", lambda c: c.edit_manifest(lambda d: d["members"][0]["arch"].update(
        backbone="no_such_net")), "error", "timm has no model 'no_such_net'"),
    ("manifest n_fft not a number", lambda c: c.edit_manifest(lambda d: d["members"][0]["arch"]["stft"].update(
        n_fft="big")), "error", "StftConfig.n_fft must be a positive int"),
    ("manifest weight inf", lambda c: c.edit_manifest(lambda d: d["members"][0].update(weight=float("inf"))),
     "error", "weight must be a positive finite number"),
    ("manifest weight negative", lambda c: c.edit_manifest(lambda d: d["members"][0].update(weight=-2)), "error",
     "weight must be a positive finite number"),
    ("manifest duplicate names", lambda c: c.edit_manifest(lambda d: d["members"].append(dict(d["members"][0]))),
     "error", "member names must be unique"),
    ("manifest fallback not summing to 1", lambda c: c.edit_manifest(lambda d: d.update(fallback={"seizure": 0.5})),
     "error", "fallback probabilities must sum to 1"),
    ("manifest fallback unknown class", lambda c: c.edit_manifest(lambda d: d.update(fallback={"spike": 1.0})),
     "error", "fallback class 'spike'"),
    # checkpoints
    ("checkpoint missing", lambda c: (c.weights / "tiny_0.pt").unlink(), "error", "checkpoint not found"),
    ("checkpoint sha256 mismatch", lambda c: c.edit_manifest(lambda d: d["members"][0].update(sha256="0" * 64)),
     "error", "does not match the manifest's"),
    ("checkpoint truncated", lambda c: _checkpoint(c, (c.weights / "tiny_0.pt").read_bytes()[:4000]), "error",
     "not a readable weights-only checkpoint"),
    ("checkpoint damaged safetensors", _damaged_safetensors, "error", "not a readable weights-only checkpoint"),
    ("checkpoint Git LFS pointer", lambda c: _checkpoint(c, LFS), "error", "a Git LFS pointer file"),
    ("checkpoint of another arch", lambda c: c.edit_manifest(lambda d: d["members"][0]["arch"]["wavenet"].update(
        out_channels=12)), "error", "checkpoint does not fit arch"),
    # output
    ("output is a folder", lambda c: _out(c, _mkdir(c.out.parent / "sub.csv")), "error", "is a folder"),
    ("output under a file", lambda c: _out(c, c.out.parent / "submission.csv" / "x.csv"), "error",
     "cannot write the output there"),
    ("output on a read-only file system", lambda c: _out(c, Path("/proc/hms_infer/submission.csv")), "error",
     "cannot write the output there"),
    # options
    ("--batch-size 0", lambda c: c.arg("--batch-size", "0"), "error", "--batch-size must be auto or a positive"),
    ("--num-workers -1", lambda c: c.arg("--num-workers", "-1"), "error", "--num-workers must be auto or"),
    ("--tta unknown view", lambda c: c.args.extend(["--tta", "none,ud"]), "error", "tta must be a non-empty list"),
    ("--precision fp16 on the CPU", lambda c: c.args.extend(["--precision", "fp16"]), "error",
     "fp16 runs on GPUs only"),
    ("--shard out of range", lambda c: c.args.extend(["--shard", "2/2"]), "error", "--shard must be i/n"),
    # nothing usable at all, and --strict
    ("every row unusable", lambda c: [p.unlink() for p in c.root.glob("test_*/*.parquet")], "error",
     "no row of test.csv could be predicted"),
    ("--strict and a missing eeg", lambda c: (c.eeg.unlink(), c.args.append("--strict")), "error",
     "file not found (needed by test.csv row 0"),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """A 3-row synthetic folder, one tiny member (view `none`), and the submission of a clean run."""
    root = tmp_path_factory.mktemp("bad_input")
    data = write_competition(root / "data", n_test=3, n_train_eegs=0, seed=5)
    weights = root / "weights"
    save_tiny_checkpoint(weights / "tiny_0.pt", seed=0)
    manifest = {"version": 1, "tta": ["none"], "blend": "prob", "members": [
        {"name": "tiny0", "checkpoint": "tiny_0.pt", "sha256": None, "weight": 1.0, "fold": 0, "arch": TINY_ARCH}]}
    out = root / "base.csv"
    path = weights / "m.yaml"
    path.write_text(yaml.safe_dump(manifest))
    assert main(["--test-dir", str(data), "--out", str(out), "--manifest", str(path), "--device", "cpu",
                 "--num-workers", "0", "--batch-size", "2"]) == 0
    return {"data": data, "weights": weights, "manifest": manifest, "probs": pd.read_csv(out)}


def _context(base: dict, tmp_path: Path, workers: str = "0") -> Ctx:
    root = tmp_path / "data"
    shutil.copytree(base["data"], root)
    weights = tmp_path / "weights"
    shutil.copytree(base["weights"], weights)
    manifest = weights / "m.yaml"
    manifest.write_text(yaml.safe_dump(base["manifest"]))
    out = tmp_path / "out" / "submission.csv"
    out.parent.mkdir()
    out.write_text("previous\n")
    args = ["--test-dir", str(root), "--out", str(out), "--manifest", str(manifest), "--device", "cpu",
            "--num-workers", workers, "--batch-size", "2"]
    return Ctx(root, manifest, weights, out, args)


def _no_temp_files(*folders: Path) -> None:
    for folder in folders:
        if folder.is_dir():
            assert not [p for p in folder.rglob(".*") if p.suffix in (".tmp", ".probe")], folder


def test_the_corpus_is_large_and_its_names_unique():
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names)) and len(names) >= 35


@pytest.mark.parametrize("name, mutate, expect, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(base, tmp_path, capsys, name, mutate, expect, fragment):
    ctx = _context(base, tmp_path, workers="2" if "eeg file" in name else "0")
    mutate(ctx)
    code = main(ctx.args)
    cap = capsys.readouterr()
    assert "Traceback" not in cap.out + cap.err
    _no_temp_files(ctx.root, tmp_path / "out", ctx.weights)
    report = ctx.out.with_suffix(".issues.json")
    if expect == "error":
        assert code == 2, cap.out[-2000:]
        lines = cap.err.strip().splitlines()
        assert lines[-1].startswith("hms_infer: error: ") and fragment in lines[-1], cap.err
        if ctx.out.is_file():
            assert ctx.out.read_text() == "previous\n"
        assert not report.exists()
        return
    assert code == 0, cap.err[-2000:]
    table = pd.read_csv(ctx.root / "test.csv")
    sub = pd.read_csv(ctx.out)
    assert list(sub.columns) == list(SUBMISSION_HEADER) and sub.eeg_id.tolist() == table.eeg_id.tolist()
    probs = sub.iloc[:, 1:].to_numpy()
    assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1) and ((probs >= 0) & (probs <= 1)).all()
    issues = json.loads(report.read_text())
    assert issues["rows"] == len(table) and f"(problem rows: {report})" in cap.out
    if expect in ("ok", "same"):
        assert issues["problem_rows"] == [] and issues["degraded"] == issues["fallback"] == 0
        if expect == "same":
            np.testing.assert_allclose(probs, base["probs"].iloc[:, 1:].to_numpy(), rtol=0, atol=1e-6)
        return
    status, _, input_ = expect.partition(":")
    (row,) = issues["problem_rows"]
    assert row["row"] == 0 and row["eeg_id"] == table.eeg_id[0] and row["status"] == status
    assert any(fragment in p["reason"] for p in row["problems"]), row
    if input_:
        assert [p["input"] for p in row["problems"]] == [input_]
    assert issues[status] == 1 and f"1 {status}" in cap.out.strip().splitlines()[-1]
    assert f"{status}" in cap.out and fragment in cap.out  # the printed table
    if status == "fallback":  # the default `mean`: the mean of the predicted rows
        np.testing.assert_allclose(probs[0], probs[1:].mean(0), rtol=0, atol=1e-9)
    else:
        assert not np.allclose(probs[0], base["probs"].iloc[0, 1:].to_numpy(), atol=1e-6)


def test_manifest_fallback_mapping_is_used(base, tmp_path, capsys):
    ctx = _context(base, tmp_path)
    ctx.eeg.unlink()
    ctx.spect.unlink()
    ctx.edit_manifest(lambda d: d.update(fallback={"seizure_vote": 0.25, "other": 0.75}))
    assert main(ctx.args) == 0
    sub = pd.read_csv(ctx.out)
    assert sub.loc[0, "seizure_vote"] == 0.25 and sub.loc[0, "other_vote"] == 0.75
    assert sub.iloc[0, 1:].sum() == 1.0
    assert "fallback: the manifest's fallback" in capsys.readouterr().out


def test_a_dead_worker_is_replaced_by_reading_in_the_main_process(base, tmp_path, monkeypatch, caplog):
    """A worker killed mid-run (as by the out-of-memory killer): its rows are read in the main process."""
    import os

    from torch.utils.data import get_worker_info

    from hms_infer import loader
    ctx = _context(base, tmp_path, workers="2")
    read = loader.ModelInputs.__getitem__

    def dies_in_a_worker(self, k):
        if get_worker_info() is not None and self.rows[k] == 2:
            os._exit(1)
        return read(self, k)
    monkeypatch.setattr(loader.ModelInputs, "__getitem__", dies_in_a_worker)
    ctx.arg("--batch-size", "1")
    assert main(ctx.args) == 0
    assert "DataLoader worker" in caplog.text and "reading the remaining rows in the main process" in caplog.text
    np.testing.assert_allclose(pd.read_csv(ctx.out).iloc[:, 1:].to_numpy(), base["probs"].iloc[:, 1:].to_numpy(),
                               rtol=0, atol=1e-6)


def test_rows_without_finite_probabilities_fall_back(base, tmp_path, monkeypatch, capsys):
    """CUDA out of memory at one row gives NaN logits (test_runtime); such a row takes the fallback."""
    from hms_infer.ensemble import Ensemble
    ctx = _context(base, tmp_path)
    member_logits = Ensemble.member_logits

    def nan_for_the_second_row(self, electrodes, spect, stats=None, heads=False):
        out = member_logits(self, electrodes, spect, stats, heads).clone()
        if len(electrodes) == 2 and stats is not None and stats.batches == 0:
            out[:, 1] = float("nan")
        return out
    monkeypatch.setattr(Ensemble, "member_logits", nan_for_the_second_row)
    assert main(ctx.args) == 0
    issues = json.loads(ctx.out.with_suffix(".issues.json").read_text())
    (row,) = issues["problem_rows"]
    assert row["row"] == 1 and row["status"] == "fallback" and row["problems"][0]["input"] == "model"
    probs = pd.read_csv(ctx.out).iloc[:, 1:].to_numpy()
    np.testing.assert_allclose(probs[1], probs[[0, 2]].mean(0), rtol=0, atol=1e-9)
    assert main([*ctx.args, "--strict"]) == 2
    assert "the models gave no finite probabilities" in capsys.readouterr().err


def _models_must_not_load(monkeypatch) -> list:
    """Every model load (`members.load_members`, which `Ensemble.from_manifest` calls) is recorded and refused."""
    from hms_infer import ensemble
    loads = []

    def refuse(*args, **kwargs):
        loads.append(args)
        raise AssertionError("a model was loaded")
    monkeypatch.setattr(ensemble, "load_members", refuse)
    return loads


@pytest.mark.parametrize("folder", ["test_eegs", "test_spectrograms"])
def test_a_missing_data_folder_stops_before_any_model_loads(base, tmp_path, monkeypatch, capsys, folder):
    """A --test-dir without test_eegs/ (or test_spectrograms/): a wrong path, not 3 degraded rows. Exit 2 with one
    line naming the folder and listing what the test dir holds; no model loaded; the previous submission untouched
    (bytes and mtime), no issues JSON."""
    ctx = _context(base, tmp_path)
    shutil.rmtree(ctx.root / folder)
    (ctx.root / "notes.txt").write_text("x")
    stat = ctx.out.stat()
    loads = _models_must_not_load(monkeypatch)
    assert main(ctx.args) == 2
    err = capsys.readouterr().err
    found = ", ".join(sorted({"notes.txt", "test.csv", "test_eegs/", "test_spectrograms/", "train.csv", "train_eegs/",
                              "train_spectrograms/"} - {f"{folder}/"}))
    assert err == (f"hms_infer: error: {ctx.root}: no {folder}/ folder (found: {found}); the competition folder "
                   f"holds test.csv, test_eegs/ and test_spectrograms/\n")
    assert loads == []
    assert ctx.out.read_bytes() == b"previous\n" and ctx.out.stat().st_mtime_ns == stat.st_mtime_ns
    assert not ctx.out.with_suffix(".issues.json").exists()
    # a folder that exists with a row's file missing keeps the per-row policy (the corpus: "eeg file missing")


def test_a_missing_data_folder_is_the_same_error_for_every_command(base, tmp_path, monkeypatch, capsys):
    """report, timeline, inputs and parity on a --data-dir without its split's eegs folder: exit 2 before any model
    loads (or any file is written), the message naming the folder; an empty folder lists nothing."""
    ctx = _context(base, tmp_path)
    write_competition(ctx.root, n_test=3, n_train_eegs=1, seed=5)  # a training table too
    shutil.rmtree(ctx.root / "train_eegs")
    shutil.rmtree(ctx.root / "test_spectrograms")
    loads = _models_must_not_load(monkeypatch)
    table = tmp_path / "folds.csv"
    pd.read_csv(ctx.root / "train.csv").assign(fold=0).to_csv(table, index=False)
    oof = tmp_path / "oof.csv"
    pd.DataFrame({"label_id": pd.read_csv(table).label_id, **{f"logit_{c}": 0.0 for c in CLASSES}}).to_csv(oof,
                                                                                                        index=False)
    common = ["--manifest", str(ctx.manifest), "--device", "cpu", "--num-workers", "0"]
    runs = {
        "test_spectrograms": [
            ["report", "--data-dir", str(ctx.root), "--out", str(tmp_path / "r"), *common],
            ["timeline", "--data-dir", str(ctx.root), "--split", "test", "--all", "--out", str(tmp_path / "t"),
             *common],
            ["inputs", "--data-dir", str(ctx.root), "--out", str(tmp_path / "i.npz")]],
        "train_eegs": [
            ["timeline", "--data-dir", str(ctx.root), "--all", "--out", str(tmp_path / "t"), *common],
            ["inputs", "--data-dir", str(ctx.root), "--split", "train", "--out", str(tmp_path / "i.npz")],
            ["parity", "--data-dir", str(ctx.root), "--table", str(table), "--oof", str(oof), *common]],
    }
    for folder, commands in runs.items():
        for argv in commands:
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert err.startswith(f"hms_infer: error: {ctx.root}: no {folder}/ folder (found: ") \
                and err.count("\n") == 1, (argv, err)
    assert loads == [] and sorted(p.name for p in tmp_path.iterdir()) == ["data", "folds.csv", "oof.csv", "out",
                                                                         "weights"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["inputs", "--data-dir", str(empty), "--out", str(tmp_path / "i.npz")]) == 2
    assert capsys.readouterr().err == (f"hms_infer: error: {empty}: no test_eegs/ folder (found: nothing); the "
                                       f"competition folder holds test.csv, test_eegs/ and test_spectrograms/\n")
