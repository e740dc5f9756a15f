"""Parity against saved OOF (SPEC §5) on the synthetic train split with tiny-backbone checkpoints.

The reference OOF is computed once, independently of the parity code path: `HMSModel.forward` on the numpy
montage, validation rows picked by a plain loop. The synthetic train split has 3 eeg_ids -> 3 validation rows.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from hms_infer.cli import main
from hms_infer.constants import CLASSES, VOTE_COLUMNS
from hms_infer.data import Competition
from hms_infer.errors import HMSInputError
from hms_infer.models import create_model
from hms_infer.tasks.parity import parity
from hms_infer.training import LOGIT_COLUMNS, read_preds_dir
from hms_infer.preprocess import eeg_electrodes, spectrogram_image
from hms_infer.montage import bipolar

from .conftest import TINY_ARCH, tiny_manifest

SEED = 3
REPORT_KEYS = {"rows", "max_abs_logit_diff", "mean_abs_logit_diff", "p99_abs_logit_diff", "max_abs_prob_diff",
               "kl_saved", "kl_recomputed", "kl_diff", "mean_abs_prob_diff", "folds", "tolerance", "passed"}


def scaled_weights(src: Path, dst: Path, scale: float = 20.0) -> Path:
    """The tiny checkpoints with `head_all` scaled: random init gives logits near 0, trained models give units."""
    dst.mkdir()
    for f in (0, 1):
        sd = torch.load(src / f"test_efficientnet_{f}_0.pt", weights_only=True)
        sd["head_all.weight"], sd["head_all.bias"] = sd["head_all.weight"] * scale, sd["head_all.bias"] * scale
        torch.save(sd, dst / f"test_efficientnet_{f}_0.pt")
    return dst


def write_manifest(path: Path, weights: Path, folds=(0, 1), swap: bool = False) -> Path:
    """All four views (parity must use `none` only), absolute checkpoint paths; `swap` exchanges folds 0 and 1."""
    m = tiny_manifest(weights, folds=folds)
    for member in m["members"]:
        f = 1 - member["fold"] if swap else member["fold"]
        member["checkpoint"] = str(weights / f"test_efficientnet_{f}_0.pt")
    path.write_text(yaml.safe_dump(m))
    return path


@pytest.fixture(scope="module")
def case(synthetic_dir, tiny_weights, tmp_path_factory) -> dict:
    """Table with folds, fp32 reference OOF in the training layout and as a CSV, manifests."""
    root = tmp_path_factory.mktemp("parity")
    table = pd.read_csv(synthetic_dir / "train.csv")
    eeg_index = {e: i for i, e in enumerate(dict.fromkeys(table["eeg_id"]))}
    table["fold"] = table["eeg_id"].map(eeg_index) % 2
    # reversed: each eeg_id's first row in the file is its largest eeg_sub_id, not its validation row
    table = table.iloc[::-1].reset_index(drop=True)
    table.to_csv(root / "train_folds.csv", index=False)
    weights = scaled_weights(tiny_weights, root / "weights")

    first_sub = table.groupby("eeg_id")["eeg_sub_id"].min()
    fold_of = dict(zip(table["label_id"], table["fold"]))
    models = {}
    for f in (0, 1):
        models[f] = create_model(TINY_ARCH)
        models[f].load_state_dict(torch.load(weights / f"test_efficientnet_{f}_0.pt", weights_only=True))
    logits = {}
    for row, eeg, spect in Competition(synthetic_dir, "train", table=table):
        sub = table.loc[row.index, "eeg_sub_id"]
        if sub != first_sub[row.eeg_id]:
            continue
        x = torch.from_numpy(bipolar(eeg_electrodes(eeg), "none"))[None]
        s = torch.from_numpy(spectrogram_image(spect))[None]
        with torch.inference_mode():
            logits[row.key] = models[fold_of[row.key]](x, s)["all"][0].numpy().astype(np.float32)
    assert len(logits) == 3
    preds = root / "preds"
    for label_id, values in logits.items():
        (preds / str(label_id)).mkdir(parents=True)
        np.save(preds / str(label_id) / f"pred_{SEED}.npy", values)
        np.save(preds / str(label_id) / f"pred_{SEED + 1}.npy", values + 10)  # another seed: must be ignored
    # the CSV form holds fold 1's row only: one forward pass, and the other validation rows have no prediction
    oof = pd.DataFrame([[k, *v] for k, v in logits.items() if fold_of[k] == 1], columns=["label_id", *LOGIT_COLUMNS])
    oof.to_csv(root / "oof.csv", index=False)
    return {"root": root, "table": root / "train_folds.csv", "preds": preds, "oof": root / "oof.csv",
            "logits": logits, "data": synthetic_dir,
            "manifest": write_manifest(root / "manifest.yaml", weights),
            "swapped": write_manifest(root / "swapped.yaml", weights, swap=True),
            "fold0_only": write_manifest(root / "fold0.yaml", weights, folds=(0,))}


def cli(case: dict, *extra: str) -> list[str]:
    return ["parity", "--data-dir", str(case["data"]), "--table", str(case["table"]), "--device", "cpu",
            "--num-workers", "0", *extra]


def test_parity_with_own_fp32_oof_passes(case):
    report = parity(data_dir=case["data"], table=case["table"],
                    manifest=case["manifest"], saved=read_preds_dir(case["preds"], SEED),
                    device="cpu", num_workers=0, progress=False)
    assert report["rows"] == 3 and report["rows_without_prediction"] == 0
    assert report["max_abs_logit_diff"] < 1e-5 and report["passed"]
    assert {f: v["rows"] for f, v in report["folds"].items()} == {"0": 2, "1": 1}
    assert report["precision"] == "fp32"
    # KL of the saved logits against the votes, computed here by class name
    table = pd.read_csv(case["table"]).set_index("label_id")
    kl = 0.0
    for label_id, z in case["logits"].items():
        votes = table.loc[label_id, [f"{c}_vote" for c in CLASSES]].to_numpy(float)
        y, p = votes / votes.sum(), np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        kl += float(np.sum(np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / p), 0.0)))
    assert report["kl_saved"] == pytest.approx(kl / 3, rel=1e-5)
    assert report["kl_recomputed"] == pytest.approx(report["kl_saved"], abs=1e-5)


def test_oof_csv_form_and_json_report(case, capsys):
    out = case["root"] / "reports" / "oof.json"
    code = main(cli(case, "--oof", str(case["oof"]), "--manifest", str(case["manifest"]), "--report", str(out)))
    text = capsys.readouterr().out
    assert code == 0
    report = json.loads(out.read_text())
    assert REPORT_KEYS <= set(report)
    assert report["rows"] == 1 and report["rows_without_prediction"] == 2 and list(report["folds"]) == ["1"]
    assert report["passed"] is True and report["max_abs_logit_diff"] < 1e-5
    assert set(report["mean_abs_prob_diff"]) == set(CLASSES)
    assert "1 rows in" in text and "rows/s" in text and "KL recomputed vs labels" in text
    assert text.strip().splitlines()[-1].startswith("PASSED")


def test_swapped_fold_checkpoints_fail(case, capsys):
    out = case["root"] / "swapped.json"  # fold 1's row recomputed with fold 0's checkpoint
    code = main(cli(case, "--oof", str(case["oof"]), "--manifest", str(case["swapped"]), "--report", str(out)))
    assert code == 1
    report = json.loads(out.read_text())
    assert report["passed"] is False and report["max_abs_logit_diff"] > 0.05
    assert report["folds"]["1"]["member"] == "tiny1"
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("FAILED")


def test_missing_fold_member_names_the_fold(case, capsys):
    code = main(cli(case, "--preds-dir", str(case["preds"]), "--seed", str(SEED),
                    "--manifest", str(case["fold0_only"])))
    assert code == 2
    assert "fold 1:" in capsys.readouterr().err
    with pytest.raises(HMSInputError, match="fold 1: .* 0 members with fold 1"):
        parity(data_dir=case["data"], table=case["table"],
               manifest=case["fold0_only"], saved=read_preds_dir(case["preds"], SEED), device="cpu")


def test_no_row_to_compare_is_an_error(case, capsys):
    code = main(cli(case, "--preds-dir", str(case["preds"]), "--seed", "99", "--manifest", str(case["manifest"])))
    assert code == 2
    assert "no row to compare" in capsys.readouterr().err
    assert main(cli(case, "--preds-dir", str(case["preds"]), "--manifest", str(case["manifest"]))) == 2
    assert "--seed" in capsys.readouterr().err


def test_a_validation_row_without_votes_is_an_error_naming_the_file(case, tmp_path, capsys):
    """Parity judges the recomputed logits against the votes: a compared row without votes stops it before any
    model loads, naming the table file, the row (0-based and its file line) and its ids."""
    table = pd.read_csv(case["table"])
    label_id = next(iter(case["logits"]))
    i = int(np.flatnonzero(table.label_id == label_id)[0])
    table.loc[i, list(VOTE_COLUMNS)] = 0
    table.to_csv(tmp_path / "t.csv", index=False)
    argv = cli(case, "--preds-dir", str(case["preds"]), "--seed", str(SEED), "--manifest", str(case["manifest"]))
    argv[argv.index("--table") + 1] = str(tmp_path / "t.csv")
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"hms_infer: error: Target values must sum to one: {tmp_path / 't.csv'} row {i} (line {i + 2}, label_id "
        f"{label_id}, eeg_id {table.eeg_id[i]}) has no votes (all six vote columns are zero)\n")


def test_table_needs_fold(case, tmp_path):
    pd.read_csv(case["table"]).drop(columns="fold").to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(HMSInputError, match=r"missing column\(s\) \['fold'\]"):
        parity(data_dir=case["data"], table=tmp_path / "t.csv", manifest=case["manifest"], saved={}, device="cpu")


def test_members_glob_selects_one_configuration(case, capsys):
    m = yaml.safe_load(case["manifest"].read_text())
    decoy = dict(m["members"][0], name="other/fold1", fold=1)  # a second configuration's fold-1 checkpoint
    path = case["root"] / "two_configs.yaml"
    path.write_text(yaml.safe_dump(dict(m, members=[*m["members"], decoy])))
    assert main(cli(case, "--oof", str(case["oof"]), "--manifest", str(path))) == 2
    assert "2 members with fold 1 matching '*'" in capsys.readouterr().err
    assert main(cli(case, "--oof", str(case["oof"]), "--manifest", str(path), "--members", "tiny*")) == 0


def test_sharded_parity_merges_into_the_same_report(case, tmp_path):
    saved = read_preds_dir(case["preds"], SEED)
    args = dict(device="cpu", num_workers=0, progress=False, batch_size=1)
    whole = parity(data_dir=case["data"], table=case["table"],
                   manifest=case["manifest"], saved=saved, **args)
    report = tmp_path / "parity.json"
    first = parity(data_dir=case["data"], table=case["table"],
                   manifest=case["manifest"], saved=saved, report_path=report, shard="1/2", **args)
    assert first == {"shard": "1/2", "rows": 1, "merged": False, "passed": True} and not report.exists()
    merged = parity(data_dir=case["data"], table=case["table"],
                    manifest=case["manifest"], saved=saved, report_path=report, shard="0/2", **args)
    # fold 0 has 2 rows (batches 0, 1), fold 1 one (batch 2): shard 0 takes batches 0 and 2
    for key in ("rows", "max_abs_logit_diff", "mean_abs_logit_diff", "kl_recomputed", "folds", "passed"):
        assert merged[key] == whole[key], key
    assert json.loads(report.read_text())["rows"] == 3
