"""`fit-weights`: blend weights and temperatures fitted on synthetic OOF logits, cross-validated; the `temperature`
member field through the manifest, `blend`, the Ensemble and `predict`.

The synthetic OOF: each row has true logits z (`CLASSES` order); its 10 expert votes are drawn from softmax(z). An
informative group predicts z plus a little noise, a noise group predicts independent noise, a sharp group 2 z.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy.special import softmax

from hms_infer.blendfit import cross_validate, fit
from hms_infer.cli import main
from hms_infer.constants import CLASSES, SUBMISSION_ORDER
from hms_infer.data import Competition
from hms_infer import predict
from hms_infer.blending import blend
from hms_infer.ensemble import Ensemble
from hms_infer.tasks.bundle import bundle_weights
from hms_infer.errors import HMSInputError
from hms_infer.tasks.fit_weights import fit_weights
from hms_infer.manifest import load_manifest, manifest_from_dict, save_manifest
from hms_infer.metric import kl_divergence
from hms_infer.training import LOGIT_COLUMNS
from hms_infer.synthetic import write_competition

from .conftest import TINY_ARCH

REPORT_KEYS = {"weights", "temperatures", "score_equal", "score_single", "score_fitted", "score_cv", "rows"}


def synthetic_oof(n: int, seed: int = 0, folds: int = 5) -> tuple[pd.DataFrame, np.ndarray, np.random.Generator]:
    """A training table (ids, fold, 10 votes per row drawn from softmax(z)) and the true (n, 6) logits z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 6))
    votes = np.stack([rng.multinomial(10, p) for p in softmax(z, axis=1)])
    table = pd.DataFrame({"eeg_id": 1000 + np.arange(n), "spectrogram_id": 7000 + np.arange(n),
                          "label_id": 5000 + np.arange(n), "fold": np.arange(n) % folds})
    for j, c in enumerate(CLASSES):
        table[f"{c}_vote"] = votes[:, j]
    return table, z, rng


def targets_of(table: pd.DataFrame) -> np.ndarray:
    """(n, 6) normalised votes in `VOTE_COLUMNS` order (what the metric compares with)."""
    votes = table[[f"{c}_vote" for c in CLASSES]].to_numpy(float)
    return (votes / votes.sum(axis=1, keepdims=True))[:, list(SUBMISSION_ORDER)]


def as_groups(table: pd.DataFrame, **logits: np.ndarray) -> dict[str, dict[int, np.ndarray]]:
    return {g: dict(zip(table["label_id"].tolist(), v)) for g, v in logits.items()}


def write_manifest(path: Path, members: list[tuple[str, str]], **extra) -> Path:
    """(name, checkpoint) members with the tiny arch; `extra` top-level fields."""
    path.write_text(yaml.safe_dump({"version": 1, "tta": ["none"], "blend": "prob", **extra, "members": [
        {"name": n, "checkpoint": c, "sha256": None, "weight": 1.0, "fold": None, "arch": copy.deepcopy(TINY_ARCH)}
        for n, c in members]}, sort_keys=False))
    return path


def write_oof_csv(path: Path, saved: dict[int, np.ndarray]) -> Path:
    pd.DataFrame([[k, *v] for k, v in saved.items()], columns=["label_id", *LOGIT_COLUMNS]).to_csv(path, index=False)
    return path


def write_preds_dir(root: Path, saved: dict[int, np.ndarray], seed: int) -> Path:
    for label_id, v in saved.items():
        (root / str(label_id)).mkdir(parents=True)
        np.save(root / str(label_id) / f"pred_{seed}.npy", v.astype(np.float32))
    return root


