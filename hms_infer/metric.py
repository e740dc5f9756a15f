"""The competition metric: Kaggle's KL divergence of a submission from the expert votes (SPEC §6).

solution = votes / row sum; the submission is clipped per value to [1e-15, 1 - 1e-15] (not renormalised);
terms where the solution is 0 count 0; score = mean over rows of sum(y * log(y / p)).
Frames hold `eeg_id` plus the six `VOTE_COLUMNS`, matched by name; rows are matched by position. Errors name the
frame (`name`: its file where it came from one) and the row (`messages.table_row`: `row N (line L)`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .constants import VOTE_COLUMNS
from .errors import HMSInputError
from .messages import row_number, shown, table_row

EPSILON = 1e-15
NAMES = ("solution", "submission")  # how errors name the two frames of `score`


def kl_terms(y: np.ndarray, p: np.ndarray, epsilon: float = EPSILON) -> np.ndarray:
    """(N, K) targets y, (N, K) predictions p -> (N, K) terms y * log(y / p): p clipped to [epsilon, 1 - epsilon],
    0 where y == 0. A row's KL is its sum; `kl_divergence` is the mean of those sums."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), epsilon, 1 - epsilon)
    ratio = np.divide(y, p, out=np.ones_like(y), where=y > 0)  # terms with y == 0: 0 * log(1) = 0
    return y * np.log(ratio)


def kl_divergence(y: np.ndarray, p: np.ndarray | torch.Tensor, epsilon: float = EPSILON,
                  weights: np.ndarray | None = None) -> float | torch.Tensor:
    """(N, K) target probabilities y, (N, K) predicted probabilities p -> mean over rows of sum(y * log(y / p)).

    p is clipped to [epsilon, 1 - epsilon]; terms with y == 0 count 0. No validation: see `score`. A torch `p`
    gives a 0-d float64 tensor differentiable in p: `fit` minimises this very function. `weights` (N,), non-negative:
    the weighted mean sum(w * kl) / sum(w) of the rows' KL instead (e.g. each row's total votes).
    """
    y = np.asarray(y, dtype=np.float64)
    if isinstance(p, torch.Tensor):
        y = torch.from_numpy(y).to(p.device)
        ratio = torch.where(y > 0, y / p.double().clip(epsilon, 1 - epsilon), 1.0)
        rows = (y * ratio.log()).sum(1)
        if weights is None:
            return rows.mean()
        w = torch.as_tensor(np.asarray(weights, dtype=np.float64), device=p.device)
        return (w * rows).sum() / w.sum()
    rows = kl_terms(y, p, epsilon).sum(1)
    if weights is None:
        return float(rows.mean())
    w = np.asarray(weights, dtype=np.float64)
    return float((w * rows).sum() / w.sum())


def _where(name: str, frame: pd.DataFrame, i: int) -> str:
    """`<name> row N (line L, label_id ..., eeg_id ...)` of position i (label_id where the frame has one)."""
    ids = [f"{c} {shown(frame[c].iloc[i])}" for c in ("label_id", "eeg_id") if c in frame.columns]
    return table_row(name, row_number(frame, i), *ids)


def _first(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0])


def _require_columns(frame: pd.DataFrame, name: str) -> None:
    missing = [c for c in ("eeg_id", *VOTE_COLUMNS) if c not in frame.columns]
    if missing:
        raise HMSInputError(f"{name}: missing column(s) {missing}; found {list(frame.columns)}")


