"""`evaluate`: vote-aware scores of prediction sets against hand computations on a small table, the group bootstrap
against a plain loop, paired comparisons on informative / noise / equal sets, the page read back against the JSON,
the demo's data end to end through the CLI in all four layouts, and bad input.
"""
from __future__ import annotations

import base64
import io
import json
import logging
import math
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

from hms_infer.cli import main
from hms_infer.constants import SUBMISSION_ORDER, VOTE_COLUMNS
from hms_infer.evaluation import bootstrap_means, calibration, confusion, consensus, vote_bucket
from hms_infer.metric import score
from hms_infer.training import LOGIT_COLUMNS
from hms_infer.tasks.pseudo_labels import label_frame
from hms_infer.synthetic import write_competition
from hms_infer.tasks.evaluate import evaluate, summary_frame

# VOTE_COLUMNS order: seizure, lpd, gpd, lrda, grda, other
VOTES = [[1, 0, 0, 0, 0, 0],    # 1 vote                 consensus seizure
         [1, 1, 0, 0, 0, 0],    # 2                      seizure (a tie: the first column)
         [0, 3, 0, 0, 0, 0],    # 3                      lpd
         [0, 0, 2, 0, 0, 3],    # 5                      other
         [0, 0, 0, 6, 0, 0],    # 6                      lrda
         [0, 0, 0, 0, 5, 5],    # 10                     grda (a tie)
         [10, 0, 0, 0, 0, 9],   # 19                     seizure
         [0, 0, 0, 0, 0, 20]]   # 20                     other
PROBS = [[0.7, 0.1, 0.05, 0.05, 0.05, 0.05],   # predicted seizure
         [0.4, 0.4, 0.05, 0.05, 0.05, 0.05],   # seizure (a tie: the first)
         [0.1, 0.6, 0.1, 0.1, 0.05, 0.05],     # lpd
         [0.05, 0.05, 0.5, 0.1, 0.1, 0.2],     # gpd
         [0.0, 0.0, 0.0, 1.0, 0.0, 0.0],       # lrda (0 and 1: clipped by the metric; p = 1 in the last bin)
         [0.1, 0.1, 0.1, 0.1, 0.3, 0.3],       # grda (a tie)
         [0.25, 0.25, 0.1, 0.1, 0.1, 0.2],     # seizure
         [0.05, 0.05, 0.05, 0.05, 0.3, 0.5]]   # other
FOLDS = [0, 0, 0, 0, 1, 1, 1, 1]
PATIENTS = [7, 7, 8, 8, 9, 9, 10, 10]


def by_hand_kl(votes: list[int], probs: list[float]) -> float:
    """One row's KL, written out: y = votes / total; sum over y > 0 of y log(y / clip(p))."""
    total = sum(votes)
    return sum(v / total * math.log((v / total) / min(max(p, 1e-15), 1 - 1e-15)) for v, p in zip(votes, probs) if v)


def small_table(path: Path, **columns) -> Path:
    n = len(VOTES)
    frame = pd.DataFrame({"eeg_id": 100 + np.arange(n), "spectrogram_id": 200 + np.arange(n),
                          "label_id": 300 + np.arange(n), "patient_id": PATIENTS, "fold": FOLDS})
    frame[list(VOTE_COLUMNS)] = np.array(VOTES)
    for name, values in columns.items():
        if values is None:
            frame = frame.drop(columns=name)
        else:
            frame[name] = values
    frame.to_csv(path, index=False)
    return path


def write_submission(path: Path, label_ids, probs) -> Path:
    frame = pd.DataFrame(np.asarray(probs, dtype=np.float64), columns=list(VOTE_COLUMNS))
    frame.insert(0, "label_id", np.asarray(label_ids))
    frame.to_csv(path, index=False)
    return path


def write_oof(path: Path, label_ids, logits) -> Path:
    frame = pd.DataFrame(np.asarray(logits, dtype=np.float64), columns=list(LOGIT_COLUMNS))
    frame.insert(0, "label_id", np.asarray(label_ids))
    frame.to_csv(path, index=False)
    return path


