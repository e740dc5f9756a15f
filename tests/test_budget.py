"""The time budget: the levels, the projection and the drops on a fake clock, the reduced ensemble's numbers
against independently loaded ensembles, and one end-to-end CLI run with --time-budget."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from hms_infer.budget import BudgetTracker, Level, choose_level, levels, parse_budget
from hms_infer.cli import main
from hms_infer.constants import SUBMISSION_HEADER
from hms_infer.montage import VIEWS
from hms_infer.ensemble import Ensemble
from hms_infer.errors import HMSInputError
from hms_infer.manifest import manifest_from_dict
from hms_infer.synthetic import write_competition

from .conftest import tiny_manifest

ALL = ("none", "lr", "fb", "lrfb")


def test_levels_drop_lrfb_fb_lr_then_members_from_the_end():
    assert levels(VIEWS, 3) == [
        Level(ALL, (0, 1, 2)), Level(("none", "lr", "fb"), (0, 1, 2)), Level(("none", "lr"), (0, 1, 2)),
        Level(("none",), (0, 1, 2)), Level(("none",), (0, 1)), Level(("none",), (0,))]
    assert levels(("lr", "fb"), 2) == [Level(("lr", "fb"), (0, 1)), Level(("lr",), (0, 1)), Level(("lr",), (0,))]
    assert levels(("lrfb",), 1) == [Level(("lrfb",), (0,))]  # never no view, never no member


def test_choose_level_takes_the_first_that_fits():
    ladder = levels(VIEWS, 2)  # relative costs with equal members: 8, 6, 4, 2, 1
    # 10 s elapsed, 100 rows left at 1 s/row: 110, 85, 60, 35, 22.5
    assert choose_level(ladder, 0, 10, 100, 1.0, 60, [1, 1]) == (2, 60.0)
    assert choose_level(ladder, 0, 10, 100, 1.0, 30, [1, 1]) == (4, 22.5)
    assert choose_level(ladder, 0, 10, 100, 1.0, 20, [1, 1]) == (4, 22.5)  # none fits: the smallest
    assert choose_level(ladder, 3, 10, 100, 1.0, 60, [1, 1]) == (4, 60.0)  # rate at level 3: 110, then 60
    assert choose_level(ladder, 0, 10, 100, 1.0, 80, [3, 1]) == (2, 60.0)  # 16, 12, 8: 85 > 80, 60 fits
    assert choose_level(levels(VIEWS, 2), 3, 10, 100, 1.0, 50, [3, 1]) == (4, 10 + 100 * 3 / 4)


@pytest.mark.parametrize("value, seconds", [(None, None), ("", None), ("3600", 3600.0), (0.5, 0.5)])
def test_parse_budget(value, seconds):
    assert parse_budget(value) == seconds


@pytest.mark.parametrize("value", ["0", "-5", "soon", "inf", "nan"])
def test_parse_budget_rejects(value):
    with pytest.raises(HMSInputError, match=f"--time-budget must be a positive number of seconds, got '{value}'"):
        parse_budget(value)


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def cost(members: int, views: int) -> float:
    """Seconds per row of the fake runs: a shared part per member plus one per view (so a view saves less than
    the linear estimate assumes, and the run has to measure again after a drop)."""
    return members * (1 + views)


# The scenario of both fake-clock tests: 10 rows, one per batch, a 10 s warm-up in the first batch, budget 65 s.
# Level 0 (2 members x 4 views) costs 10 s/row: after 3 rows 40 s elapsed, 7 left -> projected 110 s; estimates
# 92.5 (3 views), 75 (2 views), 57.5 (1 view) -> level 3 (views none, both members). There 4 s/row: after 6 rows
# 52 s, 4 left -> 68 s > 65; the next level (1 member) is estimated 52 + 4 x 2 = 60 -> level 4, at 2 s/row: 60 s.
EXPECTED_DROPS = [
    {"after_rows": 3, "projected_total_s": 110.0, "estimated_total_s": 57.5, "level": 3, "views": ["none"],
     "members": ["tiny0", "tiny1"], "dropped_views": ["lrfb", "fb", "lr"], "dropped_members": []},
    {"after_rows": 6, "projected_total_s": 68.0, "estimated_total_s": 60.0, "level": 4, "views": ["none"],
     "members": ["tiny0"], "dropped_views": [], "dropped_members": ["tiny1"]},
]
EXPECTED_LEVELS = [
    {"views": list(ALL), "members": ["tiny0", "tiny1"], "rows": 3, "first_row": 0},
    {"views": ["none"], "members": ["tiny0", "tiny1"], "rows": 3, "first_row": 3},
    {"views": ["none"], "members": ["tiny0"], "rows": 4, "first_row": 6},
]


def test_tracker_projects_from_steady_batches_and_drops_views_then_members():
    clock = FakeClock()
    tracker = BudgetTracker(65.0, 10, ALL, ["tiny0", "tiny1"], [1.0, 1.0], clock=clock)
    seen = []
    for row in range(10):
        level = tracker.ladder[tracker.level]
        seen.append((level.views, level.members))
        clock.t += cost(len(level.members), len(level.views)) + (10 if row == 0 else 0)
        tracker.batch_done(1, row)
    assert seen == [(ALL, (0, 1))] * 3 + [(("none",), (0, 1))] * 3 + [(("none",), (0,))] * 4
    report = tracker.report()
    assert report["drops"] == EXPECTED_DROPS
    assert report["levels"] == EXPECTED_LEVELS
    assert report["projections"] == [
        {"after_rows": 3, "elapsed_s": 40.0, "s_per_row": 10.0, "projected_total_s": 110.0, "level": 0},
        {"after_rows": 6, "elapsed_s": 52.0, "s_per_row": 4.0, "projected_total_s": 68.0, "level": 3}]
    assert report["elapsed_s"] == 60.0 and report["within_budget"] is True


def test_a_slow_first_batch_alone_drops_nothing():
    clock = FakeClock()
    tracker = BudgetTracker(100.0, 20, ALL, ["a", "b"], [1.0, 1.0], spent_s=30.0, clock=clock)
    clock.t += 60  # warm-up: 90 s used after one row, 19 rows left
    assert tracker.batch_done(1, 0) is False
    clock.t += 0.1
    assert tracker.batch_done(1, 1) is False  # one steady batch is not yet a projection
    clock.t += 0.1
    assert tracker.batch_done(1, 2) is False  # 90.2 + 17 x 0.1 = 91.9 s <= 100 s
    assert tracker.report()["projections"][0]["projected_total_s"] == pytest.approx(91.9)
    assert tracker.report()["drops"] == [] and tracker.level == 0


@pytest.fixture(scope="module")
def budget_case(tiny_weights, tmp_path_factory):
    """6 test rows; the tiny members with views none and lrfb (one forward of 2 members x 2 views per row)."""
    comp_dir = write_competition(tmp_path_factory.mktemp("budget") / "data", n_test=6, n_train_eegs=1, seed=3)
    path = tiny_weights / "budget_manifest.yaml"
    path.write_text(yaml.safe_dump(tiny_manifest(tiny_weights, tta=("none", "lrfb"))))
    return comp_dir, path


def test_subset_reuses_the_loaded_models_and_renormalises_the_weights(budget_case, tiny_weights):
    manifest = tiny_manifest(tiny_weights)
    manifest["members"][0]["weight"], manifest["members"][1]["weight"] = 3.0, 1.0
    ens = Ensemble.from_manifest(manifest_from_dict(manifest), tiny_weights, device="cpu")
    sub = ens.subset(("none", "lr"), (1,))
    assert [m.name for m in sub.members] == ["tiny1"] and sub.members[0].model is ens.members[1].model
    assert sub.views == ("none", "lr") and sub.plan.views == ("none", "lr") and len(sub._forwards) == 1
    assert [m.name for m in ens.members] == ["tiny0", "tiny1"] and ens.views == ALL  # left as it was
    logits = torch.randn(1, 3, 2, 6)
    np.testing.assert_allclose(sub.blend(logits), logits[0].double().softmax(-1).mean(1).numpy(), atol=1e-12)


def test_cli_time_budget_end_to_end(budget_case, tiny_weights, tmp_path, capsys):
    """Real clock: loading the models alone takes longer than 0.2 s, so the first projection (after row 3: one
    warm-up and two steady batches) is over budget and no level fits: rows 3-5 run on the smallest level, and
    equal what an ensemble of that one member and view, loaded on its own, predicts."""
    comp_dir, manifest = budget_case
    out = tmp_path / "submission.csv"
    assert main(["--test-dir", str(comp_dir), "--out", str(out), "--manifest", str(manifest), "--device", "cpu",
                 "--batch-size", "1", "--num-workers", "0", "--time-budget", "0.2"]) == 0
    cap = capsys.readouterr()
    sub = pd.read_csv(out)
    assert list(sub.columns) == list(SUBMISSION_HEADER) and len(sub) == 6
    assert sub["eeg_id"].tolist() == pd.read_csv(comp_dir / "test.csv")["eeg_id"].tolist()
    p = sub.iloc[:, 1:].to_numpy()
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all() and np.abs(p.sum(1) - 1).max() < 1e-9

    report = json.loads(out.with_suffix(".issues.json").read_text())
    assert report["rows"] == 6 and report["problem_rows"] == [] and report["fallback"] == 0
    budget = report["budget"]
    assert budget["budget_s"] == 0.2 and budget["within_budget"] is False
    (projection,) = budget["projections"]
    assert projection["after_rows"] == 3 and projection["level"] == 0
    assert projection["projected_total_s"] == pytest.approx(projection["elapsed_s"] + 3 * projection["s_per_row"],
                                                            abs=2e-3)
    (drop,) = budget["drops"]
    assert drop["after_rows"] == 3 and drop["level"] == 2 and drop["projected_total_s"] > 0.2
    assert drop["dropped_views"] == ["lrfb"] and drop["dropped_members"] == ["tiny1"]
    assert budget["levels"] == [
        {"views": ["none", "lrfb"], "members": ["tiny0", "tiny1"], "rows": 3, "first_row": 0},
        {"views": ["none"], "members": ["tiny0"], "rows": 3, "first_row": 3}]
    lines = cap.out.strip().splitlines()
    assert "time budget 0 s" in lines[-2] and "from row 3 (3 rows) views none, members tiny0" in lines[-2]
    assert lines[-1].startswith("hms_infer: 6 rows (0 degraded, 0 fallback)")

    one = Ensemble.from_manifest(manifest_from_dict(tiny_manifest(tiny_weights, tta=("none",), folds=(0,))),
                                 tiny_weights, device="cpu")
    expected = one.predict(comp_dir, batch_size=1, num_workers=0, progress=False)
    np.testing.assert_allclose(p[3:], expected.iloc[3:, 1:].to_numpy(), rtol=0, atol=1e-6)


def test_cli_rejects_a_bad_time_budget(budget_case, tmp_path, capsys):
    comp_dir, manifest = budget_case
    assert main(["--test-dir", str(comp_dir), "--out", str(tmp_path / "s.csv"), "--manifest", str(manifest),
                 "--time-budget", "1h"]) == 2
    assert capsys.readouterr().err.strip() == ("hms_infer: error: --time-budget must be a positive number of "
                                               "seconds, got '1h'")
    assert not (tmp_path / "s.csv").exists()