def test_informative_group_takes_the_weight(tmp_path):
    table, z, rng = synthetic_oof(2000)
    table.to_csv(tmp_path / "train.csv", index=False)
    groups = as_groups(table, good=z + rng.normal(0, 0.5, z.shape), noise=rng.normal(0, 1.5, z.shape))
    manifest = write_manifest(tmp_path / "m.yaml", [("good/fold0", "g0.pt"), ("good/fold1", "g1.pt"),
                                                     ("noise", "n.pt")])
    report = fit_weights(table=tmp_path / "train.csv", groups=groups,
                         manifest=manifest, out=tmp_path / "fitted.yaml", progress=False)
    assert report["rows"] == 2000 and REPORT_KEYS <= set(report)
    w = report["weights"]
    assert w["good"] >= 0.9 and w["noise"] >= 0 and sum(w.values()) == pytest.approx(1, abs=1e-12)
    assert report["score_fitted"] <= report["score_equal"]
    assert all(report["score_fitted"] <= s for s in report["score_single"].values())
    assert report["score_single"]["good"] < report["score_equal"] < report["score_single"]["noise"]
    # the in-sample score is the metric of the fitted blend, computed here by hand
    p = w["good"] * softmax(np.stack(list(groups["good"].values())), 1) + \
        w["noise"] * softmax(np.stack(list(groups["noise"].values())), 1)
    assert report["score_fitted"] == pytest.approx(kl_divergence(targets_of(table), p[:, list(SUBMISSION_ORDER)]),
                                                   rel=1e-12)
    # the group weight is split equally among its members, and nothing else in the manifest changes
    fitted = load_manifest(tmp_path / "fitted.yaml")
    assert [m.weight for m in fitted.members] == pytest.approx([w["good"] / 2, w["good"] / 2, w["noise"]], abs=1e-15)
    assert all(m.temperature == 1.0 for m in fitted.members)
    assert fitted.weights == pytest.approx([w["good"] / 2, w["good"] / 2, w["noise"]], abs=1e-12)


@pytest.mark.parametrize("how", ["prob", "logit"])
def test_two_groups_match_a_fine_grid_search(how):
    table, z, rng = synthetic_oof(1500, seed=1)
    a, b = z + rng.normal(0, 0.8, z.shape), z + rng.normal(0, 1.2, z.shape)
    y = targets_of(table)
    order = list(SUBMISSION_ORDER)
    grid = np.arange(0, 1 + 1e-9, 1e-4)
    if how == "prob":
        pa, pb = softmax(a, 1), softmax(b, 1)
        kls = [kl_divergence(y, (w * pa + (1 - w) * pb)[:, order]) for w in grid]
    else:
        kls = [kl_divergence(y, softmax(w * a + (1 - w) * b, 1)[:, order]) for w in grid]
    best = grid[int(np.argmin(kls))]
    assert 0.05 < best < 0.95  # an interior optimum, so the test says something
    got = fit(torch.from_numpy(np.stack([a, b]))[:, :, None], y, how)
    assert got.weights[0] == pytest.approx(best, abs=1e-3)
    assert got.score <= min(kls) + 1e-12


@pytest.mark.parametrize("how", ["prob", "logit"])
def test_temperature_recovers_a_doubled_logit_scale(tmp_path, how):
    table, z, rng = synthetic_oof(1200, seed=2, folds=3)
    table.to_csv(tmp_path / "train.csv", index=False)
    groups = as_groups(table, sharp=2 * z, noise=rng.normal(0, 1.5, z.shape))
    manifest = write_manifest(tmp_path / "m.yaml", [("sharp", "s.pt"), ("noise", "n.pt")])
    report = fit_weights(table=tmp_path / "train.csv", groups=groups,
                         manifest=manifest, out=tmp_path / "fitted.yaml", blend=how,
                         temperature=True, progress=False)
    assert report["temperatures"]["sharp"] == pytest.approx(2.0, rel=0.05)
    assert report["weights"]["sharp"] >= 0.9
    plain = fit_weights(table=tmp_path / "train.csv", groups=groups,
                        manifest=manifest, out=tmp_path / "plain.yaml", blend=how,
                        progress=False)
    assert report["score_fitted"] < plain["score_fitted"] - 0.01  # dividing by 2 is worth a lot
    fitted = load_manifest(tmp_path / "fitted.yaml")
    assert fitted.blend == how
    assert [m.temperature for m in fitted.members] == pytest.approx(list(report["temperatures"].values()), rel=1e-15)