@pytest.fixture()
def small(tmp_path) -> dict:
    table = small_table(tmp_path / "train.csv")
    sub = write_submission(tmp_path / "sub.csv", 300 + np.arange(8), PROBS)
    result = evaluate(table=table, sets=[("submission", "s", sub)], min_votes=10, bootstrap=0, progress=False)
    return {"table": table, "sub": sub, "result": result, "set": result["sets"]["s"]}


def test_kl_on_all_rows_and_many_vote_rows_is_the_metric(small):
    s = small["set"]
    kl = [by_hand_kl(v, p) for v, p in zip(VOTES, PROBS)]
    assert s["rows"] == 8 and s["kl"] == pytest.approx(np.mean(kl), rel=1e-12)
    solution = pd.read_csv(small["table"])
    submission = pd.read_csv(small["sub"]).assign(eeg_id=solution["eeg_id"])
    assert s["kl"] == score(solution, submission)  # the same function: the same float
    many = solution[solution[list(VOTE_COLUMNS)].sum(axis=1) >= 10]  # rows 5, 6, 7
    assert s["rows_min_votes"] == 3 == len(many)
    assert s["kl_min_votes"] == pytest.approx(score(many, submission.loc[many.index]), rel=1e-14)
    assert s["kl_min_votes"] == pytest.approx(np.mean(kl[5:]), rel=1e-12)
    assert s["kl_by_fold"] == {
        "0": {"rows": 4, "kl": pytest.approx(np.mean(kl[:4]), rel=1e-12), "rows_min_votes": 0, "kl_min_votes": None},
        "1": {"rows": 4, "kl": pytest.approx(np.mean(kl[4:]), rel=1e-12), "rows_min_votes": 3,
              "kl_min_votes": pytest.approx(np.mean(kl[5:]), rel=1e-12)}}
    # each class's share: the mean over rows of y_c log(y_c / p_c); they add up to the KL
    y = np.array(VOTES) / np.array(VOTES).sum(1, keepdims=True)
    p = np.clip(np.array(PROBS), 1e-15, 1 - 1e-15)
    shares = [np.mean([y[i, c] * math.log(y[i, c] / p[i, c]) if y[i, c] else 0.0 for i in range(8)]) for c in range(6)]
    assert list(s["class_kl"].values()) == pytest.approx(shares, rel=1e-12)
    assert sum(s["class_kl"].values()) == pytest.approx(s["kl"], abs=1e-12)


