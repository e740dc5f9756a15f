"""The data layer: windows, centring, padding, duplicate rows, and clear errors for bad input."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hms_infer.cli import main
from hms_infer.constants import CLASSES, ELECTRODES, SPECT_REGIONS
from hms_infer.data import Competition
from hms_infer.errors import HMSInputError
from hms_infer.synthetic import make_eeg, make_spectrogram


def _folder(root: Path, eeg: pd.DataFrame, spect: pd.DataFrame, table: dict | None = None, split: str = "test"):
    (root / f"{split}_eegs").mkdir(parents=True, exist_ok=True)
    (root / f"{split}_spectrograms").mkdir(parents=True, exist_ok=True)
    eeg.to_parquet(root / f"{split}_eegs" / "11.parquet", index=False)
    spect.to_parquet(root / f"{split}_spectrograms" / "22.parquet", index=False)
    pd.DataFrame(table or {"spectrogram_id": [22], "eeg_id": [11], "patient_id": [1]}).to_csv(
        root / f"{split}.csv", index=False)
    return root


def _regions(spect: pd.DataFrame) -> np.ndarray:
    """(T, 4, 100) in SPECT_REGIONS order, straight from the frame."""
    return np.stack([spect[[c for c in spect.columns if c.startswith(f"{r}_")]].to_numpy(np.float32)
                     for r in SPECT_REGIONS], axis=1)


def test_long_recordings_without_offsets_use_the_central_window(tmp_path, caplog):
    rng = np.random.default_rng(0)
    eeg, spect = make_eeg(20000, rng), make_spectrogram(600, rng)  # 100 s, 20 minutes
    comp = Competition(_folder(tmp_path, eeg, spect), "test")
    with caplog.at_level(logging.WARNING, logger="hms_infer"):
        _, e, s = comp[0]
        comp[0]
    np.testing.assert_array_equal(e, eeg[list(ELECTRODES)].to_numpy(np.float32)[5000:15000])
    np.testing.assert_array_equal(s, _regions(spect)[150:450], strict=False)
    assert s.shape == (300, 4, 100)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("central 50 s" in m for m in messages) <= 1 and sum("central 10 minutes" in m for m in messages) <= 1


def test_short_recordings_are_padded_with_nan_and_logged(tmp_path, caplog):
    rng = np.random.default_rng(1)
    eeg, spect = make_eeg(6000, rng), make_spectrogram(200, rng)
    comp = Competition(_folder(tmp_path, eeg, spect), "test")
    with caplog.at_level(logging.WARNING, logger="hms_infer"):
        _, e, s = comp[0]
    assert e.shape == (10000, 19) and np.isnan(e[6000:]).all()
    np.testing.assert_array_equal(e[:6000], eeg[list(ELECTRODES)].to_numpy(np.float32))
    assert s.shape == (300, 4, 100) and np.isnan(s[200:]).all()
    np.testing.assert_array_equal(s[:200], _regions(spect))
    text = caplog.text
    assert "11.parquet" in text and "22.parquet" in text and "padding with NaN" in text


def test_train_offsets_select_the_labelled_window(tmp_path):
    rng = np.random.default_rng(2)
    eeg, spect = make_eeg(30000, rng), make_spectrogram(700, rng)
    table = {"eeg_id": [11, 11], "eeg_sub_id": [0, 1], "eeg_label_offset_seconds": [0.0, 36.0],
             "spectrogram_id": [22, 22], "spectrogram_label_offset_seconds": [100.0, 137.0],
             "label_id": [5, 6], "patient_id": [1, 1]}
    comp = Competition(_folder(tmp_path, eeg, spect, table, "train"), "train")
    assert [r.key for r in comp.rows] == [5, 6]
    raw = eeg[list(ELECTRODES)].to_numpy(np.float32)
    np.testing.assert_array_equal(comp[1][1], raw[7200:17200])
    regions, time = _regions(spect), spect["time"].to_numpy()
    # offset 100 (even) -> start 101; offset 137 (odd) -> start 137; 300 frames each, in [start, start + 598]
    np.testing.assert_array_equal(comp[0][2], regions[(time >= 101) & (time <= 699)])
    np.testing.assert_array_equal(comp[1][2], regions[(time >= 137) & (time <= 735)])


def test_duplicate_eeg_ids_stay_separate_rows_in_order(synthetic_dir, tmp_path):
    root = tmp_path / "dup"
    shutil.copytree(synthetic_dir, root)
    table = pd.read_csv(root / "test.csv")
    pd.concat([table.iloc[[1]], table, table.iloc[[1]]]).to_csv(root / "test.csv", index=False)
    comp = Competition(root, "test")
    ids = [r.eeg_id for r in comp.rows]
    assert ids == [table.eeg_id[1], *table.eeg_id, table.eeg_id[1]]
    np.testing.assert_array_equal(comp[0][1], comp[2][1])
    np.testing.assert_array_equal(comp[0][2], comp[len(comp) - 1][2])


def _run_inputs(root: Path, tmp_path: Path, capsys) -> tuple[int, str]:
    code = main(["inputs", "--data-dir", str(root), "--split", "test", "--out", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _corrupt(root: Path, case: str) -> str:
    """Break a copy of the synthetic folder in one way; return a fragment the error must contain."""
    table = pd.read_csv(root / "test.csv")
    eeg_path = root / "test_eegs" / f"{table.eeg_id[2]}.parquet"
    spect_path = root / "test_spectrograms" / f"{table.spectrogram_id[2]}.parquet"
    if case == "missing eeg file":
        eeg_path.unlink()
        return f"{eeg_path.name}: file not found (needed by test.csv row 2"
    if case == "missing spectrogram file":
        spect_path.unlink()
        return f"{spect_path.name}: file not found (needed by test.csv row 2"
    if case == "missing column":
        pd.read_parquet(eeg_path).drop(columns=["Cz"]).to_parquet(eeg_path)
        return "missing column(s) ['Cz']; found"
    if case == "misnamed column":
        pd.read_parquet(eeg_path).rename(columns={"Fp1": "FP1"}).to_parquet(eeg_path)
        return "missing column(s) ['Fp1']"
    if case == "misnamed spectrogram columns":
        pd.read_parquet(spect_path).rename(columns=lambda c: c.replace("LP_", "XX_")).to_parquet(spect_path)
        return "expected 100 columns named LP_*, found 0"
    if case == "non-numeric data":
        df = pd.read_parquet(eeg_path)
        df["T3"] = df["T3"].astype(str)
        df.to_parquet(eeg_path)
        return "column 'T3' holds non-numeric data"
    if case == "spectrogram without times":
        df = pd.read_parquet(spect_path)
        df["time"] = np.nan
        df.to_parquet(spect_path)
        return "the time column holds no finite values (needed by test.csv row 2"
    if case == "corrupt parquet":
        eeg_path.write_bytes(b"PAR1 this is not parquet")
        return f"{eeg_path.name}: unreadable or corrupt parquet file: "
    if case == "empty parquet":
        pd.read_parquet(eeg_path).iloc[:0].to_parquet(eeg_path)
        return "the recording has no rows (needed by test.csv row 2"
    if case == "empty table":
        table.iloc[:0].to_csv(root / "test.csv", index=False)
        return "test.csv: the table has no rows"
    if case == "missing table column":
        table.drop(columns=["spectrogram_id"]).to_csv(root / "test.csv", index=False)
        return "test.csv: missing column(s) ['spectrogram_id']"
    if case == "non-integer id":
        table["eeg_id"] = table["eeg_id"].astype(object)
        table.loc[3, "eeg_id"] = "abc"
        table.to_csv(root / "test.csv", index=False)
        return "test.csv row 3 (line 5): eeg_id 'abc' is not a non-negative integer id"
    if case == "fractional id":
        table["spectrogram_id"] = table["spectrogram_id"].astype(np.float64)
        table.loc[1, "spectrogram_id"] = 7000039.5
        table.to_csv(root / "test.csv", index=False)
        return "test.csv row 1 (line 3): spectrogram_id 7000039.5 is not a non-negative integer id"  # not np.float64
    if case == "empty offset":
        table.assign(eeg_label_offset_seconds=[0.0, float("nan"), *[0.0] * (len(table) - 2)],
                     spectrogram_label_offset_seconds=0.0).to_csv(root / "test.csv", index=False)
        return "test.csv row 1 (line 3): eeg_label_offset_seconds nan is not a non-negative number"
    raise AssertionError(case)


BAD_CASES = ["missing eeg file", "missing spectrogram file", "missing column", "misnamed column",
             "misnamed spectrogram columns", "spectrogram without times", "non-numeric data", "corrupt parquet",
             "empty parquet", "empty table", "missing table column", "non-integer id", "fractional id", "empty offset"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_gives_a_clear_error_naming_file_and_row(synthetic_dir, tmp_path, capsys, case):
    root = tmp_path / "data"
    shutil.copytree(synthetic_dir, root)
    fragment = _corrupt(root, case)
    code, err = _run_inputs(root, tmp_path, capsys)
    assert code == 2
    assert err.startswith("hms_infer: error: ") and fragment in err, err
    assert not (tmp_path / "x.npz").exists()
    with pytest.raises(HMSInputError):
        list(Competition(root, "test"))


def test_odd_but_valid_data_is_not_an_error(tmp_path):
    rng = np.random.default_rng(3)
    eeg = make_eeg(10000, rng)
    eeg[list(ELECTRODES[:5])] = np.nan  # all-NaN channels
    eeg.iloc[100:200] = np.nan  # NaN rows
    eeg["O2"] = 1e9  # extreme values
    spect = make_spectrogram(300, rng)
    spect.iloc[:, 1:50] = np.nan
    comp = Competition(_folder(tmp_path, eeg, spect), "test")
    _, e, s = comp[0]
    assert e.shape == (10000, 19) and s.shape == (300, 4, 100)


def test_training_table_errors_show_plain_values_and_the_file_line(tmp_path):
    """The training tables' readers name the file, the 0-based row and its line, and show the bad value as the
    file holds it (`1.5`, `'x'`, `7`), never numpy's repr (`np.float64(1.5)`)."""
    from hms_infer.training import TABLE_COLUMNS, read_label_table, read_oof, read_train_table
    rows = pd.DataFrame({c: [0, 0, 0] for c in TABLE_COLUMNS}).assign(label_id=[7, 8, 7], eeg_sub_id=[0, 1, 2])
    path = tmp_path / "folds.csv"
    rows.assign(fold=[0.0, 1.5, 1.0]).to_csv(path, index=False)
    with pytest.raises(HMSInputError) as e:
        read_train_table(path)
    assert str(e.value) == f"{path} row 1 (line 3): fold 1.5 is not an integer"
    rows.to_csv(path, index=False)
    with pytest.raises(HMSInputError) as e:
        read_label_table(path)
    assert str(e.value) == (f"{path} row 2 (line 4): label_id 7 appears more than once (the pseudo labels are keyed "
                            f"by label_id)")
    oof = tmp_path / "oof.csv"
    logits = {f"logit_{c}": [0.5, 1.0] for c in CLASSES}
    pd.DataFrame({"label_id": [7, 8], **logits}).assign(logit_gpd=[0.5, np.nan]).to_csv(oof, index=False)
    with pytest.raises(HMSInputError) as e:
        read_oof(oof)
    assert str(e.value) == (f"{oof} row 1 (line 3): label_id 8 is not a unique integer id with 6 finite logits: "
                            f"[nan, 1.0, 1.0, 1.0, 1.0, 1.0]")
    pd.DataFrame({"label_id": ["7", "x"], **logits}).to_csv(oof, index=False)
    with pytest.raises(HMSInputError) as e:
        read_oof(oof)
    assert str(e.value) == (f"{oof} row 1 (line 3): label_id 'x' is not a unique integer id with 6 finite logits: "
                            f"[1.0, 1.0, 1.0, 1.0, 1.0, 1.0]")
