"""The competition metric: Kaggle's KL divergence of a submission from the expert votes (SPEC §6).

solution = votes / row sum; the submission is clipped per value to [1e-15, 1 - 1e-15] (not renormalised);
terms where the solution is 0 count 0; score = mean over rows of sum(y * log(y / p)).
Frames hold `eeg_id` plus the six `VOTE_COLUMNS`, matched by name; rows are matched by position.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .constants import VOTE_COLUMNS
from .errors import HMSInputError

EPSILON = 1e-15


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
    return f"{name} row {i} (eeg_id {frame['eeg_id'].iloc[i]})"


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
                            f"{frame[VOTE_COLUMNS[j]].iloc[i]!r}")
    return values


def check_rows_match(solution: pd.DataFrame, submission: pd.DataFrame) -> None:
    """Same number of rows and the same `eeg_id` at every position; else an error naming the first difference."""
    if len(solution) != len(submission):
        raise HMSInputError(f"the solution has {len(solution)} rows, the submission {len(submission)}")
    if len(solution) == 0:
        raise HMSInputError("the solution and the submission have no rows")
    a = pd.to_numeric(solution["eeg_id"], errors="coerce").to_numpy()
    b = pd.to_numeric(submission["eeg_id"], errors="coerce").to_numpy()
    differ = ~(a == b)
    if differ.any():
        i = _first(differ)
        raise HMSInputError(f"row {i}: eeg_id differs (solution {solution['eeg_id'].iloc[i]!r}, "
                            f"submission {submission['eeg_id'].iloc[i]!r}); rows are matched by position")


def solution_probabilities(solution: pd.DataFrame) -> np.ndarray:
    """Votes (or probabilities) -> (N, 6) row-normalised targets in `VOTE_COLUMNS` order."""
    votes = _values(solution, "solution")
    negative = (votes < 0).any(axis=1)
    if negative.any():
        i = _first(negative)
        raise HMSInputError(f"Target values must be at least zero: {_where('solution', solution, i)} has "
                            f"{votes[i].tolist()}")
    total = votes.sum(axis=1)
    if (total == 0).any():
        i = _first(total == 0)
        raise HMSInputError(f"Target values must sum to one: {_where('solution', solution, i)} has no votes")
    return votes / total[:, None]


def submission_probabilities(submission: pd.DataFrame) -> np.ndarray:
    """(N, 6) submitted probabilities in `VOTE_COLUMNS` order; in [0, 1], rows summing to 1 (Kaggle's tolerance)."""
    p = _values(submission, "submission")
    outside = ((p < 0) | (p > 1)).any(axis=1)
    if outside.any():
        i = _first(outside)
        raise HMSInputError(f"Submission values must be between 0 and 1 inclusive: "
                            f"{_where('submission', submission, i)} has {p[i].tolist()}")
    total = p.sum(axis=1)
    off = ~np.isclose(total, 1.0)  # Kaggle: np.allclose(sum, 1), i.e. rtol 1e-5, atol 1e-8
    if off.any():
        i = _first(off)
        raise HMSInputError(f"Submission rows must sum to one: {_where('submission', submission, i)} sums to "
                            f"{total[i]!r}")
    return p


def score(solution: pd.DataFrame, submission: pd.DataFrame, epsilon: float = EPSILON) -> float:
    """Kaggle's KL-divergence score of `submission` against `solution` (both: `eeg_id` + six vote columns)."""
    _require_columns(solution, "solution")
    _require_columns(submission, "submission")
    check_rows_match(solution, submission)
    return kl_divergence(solution_probabilities(solution), submission_probabilities(submission), epsilon)


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


def score_min_votes(solution: pd.DataFrame, submission: pd.DataFrame, min_votes: int,
                    epsilon: float = EPSILON) -> tuple[float, int]:
    """Kaggle's score on the rows whose solution has at least `min_votes` total votes, and how many they are."""
    _require_columns(solution, "solution")
    _require_columns(submission, "submission")
    check_rows_match(solution, submission)
    totals = vote_totals(solution)
    keep = totals >= min_votes
    if not keep.any():
        raise HMSInputError(f"no solution row has at least {min_votes} votes (the most is {int(totals.max())})")
    y, p = solution_probabilities(solution), submission_probabilities(submission)  # every row checked
    return kl_divergence(y[keep], p[keep], epsilon), int(keep.sum())