def test_cv_score_is_the_kl_of_the_concatenated_held_out_blends(tmp_path):
    """Six pure-noise groups on 120 rows: the in-sample fit flatters itself, the cross-validated score does not."""
    table, z, rng = synthetic_oof(120, seed=3)
    logits = {f"g{k}": z * 0.3 + rng.normal(0, 1.0, z.shape) for k in range(6)}
    y = targets_of(table)
    stacked = torch.from_numpy(np.stack(list(logits.values())))[:, :, None]
    folds = np.repeat([0, 1, 2, 3], [20, 25, 30, 45])  # unequal folds: a mean of fold scores would differ
    score_cv, fits, held_out = cross_validate(stacked, y, folds)
    # recomputed by hand from each fold's weights
    p = np.zeros((120, 6))
    for f, part in fits.items():
        rows = folds == f
        p[rows] = sum(w * softmax(v[rows], 1) for w, v in zip(part.weights, logits.values()))[:, list(SUBMISSION_ORDER)]
        assert part.score == pytest.approx(kl_divergence(y[rows], p[rows]), rel=1e-12)
    assert held_out == pytest.approx(p, abs=1e-12)
    assert score_cv == pytest.approx(kl_divergence(y, p), rel=1e-12)
    assert score_cv != pytest.approx(np.mean([f.score for f in fits.values()]), rel=1e-9)  # not a mean of folds
    assert score_cv > fit(stacked, y).score  # honest: worse than in-sample


def test_blend_temperatures_divide_logits_and_default_is_bitwise_unchanged():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 2, 6) * 3
    w, t = [0.2, 0.5, 0.3], [0.5, 1.0, 2.5]
    for how in ("prob", "logit"):
        assert torch.equal(blend(logits, w, how, [1.0, 1.0, 1.0]), blend(logits, w, how))
        scaled = logits.double() / torch.tensor(t, dtype=torch.float64).view(-1, 1, 1, 1)
        assert torch.allclose(blend(logits, w, how, t), blend(scaled, w, how), rtol=0, atol=1e-15)
    # by hand: prob = sum_m w_m mean_v softmax(l / T_m)
    by_hand = sum(wm * softmax(logits[m].double().numpy() / t[m], -1).mean(1) for m, wm in enumerate(w))
    assert np.allclose(blend(logits, w, "prob", t).numpy(), by_hand, rtol=0, atol=1e-15)


def test_temperature_round_trips_through_the_manifest(tmp_path):
    d = yaml.safe_load(write_manifest(tmp_path / "m.yaml", [("a", "a.pt"), ("b", "b.pt")]).read_text())
    d["members"][0]["temperature"] = 1.75
    m = manifest_from_dict(d)
    assert [x.temperature for x in m.members] == [1.75, 1.0]
    assert "temperature" not in m.to_dict()["members"][1]  # the default is not written: old manifests unchanged
    save_manifest(m, tmp_path / "again.yaml")
    assert [x.temperature for x in load_manifest(tmp_path / "again.yaml").members] == [1.75, 1.0]
    save_manifest(bundle_weights(m, None, tmp_path), tmp_path / "bundled.yaml")  # the Kaggle bundle keeps it
    assert [x.temperature for x in load_manifest(tmp_path / "bundled.yaml").members] == [1.75, 1.0]