def test_vote_buckets_hand_computed(small):
    kl = [by_hand_kl(v, p) for v, p in zip(VOTES, PROBS)]
    assert small["result"]["vote_buckets"] == ["1", "2", "3-5", "6-9", "10-19", "20+"]
    # totals 1, 2, 3, 5, 6, 10, 19, 20
    expected = {"1": [0], "2": [1], "3-5": [2, 3], "6-9": [4], "10-19": [5, 6], "20+": [7]}
    assert small["set"]["vote_buckets"] == {b: {"rows": len(i), "kl": pytest.approx(np.mean([kl[k] for k in i]),
                                                                                   rel=1e-12)}
                                            for b, i in expected.items()}
    assert vote_bucket(np.array([1, 2, 3, 5, 6, 9, 10, 19, 20, 400])).tolist() == [0, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_calibration_bins_hand_computed(small):
    cal = small["set"]["calibration"]
    # seizure: p = .7 .4 .1 .05 0 .1 .25 .05 -> bins 7 4 1 0 0 1 2 0; vote fractions 1 .5 0 0 0 0 10/19 0
    seizure = cal["seizure"]
    assert seizure["count"] == [3, 2, 1, 0, 1, 0, 0, 1, 0, 0]
    assert seizure["mean_pred"] == pytest.approx([0.1 / 3, 0.1, 0.25, None, 0.4, None, None, 0.7, None, None])
    assert seizure["mean_frac"] == pytest.approx([0, 0, 10 / 19, None, 0.5, None, None, 1.0, None, None])
    ece = 3 / 8 * (0.1 / 3) + 2 / 8 * 0.1 + 1 / 8 * abs(0.25 - 10 / 19) + 1 / 8 * 0.1 + 1 / 8 * 0.3
    assert seizure["ece"] == pytest.approx(ece, rel=1e-12)
    # lrda: p = 1.0 lands in the last bin, with its row's vote fraction 1
    assert cal["lrda"]["count"] == [3, 4, 0, 0, 0, 0, 0, 0, 0, 1]
    assert cal["lrda"]["mean_pred"][9] == 1.0 and cal["lrda"]["mean_frac"][9] == 1.0
    assert small["result"]["calibration_bins"] == [k / 10 for k in range(11)]
    # the functions on arrays: the ECE is sum count / N |mean p - mean y|, per class
    counts, pred, frac, eces = calibration(np.array(VOTES) / np.array(VOTES).sum(1, keepdims=True), np.array(PROBS))
    assert counts.shape == (6, 10) and counts.sum(1).tolist() == [8] * 6
    assert eces == pytest.approx([np.nansum(counts[c] / 8 * np.abs(pred[c] - frac[c])) for c in range(6)], rel=1e-12)


def test_confusion_hand_computed(small):
    conf = small["set"]["confusion"]
    # consensus (rows) vs predicted (columns), submission order; ties go to the first column
    assert conf["counts"] == [[3, 0, 0, 0, 0, 0],   # seizure: rows 0, 1 (tie), 6 -> predicted seizure
                              [0, 1, 0, 0, 0, 0],   # lpd: row 2
                              [0, 0, 0, 0, 0, 0],   # gpd: no row
                              [0, 0, 0, 1, 0, 0],   # lrda: row 4
                              [0, 0, 0, 0, 1, 0],   # grda: row 5 (tie in votes and in probabilities)
                              [0, 0, 1, 0, 0, 1]]   # other: row 3 -> gpd, row 7 -> other
    assert conf["normalised"][5] == [0, 0, 0.5, 0, 0, 0.5] and conf["normalised"][0] == [1, 0, 0, 0, 0, 0]
    assert conf["normalised"][2] == [None] * 6  # a class without rows: no shares
    assert consensus(np.array([[0, 2, 2, 0, 0, 1]])).tolist() == [1]
    counts, shares = confusion(np.array([0, 0, 1]), np.array([1, 0, 1]), 2)
    assert counts.tolist() == [[1, 1], [0, 1]] and shares.tolist() == [[0.5, 0.5], [0.0, 1.0]]


def test_worst_rows_and_the_report_command(small):
    kl = [by_hand_kl(v, p) for v, p in zip(VOTES, PROBS)]
    worst = small["set"]["worst_rows"]
    assert len(worst) == 8 and [w["kl"] for w in worst] == pytest.approx(sorted(kl, reverse=True), rel=1e-12)
    for w in worst:  # each row's ids, votes and probabilities (rows 2 and 5 tie at log(5/3): either order)
        i = w["label_id"] - 300
        assert w["eeg_id"] == 100 + i and w["kl"] == pytest.approx(kl[i], rel=1e-12)
        assert list(w["votes"].values()) == VOTES[i] and list(w["probabilities"].values()) == PROBS[i]
    assert worst[0]["label_id"] == 306  # 10 seizure and 9 other votes, predicted .25 and .2
    ids = " ".join(str(w["eeg_id"]) for w in worst)
    assert small["set"]["report_command"] == (f"python -m hms_infer report --split train --data-dir DATA "
                                              f"--eeg-id {ids} --manifest MANIFEST --out worst_s")
    top = evaluate(table=small["table"], sets=[("submission", "a b", small["sub"])], worst=2, bootstrap=0,
                   progress=False)["sets"]["a b"]
    assert [w["label_id"] for w in top["worst_rows"]] == [306, 307]
    assert top["report_command"].endswith("--eeg-id 106 107 --manifest MANIFEST --out 'worst_a b'")


def naive_bootstrap(values: np.ndarray, weights: np.ndarray, groups: np.ndarray, resamples: int, seed: int
                    ) -> np.ndarray:
    """The bootstrap written as a loop: draw G groups with replacement (the same draws as `bootstrap_means`' one
    chunk), stack the rows of every drawn group, take the weighted mean of each column."""
    names = np.unique(groups)
    draws = np.random.default_rng(seed).integers(0, len(names), size=(resamples, len(names)))
    out = []
    for drawn in draws:
        rows = np.concatenate([np.flatnonzero(groups == names[g]) for g in drawn])
        out.append([np.sum(values[rows, c] * weights[rows, c]) / np.sum(weights[rows, c])
                    if weights[rows, c].sum() else np.nan for c in range(values.shape[1])])
    return np.array(out)


def test_bootstrap_is_the_plain_loop_and_reproducible():
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 12, 90)
    codes = np.unique(groups, return_inverse=True)[1]
    values = rng.gamma(1.0, 1.0, (90, 3))
    weights = np.c_[np.ones(90), rng.random(90) < 0.2, np.ones(90)]
    got = bootstrap_means(values, weights, codes, 12, 40, seed=5)
    assert np.allclose(got, naive_bootstrap(values, weights, groups, 40, 5), rtol=1e-12, atol=0, equal_nan=True)
    assert np.isnan(got[:, 1]).any() or (got[:, 1] > 0).all()
    assert np.array_equal(got, bootstrap_means(values, weights, codes, 12, 40, seed=5))
    assert not np.array_equal(got, bootstrap_means(values, weights, codes, 12, 40, seed=6))


