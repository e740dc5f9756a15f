"""`score`: Kaggle's KL-divergence score of a submission against the experts' votes (`metric`)."""
from __future__ import annotations

from pathlib import Path

from ..data import read_csv
from ..metric import score as kl_score


def score(*, solution: str | Path, submission: str | Path) -> float:
    """The competition score of the `submission` CSV against the `solution` CSV's votes (rows matched by
    position, with the same `eeg_id`)."""
    return kl_score(read_csv(solution), read_csv(submission))