def test_refit_without_temperature_keeps_the_manifest_temperatures_in_place(tmp_path):
    """Without --temperature each group blends with its members' temperature, which FITTED.yaml keeps as it was."""
    table, z, rng = synthetic_oof(600, seed=5, folds=3)
    table.to_csv(tmp_path / "train.csv", index=False)
    groups = as_groups(table, sharp=2 * z, soft=0.5 * z + rng.normal(0, 0.5, z.shape))
    d = yaml.safe_load(write_manifest(tmp_path / "m.yaml", [("sharp", "s.pt"), ("soft", "n.pt")]).read_text())
    d["members"][0] = {"temperature": 2.0, **d["members"][0]}  # first field: its place must not move
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    report = fit_weights(table=tmp_path / "train.csv", groups=groups,
                         manifest=tmp_path / "m.yaml", out=tmp_path / "f.yaml",
                         progress=False)
    assert report["temperatures"] == {"sharp": 2.0, "soft": 1.0}
    y = targets_of(table)
    sharp_alone = kl_divergence(y, softmax(z, 1)[:, list(SUBMISSION_ORDER)])  # 2 z / 2
    assert report["score_single"]["sharp"] == pytest.approx(sharp_alone, rel=1e-12)
    after = yaml.safe_load((tmp_path / "f.yaml").read_text())
    assert list(after["members"][0]) == list(d["members"][0]) and after["members"][0]["temperature"] == 2.0
    assert "temperature" not in after["members"][1]
    with pytest.raises(HMSInputError, match="group sharp .* different temperatures"):
        d["members"].append({**d["members"][1], "name": "sharp/2", "temperature": 3.0})
        (tmp_path / "m2.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
        fit_weights(table=tmp_path / "train.csv", groups=groups,
                    manifest=tmp_path / "m2.yaml", out=tmp_path / "f2.yaml",
                    progress=False)


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan"), "hot", True, None])
def test_bad_temperature_in_the_manifest_is_an_error(tmp_path, value):
    d = yaml.safe_load(write_manifest(tmp_path / "m.yaml", [("a", "a.pt")]).read_text())
    d["members"][0]["temperature"] = value
    with pytest.raises(HMSInputError, match=r"member 0 \(a\): temperature must be a positive finite number"):
        manifest_from_dict(d, "m.yaml")


@pytest.fixture(scope="module")
def fitted_case(tiny_weights, tmp_path_factory) -> dict:
    """Two tiny checkpoints (head scaled so that logits spread) as groups `a` (one member) and `b` (one member);
    OOF: `a` sharp (z / 2) as a CSV, `b` noise in the training layout; the CLI fits weights and temperatures once
    (`code`, `stdout`). A 2-row test folder for `predict` (the tiny models take seconds per row on 2 CPU cores)."""
    root = tmp_path_factory.mktemp("fit")
    for f in (0, 1):
        sd = torch.load(tiny_weights / f"test_efficientnet_{f}_0.pt", weights_only=True)
        sd["head_all.weight"], sd["head_all.bias"] = sd["head_all.weight"] * 20, sd["head_all.bias"] * 20
        torch.save(sd, root / f"tiny_{f}.pt")
    manifest = write_manifest(root / "m.yaml", [("a/fold0", "tiny_0.pt"), ("b", "tiny_1.pt")],
                              fallback={"other": 1.0})
    table, z, rng = synthetic_oof(400, seed=4)
    table.to_csv(root / "train.csv", index=False)
    write_oof_csv(root / "a.csv", dict(zip(table["label_id"], 0.5 * z)))
    write_preds_dir(root / "preds_b", dict(zip(table["label_id"], rng.normal(0, 1.5, z.shape))), seed=7)
    args = ["fit-weights", "--table", str(root / "train.csv"), "--oof", f"a={root / 'a.csv'}",
            "--preds", f"b={root / 'preds_b'}", "--seed", "7", "--manifest", str(manifest),
            "-o", str(root / "FITTED.yaml"), "--temperature", "--report", str(root / "report.json")]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(args)
    return {"root": root, "manifest": manifest, "args": args, "table": table, "code": code,
            "stdout": stdout.getvalue(), "data": write_competition(root / "data", n_test=2, n_train_eegs=1)}


def test_cli_end_to_end_with_both_layouts(fitted_case):
    root = fitted_case["root"]
    assert fitted_case["code"] == 0
    out = fitted_case["stdout"]
    report = json.loads((root / "report.json").read_text())
    assert REPORT_KEYS <= set(report) and report["rows"] == 400
    assert list(report["weights"]) == ["a", "b"] and report["weights"]["a"] >= 0.9
    assert report["temperatures"]["a"] == pytest.approx(0.5, rel=0.05)  # the OOF of `a` was z / 2
    assert set(report["folds"]) == {"0", "1", "2", "3", "4"} and sum(v["rows"] for v in report["folds"].values()) == 400
    assert report["score_cv"] >= report["score_fitted"] and report["score_fitted"] < report["score_equal"]
    assert "KL fitted, cross-validated" in out and "-> " + str(root / "FITTED.yaml") in out and "rows/s" in out
    group_rows = [line for line in out.splitlines() if line.startswith(("a ", "b "))]
    assert len(group_rows) == 2 and "-" not in "".join(group_rows)  # no negative weight, temperature or score
    # FITTED.yaml: the input manifest with weights and temperatures set; all else, and the field order, unchanged
    before = yaml.safe_load(fitted_case["manifest"].read_text())
    after = yaml.safe_load((root / "FITTED.yaml").read_text())
    assert list(after) == list(before) and after["fallback"] == before["fallback"] == {"other": 1.0}
    for m0, m1, g in zip(before["members"], after["members"], ["a", "b"]):
        assert list(m1) == ["name", "checkpoint", "sha256", "weight", "temperature", "fold", "arch"]
        assert {k: v for k, v in m1.items() if k not in ("weight", "temperature")} == \
            {k: v for k, v in m0.items() if k != "weight"}
        assert m1["weight"] == report["weights"][g] and m1["temperature"] == report["temperatures"][g]
    loaded = load_manifest(root / "FITTED.yaml")
    assert loaded.fallback["other"] == 1.0 and loaded.views == ("none",)


def test_fitted_manifest_changes_predict_exactly_as_its_weights_say(fitted_case):
    root, data = fitted_case["root"], fitted_case["data"]
    assert fitted_case["code"] == 0
    fitted = load_manifest(root / "FITTED.yaml")
    frame = predict(data, out=root / "sub.csv", manifest=root / "FITTED.yaml", device="cpu",
                    num_workers=0, batch_size=1, progress=False)
    ens = Ensemble.from_manifest(fitted_case["manifest"], device="cpu")  # raw member logits: no weights
    logits = torch.cat([x for _, x, _ in ens.batch_logits(
        Competition(data, "test"), batch_size=1, num_workers=0, progress=False)], 1)
    w = np.array(fitted.weights)
    by_hand = sum(w[m] * softmax(logits[m, :, 0].double().numpy() / fitted.members[m].temperature, -1)
                  for m in range(2))[:, list(SUBMISSION_ORDER)]
    got = frame.iloc[:, 1:].to_numpy(float)
    assert np.allclose(got, by_hand, rtol=0, atol=1e-9)
    equal = sum(0.5 * softmax(logits[m, :, 0].double().numpy(), -1) for m in range(2))[:, list(SUBMISSION_ORDER)]
    assert np.abs(got - equal).max() > 1e-3  # the fit changed the blend


def _error(args: list[str], capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_clear_errors(fitted_case, capsys, tmp_path):
    base = fitted_case["args"]
    table = fitted_case["table"]

    # a group matching no member
    bad = [x.replace("b=", "c=") for x in base]
    assert "group 'c' matches no member" in _error(bad, capsys)
    # a manifest member in no group
    three = write_manifest(tmp_path / "three.yaml", [("a/fold0", "x.pt"), ("b", "y.pt"), ("extra", "z.pt")])
    assert "['extra'] of" in _error([str(three) if x == str(fitted_case["manifest"]) else x for x in base], capsys)
    # OOF label_ids that are not rows of the table (mismatched label_ids)
    shifted = write_oof_csv(tmp_path / "shifted.csv",
                            dict(zip(table["label_id"] + 100000, np.zeros((len(table), 6)))))
    assert "not rows of" in _error([f"a={shifted}" if x.startswith("a=") else x for x in base], capsys)
    # groups with no row in common (missing rows)
    half = write_oof_csv(tmp_path / "half.csv", dict(zip(table["label_id"][:200], np.zeros((200, 6)))))
    other = write_oof_csv(tmp_path / "other.csv", dict(zip(table["label_id"][200:], np.zeros((200, 6)))))
    err = _error(["fit-weights", "--table", base[2], "--oof", f"a={half}", "--oof", f"b={other}",
                  "--manifest", str(fitted_case["manifest"]), "-o", str(tmp_path / "f.yaml")], capsys)
    assert "that every group predicted" in err and "a 200, b 200" in err
    # the wrong seed: a group without OOF logits
    assert "no <label_id>/pred_8.npy" in _error([("8" if x == "7" else x) for x in base], capsys)
    # no group at all; --preds without --seed; a spec without '='
    assert "no group" in _error(["fit-weights", "--table", base[2], "--manifest", str(fitted_case["manifest"]),
                                 "-o", str(tmp_path / "f.yaml")], capsys)
    no_seed = [x for i, x in enumerate(base) if x != "--seed" and base[i - 1] != "--seed"]
    assert "needs --seed" in _error(no_seed, capsys)
    with pytest.raises(SystemExit) as e:
        main([x if not x.startswith("a=") else "a" for x in base])
    assert e.value.code == 2 and "expected NAME=PATH" in capsys.readouterr().err
    # a table without folds, and one whose common rows are all in one fold
    table.drop(columns="fold").to_csv(tmp_path / "nofold.csv", index=False)
    assert "no 'fold' column" in _error([str(tmp_path / "nofold.csv") if x == base[2] else x for x in base], capsys)
    table.assign(fold=3).to_csv(tmp_path / "onefold.csv", index=False)
    assert "at least 2 folds" in _error([str(tmp_path / "onefold.csv") if x == base[2] else x for x in base], capsys)
    # a row without votes: fit-weights fits against the votes, so an error naming the file, the row and its ids
    unvoted = table.copy()
    unvoted.loc[5, [f"{c}_vote" for c in CLASSES]] = 0
    unvoted.to_csv(tmp_path / "unvoted.csv", index=False)
    assert _error([str(tmp_path / "unvoted.csv") if x == base[2] else x for x in base], capsys) == (
        f"hms_infer: error: Target values must sum to one: {tmp_path / 'unvoted.csv'} row 5 (line 7, label_id "
        f"{table.label_id[5]}, eeg_id {table.eeg_id[5]}) has no votes (all six vote columns are zero)")
    # a bad temperature in the manifest
    d = yaml.safe_load(fitted_case["manifest"].read_text())
    d["members"][1]["temperature"] = -2
    (tmp_path / "badt.yaml").write_text(yaml.safe_dump(d))
    err = _error([str(tmp_path / "badt.yaml") if x == str(fitted_case["manifest"]) else x for x in base], capsys)
    assert "member 1 (b): temperature must be a positive finite number, got -2" in err


PLAIN_REPORT_KEYS = {"rows", "blend", "temperature_fitted", "weights", "temperatures", "score_equal", "score_single",
                     "score_fitted", "score_cv", "folds", "groups", "manifest", "out", "seconds"}


def vote_oof(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A training table whose rows have 1-20 votes drawn from softmax(z); group `many` predicts z well on the rows
    with >= 10 votes and is noise on the others, group `few` the reverse. Returns the table, (n,) total votes,
    (n, 6) targets (`VOTE_COLUMNS` order) and the groups' logits."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 6))
    totals = rng.integers(1, 21, n)
    votes = np.stack([rng.multinomial(t, p) for t, p in zip(totals, softmax(z, axis=1))])
    table = pd.DataFrame({"eeg_id": 1000 + np.arange(n), "spectrogram_id": 7000 + np.arange(n),
                          "label_id": 5000 + np.arange(n), "fold": np.arange(n) % 4})
    for j, c in enumerate(CLASSES):
        table[f"{c}_vote"] = votes[:, j]
    many = (totals >= 10)[:, None]
    good, noise = z + rng.normal(0, 0.4, z.shape), rng.normal(0, 1.5, z.shape)
    logits = {"many": np.where(many, good, noise), "few": np.where(many, rng.normal(0, 1.5, z.shape),
                                                                   z + rng.normal(0, 0.4, z.shape))}
    return table, totals, targets_of(table), logits


@pytest.mark.parametrize("how", ["prob", "logit"])
def test_vote_weighted_fit_minimises_the_vote_weighted_kl(how):
    """Against a fine grid search of the weighted objective mean(votes * KL) / mean(votes); the unweighted
    optimum is elsewhere, so the weights matter."""
    table, totals, y, logits = vote_oof(1500, seed=11)
    a, b = logits["many"], logits["few"]
    order = list(SUBMISSION_ORDER)
    grid = np.arange(0, 1 + 1e-9, 1e-4)
    blends = [(w * softmax(a, 1) + (1 - w) * softmax(b, 1) if how == "prob" else softmax(w * a + (1 - w) * b, 1))
              [:, order] for w in grid]
    weighted = [kl_divergence(y, p, weights=totals) for p in blends]
    plain = [kl_divergence(y, p) for p in blends]
    best = grid[int(np.argmin(weighted))]
    assert 0.05 < best < 0.95 and best > grid[int(np.argmin(plain))] + 0.05  # votes pull towards `many`
    got = fit(torch.from_numpy(np.stack([a, b]))[:, :, None], y, how, row_weights=totals)
    assert got.weights[0] == pytest.approx(best, abs=1e-3)
    p = (got.weights[0] * softmax(a, 1) + got.weights[1] * softmax(b, 1) if how == "prob"
         else softmax(got.weights[0] * a + got.weights[1] * b, 1))[:, order]
    assert got.score == pytest.approx(kl_divergence(y, p), rel=1e-12)  # Fit.score: the competition's KL


def test_fit_weights_on_the_rows_with_many_votes_and_vote_weighted(tmp_path, capsys):
    table, totals, y, logits = vote_oof(800, seed=12)
    table.to_csv(tmp_path / "train.csv", index=False)
    groups = as_groups(table, **logits)
    manifest = write_manifest(tmp_path / "m.yaml", [("many", "a.pt"), ("few", "b.pt")])
    order = list(SUBMISSION_ORDER)

    def blended(w: dict, rows) -> np.ndarray:
        return (w["many"] * softmax(logits["many"][rows], 1) + w["few"] * softmax(logits["few"][rows], 1))[:, order]

    plain = fit_weights(table=tmp_path / "train.csv", groups=groups,
                        manifest=manifest, out=tmp_path / "plain.yaml", progress=False)
    assert set(plain) == PLAIN_REPORT_KEYS  # without the new options: the report as before
    assert "Vote-aware" not in (tmp_path / "plain.yaml").read_text()

    many = fit_weights(table=tmp_path / "train.csv", groups=groups,
                       manifest=manifest, out=tmp_path / "many.yaml", progress=False,
                       min_votes=10)
    keep = totals >= 10
    assert many["rows"] == keep.sum() and many["rows_before_min_votes"] == 800 and many["min_votes"] == 10
    assert many["vote_weighted"] is False and "score_cv_vote_weighted" not in many
    assert sum(v["rows"] for v in many["folds"].values()) == keep.sum()
    assert many["weights"]["many"] > 0.9 > plain["weights"]["many"]
    assert many["score_fitted"] == pytest.approx(kl_divergence(y[keep], blended(many["weights"], keep)), rel=1e-12)
    held_out = np.zeros((800, 6))
    folds = table["fold"].to_numpy()
    for f, v in many["folds"].items():
        rows = keep & (folds == int(f))
        held_out[rows] = blended(v["weights"], rows)
    assert many["score_cv"] == pytest.approx(kl_divergence(y[keep], held_out[keep]), rel=1e-12)

    weighted = fit_weights(table=tmp_path / "train.csv", groups=groups,
                           manifest=manifest, out=tmp_path / "w.yaml", progress=False,
                           vote_weighted=True)
    assert weighted["rows"] == 800 and weighted["vote_weighted"] is True and weighted["min_votes"] is None
    assert weighted["weights"]["many"] > plain["weights"]["many"] + 0.05
    everything = np.ones(800, dtype=bool)
    assert weighted["score_fitted"] == pytest.approx(kl_divergence(y, blended(weighted["weights"], everything)),
                                                     rel=1e-12)  # unweighted, as the competition scores
    for f, v in weighted["folds"].items():
        rows = folds == int(f)
        held_out[rows] = blended(v["weights"], rows)
    assert weighted["score_cv"] == pytest.approx(kl_divergence(y, held_out), rel=1e-12)
    assert weighted["score_cv_vote_weighted"] == pytest.approx(kl_divergence(y, held_out, weights=totals), rel=1e-12)

    assert main(["fit-weights", "--table", str(tmp_path / "train.csv"), "--oof",
                 f"many={write_oof_csv(tmp_path / 'many.csv', groups['many'])}", "--oof",
                 f"few={write_oof_csv(tmp_path / 'few.csv', groups['few'])}", "--manifest", str(manifest),
                 "-o", str(tmp_path / "cli.yaml"), "--min-votes", "10", "--vote-weighted"]) == 0
    out = capsys.readouterr().out
    assert f"the {keep.sum()} of 800 rows with >= 10 votes; objective weighted by each row's total votes" in out
    assert "KL cross-validated, vote-weighted" in out
    assert f"# Vote-aware: the {keep.sum()} of 800 rows with >= 10 votes" in (tmp_path / "cli.yaml").read_text()
    assert main(["fit-weights", "--table", str(tmp_path / "train.csv"), "--oof", f"many={tmp_path / 'many.csv'}",
                 "--oof", f"few={tmp_path / 'few.csv'}", "--manifest", str(manifest), "-o",
                 str(tmp_path / "none.yaml"), "--min-votes", "21"]) == 2
    assert "has 21 or more votes" in capsys.readouterr().err