def synthetic_sets(tmp_path: Path, n: int = 600, patients: int = 150, seed: int = 0) -> tuple[Path, dict]:
    """A table whose votes (1-25 per row) are drawn from softmax(z), and OOF logit CSVs: `good` (z + a little
    noise), `noise` (independent noise), `twin_a` / `twin_b` (z + as much independent noise each: equal quality)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 6))
    totals = rng.integers(1, 26, n)
    votes = np.stack([rng.multinomial(t, p) for t, p in zip(totals, softmax(z, 1))])[:, list(SUBMISSION_ORDER)]
    table = pd.DataFrame({"eeg_id": 10 + np.arange(n), "spectrogram_id": np.arange(n), "label_id": 1000 + np.arange(n),
                          "patient_id": rng.permutation(np.arange(n) % patients), "fold": np.arange(n) % 4})
    table[list(VOTE_COLUMNS)] = votes
    table.to_csv(tmp_path / "train.csv", index=False)
    logits = {"good": z + rng.normal(0, 0.3, z.shape), "noise": rng.normal(0, 1.5, z.shape),
              "twin_a": z + rng.normal(0, 1.0, z.shape), "twin_b": z + rng.normal(0, 1.0, z.shape)}
    files = {k: write_oof(tmp_path / f"{k}.csv", table["label_id"], v) for k, v in logits.items()}
    return tmp_path / "train.csv", files


def test_paired_bootstrap_tells_informative_from_noise_and_not_equals(tmp_path):
    table, files = synthetic_sets(tmp_path)
    specs = [("oof", k, v) for k, v in files.items()]
    result = evaluate(table=table, sets=specs, bootstrap=500, bootstrap_seed=1, progress=False)
    assert result["groups"] == "patient_id" and result["groups_count"] == 150
    pairs = {(p["a"], p["b"]): p for p in result["pairs"]}
    assert len(pairs) == 6 and ("good", "noise") in pairs and ("noise", "good") not in pairs  # the order given
    good = pairs[("good", "noise")]
    assert good["kl_diff"] == result["sets"]["good"]["kl"] - result["sets"]["noise"]["kl"]
    assert good["ci"][0] < good["ci"][1] < 0 and good["p_a_better"] > 0.99
    assert good["ci_min_votes"][1] < 0 and good["p_a_better_min_votes"] > 0.99
    twins = pairs[("twin_a", "twin_b")]
    assert twins["ci"][0] < 0 < twins["ci"][1] and 0.02 < twins["p_a_better"] < 0.98
    # every KL inside its own interval; the same seed gives the same intervals, another seed others
    for s in result["sets"].values():
        assert s["kl_ci"][0] < s["kl"] < s["kl_ci"][1]
    again = evaluate(table=table, sets=specs, bootstrap=500, bootstrap_seed=1, progress=False)
    other = evaluate(table=table, sets=specs, bootstrap=500, bootstrap_seed=2, progress=False)
    assert again["pairs"] == result["pairs"] and again["sets"]["good"]["kl_ci"] == result["sets"]["good"]["kl_ci"]
    assert other["sets"]["good"]["kl_ci"] != result["sets"]["good"]["kl_ci"]
    frame = summary_frame(result)
    assert list(frame.index) == list(files) and frame.loc["good", "kl"] == result["sets"]["good"]["kl"]


def test_blend_of_logit_and_probability_sets(tmp_path):
    """`--blend prob`: the mean of the sets' probabilities; `logit`: softmax of the mean of logits, a probability
    set entering as its log."""
    table, files = synthetic_sets(tmp_path, n=80, patients=20)
    logits = pd.read_csv(files["good"])[list(LOGIT_COLUMNS)].to_numpy()
    probs = np.random.default_rng(1).dirichlet(np.ones(6), 80)
    sub = write_submission(tmp_path / "p.csv", 1000 + np.arange(80), probs)
    votes = pd.read_csv(table)[list(VOTE_COLUMNS)].to_numpy(float)
    y = votes / votes.sum(1, keepdims=True)
    order = list(SUBMISSION_ORDER)
    log_probs = np.log(probs)[:, np.argsort(order)]  # CLASSES order, as the logits
    for how, expected in (("prob", (softmax(logits, 1)[:, order] + probs) / 2),
                          ("logit", softmax((logits + log_probs) / 2, 1)[:, order])):
        result = evaluate(table=table, sets=[("oof", "good", files["good"]), ("submission", "p", sub)], blend=how,
                          bootstrap=0, progress=False)
        assert list(result["sets"]) == ["good", "p", "blend"] and result["sets"]["blend"]["layout"] == "blend"
        by_hand = np.mean(np.sum(np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / expected), 0), 1))
        assert result["sets"]["blend"]["kl"] == pytest.approx(by_hand, rel=1e-12)


class Numbers(HTMLParser):
    """Every element with `data-key`: (key, data-value); every <img>'s id and src; every href and src."""

    def __init__(self, text: str):
        super().__init__()
        self.numbers: list[tuple[str, str]] = []
        self.images: dict[str, str] = {}
        self.links: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-key" in a:
            self.numbers.append((a["data-key"], a["data-value"]))
        if tag == "img":
            self.images[a["id"]] = a["src"]
        self.links += [a[k] for k in ("href", "src") if k in a]


