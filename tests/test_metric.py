"""Kaggle's KL-divergence metric (SPEC §6): hand-computed values, clipping, refusals, the `score` command."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hms_infer.cli import main
from hms_infer.constants import VOTE_COLUMNS
from hms_infer.errors import HMSInputError
from hms_infer.metric import kl_divergence, score, solution_probabilities, vote_probabilities

# VOTE_COLUMNS order: seizure, lpd, gpd, lrda, grda, other
SOLUTION = [[1, 0, 0, 0, 0, 1], [0, 0, 3, 1, 0, 0]]  # vote counts
SUBMISSION = [[0.5, 0.1, 0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.5, 0.1, 0.1, 0.1]]
# row 0: y = (.5, 0, 0, 0, 0, .5)  -> .5 log(.5/.5) + .5 log(.5/.1)
# row 1: y = (0, 0, .75, .25, 0, 0) -> .75 log(.75/.5) + .25 log(.25/.1)
EXPECTED = (0.5 * math.log(0.5 / 0.5) + 0.5 * math.log(0.5 / 0.1)
            + 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.1)) / 2


def frame(rows: list[list[float]], eeg_ids: list[int] | None = None) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(VOTE_COLUMNS))
    df.insert(0, "eeg_id", eeg_ids or [100 + i for i in range(len(rows))])
    return df


def test_hand_computed_score():
    assert score(frame(SOLUTION), frame(SUBMISSION)) == pytest.approx(EXPECTED, rel=1e-12)
    assert EXPECTED == pytest.approx(0.66895, abs=1e-5)


def test_solution_as_probabilities_or_votes_and_columns_by_name():
    probs = [[0.5, 0, 0, 0, 0, 0.5], [0, 0, 0.75, 0.25, 0, 0]]
    assert score(frame(probs), frame(SUBMISSION)) == pytest.approx(EXPECTED, rel=1e-12)
    shuffled = frame(SUBMISSION)[["other_vote", "eeg_id", "grda_vote", "seizure_vote", "lrda_vote", "gpd_vote",
                                  "lpd_vote"]]
    assert score(frame(SOLUTION), shuffled) == pytest.approx(EXPECTED, rel=1e-12)


def test_zero_vote_classes_count_zero():
    # y = (0, 0, 1, 0, 0, 0): only gpd counts, whatever the submission puts elsewhere (even 0)
    sub = [[0.0, 0.0, 0.4, 0.6, 0.0, 0.0]]
    assert score(frame([[0, 0, 7, 0, 0, 0]]), frame(sub)) == pytest.approx(math.log(1 / 0.4), rel=1e-12)


def test_submission_clipped_not_renormalised():
    # a 0 where y = 1 becomes 1e-15: log(1 / 1e-15) = 15 log 10 (the 1 beside it is clipped, nothing renormalised)
    zero = score(frame([[1, 0, 0, 0, 0, 0]]), frame([[0.0, 1.0, 0, 0, 0, 0]]))
    assert zero == pytest.approx(15 * math.log(10), rel=1e-12)
    # a 1 where y = 1 becomes 1 - 1e-15: a tiny positive term, not 0
    one = score(frame([[0, 1, 0, 0, 0, 0]]), frame([[0.0, 1.0, 0, 0, 0, 0]]))
    assert one == pytest.approx(math.log(1 / (1 - 1e-15)), rel=1e-9) and one > 0


def test_kl_divergence_on_arrays_averages_rows():
    y = [[1.0, 0.0], [0.5, 0.5]]
    p = [[0.25, 0.75], [0.5, 0.5]]
    assert kl_divergence(y, p) == pytest.approx((math.log(1 / 0.25) + 0.0) / 2, rel=1e-12)


@pytest.mark.parametrize("rows, match", [
    ([[0.5, 0.1, 0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.5, 0.1, 0.1, 0.0]], "submission rows must sum to one.*row 1"),
    ([[0.5, 0.1, 0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.5, 0.1, 0.2, 0.001]], "sum to one.*row 1"),
    ([[0.5, 0.1, 0.1, 0.1, 0.1, 0.1], [1.2, -0.2, 0.0, 0.0, 0.0, 0.0]], "between 0 and 1.*row 1"),
    ([[0.5, 0.1, 0.1, 0.1, 0.1, 0.1], ["abc", 0.1, 0.5, 0.1, 0.1, 0.2]], "must be numeric.*row 1"),
    ([[0.5, 0.1, 0.1, 0.1, 0.1, float("nan")], [0.1, 0.1, 0.5, 0.1, 0.1, 0.1]], "must be numeric.*row 0"),
])
def test_refuses_bad_submission(rows, match):
    with pytest.raises(HMSInputError, match=f"(?i){match}"):
        score(frame(SOLUTION), frame(rows))


def test_sum_tolerance_is_kaggles():
    ok = [[0.5, 0.1, 0.1, 0.1, 0.1, 0.1 + 1e-7], [0.1, 0.1, 0.5, 0.1, 0.1, 0.1]]
    assert score(frame(SOLUTION), frame(ok)) == pytest.approx(EXPECTED, rel=1e-5)


def _message(call) -> str:
    with pytest.raises(HMSInputError) as e:
        call()
    return str(e.value)


def test_refuses_bad_solution():
    assert _message(lambda: score(frame([[1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]]), frame(SUBMISSION))) == (
        "Target values must sum to one: solution row 1 (line 3, eeg_id 101) has no votes (all six vote columns are "
        "zero)")
    assert _message(lambda: score(frame([[1, -1, 0, 0, 0, 1], [0, 0, 3, 1, 0, 0]]), frame(SUBMISSION))) == (
        "Target values must be at least zero: solution row 0 (line 2, eeg_id 100) has [1.0, -1.0, 0.0, 0.0, 0.0, 1.0]")
    # a vote table's rows keep their table row numbers (a subset) and name their label_id
    table = frame([[1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]]).assign(label_id=[7, 8]).set_axis([4, 9])
    assert _message(lambda: solution_probabilities(table, "folds.csv")) == (
        "Target values must sum to one: folds.csv row 9 (line 11, label_id 8, eeg_id 101) has no votes (all six "
        "vote columns are zero)")
    targets, empty = vote_probabilities(table, "folds.csv")
    assert empty.tolist() == [False, True] and targets[0].tolist() == [0.5, 0, 0, 0, 0, 0.5]
    assert np.isnan(targets[1]).all()


def test_rows_must_match():
    assert _message(lambda: score(frame(SOLUTION, [100, 101]), frame(SUBMISSION, [100, 999]))) == (
        "row 1 (line 3): eeg_id differs (solution 101, submission 999); rows are matched by position")
    assert _message(lambda: score(frame(SOLUTION), frame(SUBMISSION[:1]))) == (
        "solution has 2 rows, submission 1: solution row 1 (line 3, eeg_id 101) has no row in submission; the "
        "submission needs one row per solution row, in its order")
    assert _message(lambda: score(frame(SOLUTION[:1]), frame(SUBMISSION, [100, 7000039]))) == (
        "solution has 1 rows, submission 2: submission row 1 (line 3, eeg_id 7000039) has no row in solution; the "
        "submission needs one row per solution row, in its order")
    assert _message(lambda: score(frame(SOLUTION, [100, 100]), frame(SUBMISSION[:1]))) == (
        "solution has 2 rows, submission 1, with the same eeg_ids repeated a different number of times; the "
        "submission needs one row per solution row, in its order")
    with pytest.raises(HMSInputError, match=r"submission: missing column\(s\) \['other_vote'\]"):
        score(frame(SOLUTION), frame(SUBMISSION).drop(columns="other_vote"))


def test_numpy_values_are_shown_plainly():
    """A cell's value as the file holds it, never numpy's repr (`np.float64(nan)`, `np.int64(7)`)."""
    nan = frame([[0.5, 0.1, 0.1, 0.1, 0.1, float("nan")], [0.1, 0.1, 0.5, 0.1, 0.1, 0.1]])
    assert _message(lambda: score(frame(SOLUTION), nan)) == (
        "All values must be numeric: submission row 0 (line 2, eeg_id 100) has other_vote nan")
    text = frame([[0.5, 0.1, 0.1, 0.1, 0.1, 0.1], ["abc", 0.1, 0.5, 0.1, 0.1, 0.2]])
    assert _message(lambda: score(frame(SOLUTION), text)) == (
        "All values must be numeric: submission row 1 (line 3, eeg_id 101) has seizure_vote 'abc'")
    off = frame([[0.5, 0.1, 0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.5, 0.1, 0.2, 0.001]])
    assert _message(lambda: score(frame(SOLUTION), off)) == (
        "Submission rows must sum to one: submission row 1 (line 3, eeg_id 101) sums to 1.001")


def write(df: pd.DataFrame, path: Path) -> str:
    df.to_csv(path, index=False)
    return str(path)


def test_cli_prints_score_last(tmp_path, capsys):
    solution = frame(SOLUTION).assign(expert_consensus=["Seizure", "GPD"])  # extra columns are ignored
    code = main(["score", "--solution", write(solution, tmp_path / "sol.csv"),
                 "--submission", write(frame(SUBMISSION), tmp_path / "sub.csv")])
    assert code == 0
    assert float(capsys.readouterr().out.split()[-1]) == pytest.approx(EXPECTED, abs=1e-6)


def test_cli_refusal_names_row(tmp_path, capsys):
    bad = frame([[0.5, 0.1, 0.1, 0.1, 0.1, 0.1], [0.9, 0.1, 0.1, 0.0, 0.0, 0.0]])
    code = main(["score", "--solution", write(frame(SOLUTION), tmp_path / "sol.csv"),
                 "--submission", write(bad, tmp_path / "sub.csv")])
    assert code == 2
    assert capsys.readouterr().err == (f"hms_infer: error: Submission rows must sum to one: {tmp_path / 'sub.csv'} "
                                       f"row 1 (line 3, eeg_id 101) sums to 1.1\n")


def test_cli_names_the_files_of_a_missing_row_and_of_a_row_without_votes(tmp_path, capsys):
    sol, sub = write(frame(SOLUTION), tmp_path / "sol.csv"), write(frame(SUBMISSION[:1]), tmp_path / "sub.csv")
    assert main(["score", "--solution", sol, "--submission", sub]) == 2
    assert capsys.readouterr().err == (f"hms_infer: error: {sol} has 2 rows, {sub} 1: {sol} row 1 (line 3, eeg_id "
                                       f"101) has no row in {sub}; the submission needs one row per solution row, in "
                                       f"its order\n")
    sol = write(frame([[1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]]), tmp_path / "sol.csv")
    assert main(["score", "--solution", sol, "--submission", write(frame(SUBMISSION), tmp_path / "sub.csv")]) == 2
    assert capsys.readouterr().err == (f"hms_infer: error: Target values must sum to one: {sol} row 1 (line 3, "
                                       f"eeg_id 101) has no votes (all six vote columns are zero)\n")


def test_kl_divergence_row_weights_and_the_unchanged_default():
    y = [[1.0, 0.0], [0.5, 0.5], [0.25, 0.75]]
    p = [[0.25, 0.75], [0.5, 0.5], [0.5, 0.5]]
    rows = [math.log(4), 0.0, 0.25 * math.log(0.5) + 0.75 * math.log(1.5)]
    assert kl_divergence(y, p, weights=[1, 3, 4]) == pytest.approx((rows[0] + 4 * rows[2]) / 8, rel=1e-12)
    weighted = kl_divergence(y, torch.tensor(p, dtype=torch.float64), weights=[1, 3, 4])
    assert weighted.item() == pytest.approx((rows[0] + 4 * rows[2]) / 8, rel=1e-12)
    # the default path: the same floats as the formula it always computed
    yy, pp = np.array(y), np.clip(np.array(p), 1e-15, 1 - 1e-15)
    ratio = np.divide(yy, pp, out=np.ones_like(yy), where=yy > 0)
    assert kl_divergence(y, p) == float((yy * np.log(ratio)).sum(1).mean())
    assert kl_divergence(y, p, weights=[2, 2, 2]) == pytest.approx(kl_divergence(y, p), rel=1e-15)


def test_cli_score_min_votes(tmp_path, capsys):
    # SOLUTION's rows have 2 and 4 votes; a third row 12: seizure 5, grda 3, other 4
    solution = frame(SOLUTION + [[5, 0, 0, 0, 3, 4]])
    submission = frame(SUBMISSION + [[0.4, 0.1, 0.1, 0.1, 0.1, 0.2]])
    row1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.1)
    row2 = 5 / 12 * math.log(5 / 12 / 0.4) + 3 / 12 * math.log(3 / 12 / 0.1) + 4 / 12 * math.log(4 / 12 / 0.2)
    args = ["score", "--solution", write(solution, tmp_path / "sol.csv"),
            "--submission", write(submission, tmp_path / "sub.csv")]
    assert main(args + ["--min-votes", "4"]) == 0
    first, last = capsys.readouterr().out.splitlines()
    assert first.startswith("score_min_votes ") and first.endswith("(2 of 3 rows have >= 4 votes)")
    assert float(first.split()[1]) == pytest.approx((row1 + row2) / 2, abs=1e-6)
    assert last.split()[0] == "score" and float(last.split()[1]) == pytest.approx(
        (EXPECTED * 2 + row2) / 3, abs=1e-6)  # the usual line, last as before
    assert main(args + ["--min-votes", "13"]) == 2
    assert f"no row of {args[2]} has at least 13 votes (the most is 12)" in capsys.readouterr().err
    fractions = frame([[0.5, 0, 0, 0, 0, 0.5], [0, 0, 0.75, 0.25, 0, 0], [1, 0, 0, 0, 0, 0]])
    assert main(["score", "--solution", write(fractions, tmp_path / "f.csv"), "--submission", args[4],
                 "--min-votes", "1"]) == 2
    assert capsys.readouterr().err == (f"hms_infer: error: counting votes needs vote counts (non-negative whole "
                                       f"numbers): {tmp_path / 'f.csv'} row 0 (line 2, eeg_id 100) has [0.5, 0.0, "
                                       f"0.0, 0.0, 0.0, 0.5]\n")
