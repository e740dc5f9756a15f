"""`score`: Kaggle's KL-divergence score of a submission against the experts' votes (`metric`)."""
from __future__ import annotations

from pathlib import Path

from ..data import read_csv
from ..metric import score as kl_score
from ..metric import score_min_votes


def score(*, solution: str | Path, submission: str | Path, min_votes: int | None = None) -> dict:
    """The competition score (`score`) of the `submission` CSV against the `solution` CSV's votes, rows matched by
    position with the same `eeg_id`, over its `rows`; with `min_votes`, also on the rows with at least that many
    total votes (`score_min_votes`, `rows_min_votes`). Errors name the file and the row."""
    solution_frame, submission_frame = read_csv(solution), read_csv(submission)
    names = (str(solution), str(submission))  # errors name the files
    result = {"score": kl_score(solution_frame, submission_frame, names=names), "rows": len(solution_frame)}
    if min_votes is not None:
        result["score_min_votes"], result["rows_min_votes"] = score_min_votes(solution_frame, submission_frame,
                                                                              min_votes, names=names)
    return result