def _values(frame: pd.DataFrame, name: str) -> np.ndarray:
    """The six vote columns of a checked frame -> (N, 6) float64; refuses missing columns and non-numbers."""
    _require_columns(frame, name)
    values = frame[list(VOTE_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise HMSInputError(f"All values must be numeric: {_where(name, frame, i)} has {VOTE_COLUMNS[j]} "
                            f"{shown(frame[VOTE_COLUMNS[j]].iloc[i])}")
    return values


def check_rows_match(solution: pd.DataFrame, submission: pd.DataFrame, names: tuple[str, str] = NAMES) -> None:
    """Same number of rows and the same `eeg_id` at every position; else an error naming both frames (`names`),
    the first eeg_id one has and the other lacks, or the first position where they differ."""
    a = pd.to_numeric(solution["eeg_id"], errors="coerce").to_numpy()
    b = pd.to_numeric(submission["eeg_id"], errors="coerce").to_numpy()
    if len(solution) != len(submission):
        counts = f"{names[0]} has {len(solution)} rows, {names[1]} {len(submission)}"
        for frame, ids, other, (mine, theirs) in ((solution, a, b, names), (submission, b, a, names[::-1])):
            lacking = ~np.isin(ids, other)
            if lacking.any():
                i = _first(lacking)
                more = f" (and {int(lacking.sum()) - 1} more rows)" if lacking.sum() > 1 else ""
                raise HMSInputError(f"{counts}: {_where(mine, frame, i)} has no row in {theirs}{more}; the "
                                    f"submission needs one row per solution row, in its order")
        raise HMSInputError(f"{counts}, with the same eeg_ids repeated a different number of times; the submission "
                            f"needs one row per solution row, in its order")
    if len(solution) == 0:
        raise HMSInputError(f"{names[0]} and {names[1]} have no rows")
    differ = ~(a == b)
    if differ.any():
        i = _first(differ)
        raise HMSInputError(f"{table_row('', row_number(solution, i)).strip()}: eeg_id differs ({names[0]} "
                            f"{shown(solution['eeg_id'].iloc[i])}, {names[1]} {shown(submission['eeg_id'].iloc[i])}); "
                            f"rows are matched by position")


def vote_probabilities(solution: pd.DataFrame, name: str = "solution") -> tuple[np.ndarray, np.ndarray]:
    """Votes (or probabilities) -> (N, 6) row-normalised targets in `VOTE_COLUMNS` order, NaN in the rows without
    votes (all six zero), and the (N,) mask of those rows. Negative or non-numeric values are errors."""
    votes = _values(solution, name)
    negative = (votes < 0).any(axis=1)
    if negative.any():
        i = _first(negative)
        raise HMSInputError(f"Target values must be at least zero: {_where(name, solution, i)} has "
                            f"{votes[i].tolist()}")
    total = votes.sum(axis=1)
    empty = total == 0
    with np.errstate(invalid="ignore"):
        return votes / total[:, None], empty


def no_votes(name: str, frame: pd.DataFrame, empty: np.ndarray) -> str:
    """A line on the rows of `frame` without votes ((N,) mask `empty`, some True): how many, and the first."""
    return (f"{name}: {int(empty.sum())} of {len(frame)} rows without votes (all six vote columns zero), the first "
            f"{_where('', frame, _first(empty)).lstrip()}")


def solution_probabilities(solution: pd.DataFrame, name: str = "solution") -> np.ndarray:
    """`vote_probabilities` where every row has votes: a row without is an error naming `name` and the row."""
    targets, empty = vote_probabilities(solution, name)
    if empty.any():
        raise HMSInputError(f"Target values must sum to one: {_where(name, solution, _first(empty))} has no votes "
                            f"(all six vote columns are zero)")
    return targets


def submission_probabilities(submission: pd.DataFrame, name: str = "submission") -> np.ndarray:
    """(N, 6) submitted probabilities in `VOTE_COLUMNS` order; in [0, 1], rows summing to 1 (Kaggle's tolerance)."""
    p = _values(submission, name)
    outside = ((p < 0) | (p > 1)).any(axis=1)
    if outside.any():
        i = _first(outside)
        raise HMSInputError(f"Submission values must be between 0 and 1 inclusive: "
                            f"{_where(name, submission, i)} has {p[i].tolist()}")
    total = p.sum(axis=1)
    off = ~np.isclose(total, 1.0)  # Kaggle: np.allclose(sum, 1), i.e. rtol 1e-5, atol 1e-8
    if off.any():
        i = _first(off)
        raise HMSInputError(f"Submission rows must sum to one: {_where(name, submission, i)} sums to "
                            f"{float(total[i])!r}")
    return p


def score(solution: pd.DataFrame, submission: pd.DataFrame, epsilon: float = EPSILON,
          names: tuple[str, str] = NAMES) -> float:
    """Kaggle's KL-divergence score of `submission` against `solution` (both: `eeg_id` + six vote columns); errors
    name the frames by `names` (their files, say)."""
    _require_columns(solution, names[0])
    _require_columns(submission, names[1])
    check_rows_match(solution, submission, names)
    return kl_divergence(solution_probabilities(solution, names[0]), submission_probabilities(submission, names[1]),
                         epsilon)


def vote_totals(solution: pd.DataFrame, name: str = "solution") -> np.ndarray:
    """(N,) each row's total expert votes; the six vote columns must hold counts (non-negative whole numbers).
    Errors name the frame `name` and the row."""
    votes = _values(solution, name)
    bad = ((votes < 0) | (votes % 1 != 0)).any(axis=1)
    if bad.any():
        i = _first(bad)
        raise HMSInputError(f"counting votes needs vote counts (non-negative whole numbers): "
                            f"{_where(name, solution, i)} has {votes[i].tolist()}")
    return votes.sum(axis=1)


def score_min_votes(solution: pd.DataFrame, submission: pd.DataFrame, min_votes: int, epsilon: float = EPSILON,
                    names: tuple[str, str] = NAMES) -> tuple[float, int]:
    """Kaggle's score on the rows whose solution has at least `min_votes` total votes, and how many they are."""
    _require_columns(solution, names[0])
    _require_columns(submission, names[1])
    check_rows_match(solution, submission, names)
    totals = vote_totals(solution, names[0])
    keep = totals >= min_votes
    if not keep.any():
        raise HMSInputError(f"no row of {names[0]} has at least {min_votes} votes (the most is {int(totals.max())})")
    y = solution_probabilities(solution, names[0])  # every row checked
    p = submission_probabilities(submission, names[1])
    return kl_divergence(y[keep], p[keep], epsilon), int(keep.sum())