def lookup(result: dict, key: str):
    """The JSON value at a page's `data-key`; None inside a null (an interval that is null as a whole)."""
    node = result
    for part in key.split("/"):
        if node is None:
            return None
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> dict:
    """The demo's synthetic competition (its train.csv has votes and patient_id) with folds, and a prediction set
    in each layout the project writes: OOF logits in the training layout, an OOF CSV, a submission-format CSV, the
    pseudo-labels' Parquet twin (written by `pseudo_labels.label_frame`, float32 as the command writes it). The
    CLI evaluates them with their blend once."""
    root = tmp_path_factory.mktemp("evaluate")
    data = write_competition(root / "data", n_test=1, n_train_eegs=24, seed=3)
    table = pd.read_csv(data / "train.csv")
    table["fold"] = pd.factorize(table["eeg_id"])[0] % 3
    table.to_csv(root / "train_folds.csv", index=False)
    rng = np.random.default_rng(0)
    votes = table[list(VOTE_COLUMNS)].to_numpy(float)
    informed = np.log(votes / votes.sum(1, keepdims=True) + 0.05)[:, np.argsort(SUBMISSION_ORDER)]  # CLASSES order
    write_oof(root / "cfg_1.csv", table["label_id"], informed + rng.normal(0, 0.3, informed.shape))
    for label_id, v in zip(table["label_id"], rng.normal(0, 1.0, informed.shape)):
        (root / "preds" / str(label_id)).mkdir(parents=True)
        np.save(root / "preds" / str(label_id) / "pred_0.npy", v.astype(np.float32))
    write_submission(root / "sub.csv", table["label_id"], rng.dirichlet(np.ones(6), len(table)))
    label_frame(table, softmax(informed, 1).astype(np.float32)).to_parquet(root / "pseudo.parquet", index=False)
    args = ["evaluate", "--table", str(root / "train_folds.csv"), "--preds", f"noise={root / 'preds'}", "--seed", "0",
            "--oof", f"cfg_1={root / 'cfg_1.csv'}", "--submission", f"random={root / 'sub.csv'}",
            "--pseudo", f"pseudo={root / 'pseudo.parquet'}", "--blend", "--min-votes", "5", "--bootstrap", "300",
            "--out", str(root / "out")]
    return {"root": root, "table": table, "args": args}


def test_demo_data_end_to_end_through_the_cli(demo_run, capsys):
    root = demo_run["root"]
    assert main(demo_run["args"]) == 0
    out = capsys.readouterr().out
    result = json.loads((root / "out" / "evaluation.json").read_text())
    n = len(demo_run["table"])
    assert result["rows_common"] == n and result["rows_total"] == {"noise": n, "cfg_1": n, "random": n, "pseudo": n}
    assert list(result["sets"]) == ["noise", "cfg_1", "random", "pseudo", "blend"] and len(result["pairs"]) == 10
    keys = {"rows", "kl", "kl_ci", "rows_min_votes", "kl_min_votes", "kl_by_fold", "class_kl", "vote_buckets",
            "calibration", "confusion", "worst_rows", "report_command"}
    assert all(keys <= set(s) for s in result["sets"].values())
    assert {"a", "b", "kl_diff", "ci", "p_a_better"} <= set(result["pairs"][0])
    layouts = {k: s["layout"] for k, s in result["sets"].items()}
    assert layouts == {"noise": "preds", "cfg_1": "oof", "random": "submission", "pseudo": "pseudo", "blend": "blend"}
    # the informed sets beat the noise on these groups of patients
    assert result["groups"] == "patient_id" and result["groups_count"] == 24
    cfg_1 = next(p for p in result["pairs"] if (p["a"], p["b"]) == ("noise", "cfg_1"))
    assert cfg_1["kl_diff"] > 0 and cfg_1["ci"][0] > 0 and cfg_1["p_a_better"] < 0.01
    # the pseudo-labels set is scored as pseudo-labels reports it: Kaggle's score of its probabilities
    frame = pd.read_parquet(root / "pseudo.parquet")
    assert result["sets"]["pseudo"]["kl"] == pytest.approx(score(demo_run["table"], frame), rel=1e-12)
    # stdout: the text table (also summary.txt) and the one-line summary
    assert "cfg_1" in out and f"hms_infer evaluate: {n} rows x 5 sets, 300 resamples" in out
    assert (root / "out" / "summary.txt").read_text().splitlines()[1].split()[:2] == ["rows", "kl"]


def test_every_number_on_the_page_is_the_json_and_every_figure_is_there(demo_run, capsys):
    root = demo_run["root"]
    if not (root / "out" / "index.html").is_file():
        assert main(demo_run["args"]) == 0
    result = json.loads((root / "out" / "evaluation.json").read_text())
    page = Numbers((root / "out" / "index.html").read_text())
    assert len(page.numbers) > 3000
    for key, value in page.numbers:
        expected = lookup(result, key)
        if value == "":
            assert expected is None, key
        else:
            assert float(value) == expected, key  # the full-precision value, exactly
    shown = {key for key, _ in page.numbers}
    for name, s in result["sets"].items():  # the headline numbers are all on the page
        assert {f"sets/{name}/kl", f"sets/{name}/kl_ci/0", f"sets/{name}/kl_min_votes", f"sets/{name}/class_kl/gpd",
                f"sets/{name}/vote_buckets/20+/rows", f"sets/{name}/calibration/other/ece",
                f"sets/{name}/confusion/counts/5/5", f"sets/{name}/worst_rows/0/kl"} <= shown
    assert {f"pairs/{i}/p_a_better" for i in range(10)} <= shown
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread
    assert set(page.images) == {"figure-intervals", "figure-vote_buckets", "figure-reliability", "figure-confusion"}
    for src in page.images.values():
        assert src.startswith("data:image/png;base64,")
        image = imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        assert image.shape[0] > 300 and image.shape[1] > 800 and image[..., :3].std() > 0.05  # drawn, not blank
    assert all(link.startswith("data:") for link in page.links)  # self-contained


def test_without_matplotlib_the_json_text_and_a_page_that_says_how(tmp_path):
    """matplotlib hidden (as if not installed): the numbers, the text table and the page's tables are written, and
    the page says how to get the figures."""
    table, files = synthetic_sets(tmp_path, n=60, patients=15)
    code = (f"import sys; sys.modules['matplotlib'] = None\n"
            f"import hms_infer\n"
            f"r = hms_infer.evaluate(table={str(table)!r}, sets=[('oof', 'good', {str(files['good'])!r})], "
            f"out={str(tmp_path / 'out')!r}, bootstrap=50, progress=False)\n"
            f"print(r['sets']['good']['kl'], 'matplotlib.figure' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    kl, imported = run.stdout.split()
    assert imported == "False" and "the page has no figures: they need matplotlib" in run.stderr
    result = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert float(kl) == result["sets"]["good"]["kl"]
    page = (tmp_path / "out" / "index.html").read_text()
    assert "pip install 'hms_infer[plot]'" in page and "<img" not in page and 'data-key="sets/good/kl"' in page
    assert "good" in (tmp_path / "out" / "summary.txt").read_text()


def _error(args: list[str], capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    table = small_table(tmp_path / "train.csv")
    sub = write_submission(tmp_path / "sub.csv", 300 + np.arange(8), PROBS)
    base = ["evaluate", "--table", str(table), "--submission", f"s={sub}", "--out", str(tmp_path / "out")]

    def run(*args: str, table_path: Path = table) -> str:
        return _error(["evaluate", "--table", str(table_path), *args, "--out", str(tmp_path / "out")], capsys)

    unknown = write_submission(tmp_path / "unknown.csv", [300, 301, 999], PROBS[:3])
    err = run("--submission", f"s={unknown}")
    assert str(unknown) in err and "label_id 999" in err and "not rows of" in err
    off = write_submission(tmp_path / "off.csv", 300 + np.arange(8), np.array(PROBS) * 0.8)
    assert f"{off} row 0 (line 2, label_id 300): probabilities must sum to 1" in run("--submission", f"s={off}")
    negative = write_submission(tmp_path / "neg.csv", [300, 301], [PROBS[0], [-0.1, 0.6, 0.1, 0.1, 0.2, 0.1]])
    assert f"{negative} row 1 (line 3, label_id 301): probabilities must be finite numbers in [0, 1]" in \
        run("--submission", f"s={negative}")
    twice = write_submission(tmp_path / "twice.csv", [300, 300], PROBS[:2])
    assert "label_id 300 appears more than once" in run("--submission", f"s={twice}")
    assert "no vote column(s) ['other_vote']" in run("--submission", f"s={sub}", table_path=small_table(
        tmp_path / "novotes.csv", other_vote=None))
    fractions = small_table(tmp_path / "fractions.csv", seizure_vote=[0.5] * 8)
    assert "needs vote counts" in run("--submission", f"s={sub}", table_path=fractions)
    unvoted = small_table(tmp_path / "unvoted.csv", **{c: [*[1] * 5, 0, 1, 1] for c in VOTE_COLUMNS})
    assert run("--submission", f"s={sub}", table_path=unvoted) == (
        f"hms_infer: error: {unvoted} row 5 (line 7, label_id 305): no votes (all six vote columns are zero); "
        f"evaluate judges every row against its votes")
    no_patient = small_table(tmp_path / "nopatient.csv", patient_id=None)
    assert "no patient_id column" in run("--submission", f"s={sub}", "--groups", "patient_id", table_path=no_patient)
    assert "needs --seed" in run("--preds", f"p={tmp_path}")
    assert "no <label_id>/pred_3.npy" in run("--preds", f"p={tmp_path}", "--seed", "3")
    assert "given twice" in run("--submission", f"s={sub}", "--submission", f"s={sub}")
    assert "named 'blend'" in run("--submission", f"blend={sub}", "--blend")
    assert "no prediction set" in run()
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    assert "broken.parquet: not a readable Parquet file" in run("--pseudo", f"q={tmp_path / 'broken.parquet'}")
    assert "missing.csv: file not found" in run("--oof", f"q={tmp_path / 'missing.csv'}")
    assert "--bootstrap must be an integer >= 0" in run("--submission", f"s={sub}", "--bootstrap", "-1")
    (tmp_path / "afile").write_text("")
    assert "is a file" in _error(base[:-1] + [str(tmp_path / "afile")], capsys)
    assert not any((tmp_path / "out").iterdir())  # nothing written, nothing half-written


def test_documented_fallbacks_are_logged(tmp_path, caplog):
    table = small_table(tmp_path / "train.csv", patient_id=None)
    # a set of 6 rows and one of 8, the second's rows summing to 0.995: common rows, renormalised
    six = write_submission(tmp_path / "six.csv", 300 + np.arange(6), PROBS[:6])
    scaled = write_submission(tmp_path / "scaled.csv", 300 + np.arange(8), np.array(PROBS) * 0.995)
    with caplog.at_level(logging.WARNING):
        result = evaluate(table=table, sets=[("submission", "six", six), ("submission", "scaled", scaled)],
                          bootstrap=20, progress=False)
    log = caplog.text
    assert "no patient_id column: the bootstrap resamples eeg_ids" in log and result["groups"] == "eeg_id"
    assert "8 of 8 rows do not sum to 1" in log and "renormalised" in log
    assert "every set is evaluated on the 6 rows they all cover" in log
    assert result["rows_common"] == 6 and result["rows_total"] == {"six": 6, "scaled": 8}
    assert result["sets"]["scaled"]["rows"] == 6 and result["sets"]["scaled"]["rows_total"] == 8
    # renormalised, the scaled set is the same prediction as the original on the common rows
    assert result["sets"]["scaled"]["kl"] == pytest.approx(result["sets"]["six"]["kl"], rel=1e-12)
    assert result["groups_count"] == 6  # eeg_ids
    none = evaluate(table=table, sets=[("submission", "six", six)], min_votes=50, bootstrap=20, progress=False)
    assert none["sets"]["six"]["kl_min_votes"] is None and none["sets"]["six"]["kl_min_votes_ci"] is None
    assert none["sets"]["six"]["rows_min_votes"] == 0
    # no intervals at all (--bootstrap 0): nulls in the JSON, '-' on the page
    bare = evaluate(table=table, sets=[("submission", "six", six)], min_votes=50, bootstrap=0, out=tmp_path / "o",
                    progress=False)
    assert bare["sets"]["six"]["kl_ci"] is None and "no intervals" in (tmp_path / "o" / "summary.txt").read_text()
    empty = [key for key, value in Numbers((tmp_path / "o" / "index.html").read_text()).numbers if value == ""]
    assert "sets/six/kl_ci/0" in empty and "sets/six/kl_min_votes" in empty
    assert all(lookup(bare, key) is None for key in empty)


def test_the_performance_target_100k_rows_8_sets_1000_resamples(tmp_path):
    """The issue's target: 100,000 rows x 8 sets x 1,000 resamples in under a minute (README: measured ~3 s)."""
    n = 100_000
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"eeg_id": np.arange(n), "spectrogram_id": np.arange(n), "label_id": np.arange(n),
                          "patient_id": rng.integers(0, 20_000, n)})
    table[list(VOTE_COLUMNS)] = rng.integers(0, 4, (n, 6)) + np.eye(6, dtype=int)[rng.integers(0, 6, n)]
    table.to_csv(tmp_path / "t.csv", index=False)
    specs = []
    for k in range(8):
        frame = pd.DataFrame(rng.normal(0, 1, (n, 6)).astype(np.float32), columns=list(LOGIT_COLUMNS))
        frame.insert(0, "label_id", np.arange(n))
        specs.append(("oof", f"s{k}", tmp_path / f"s{k}.csv"))
        frame.to_csv(specs[-1][2], index=False, float_format="%.5g")
    t0 = time.perf_counter()
    result = evaluate(table=tmp_path / "t.csv", sets=specs, bootstrap=1000, progress=False)
    seconds = time.perf_counter() - t0
    assert result["rows_common"] == n and len(result["pairs"]) == 28 and result["groups_count"] > 19_000
    assert seconds < 60, seconds
