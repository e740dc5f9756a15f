"""Rows without usable input: the per-row policy, the fallback distribution, and the report of such rows.

The policy of the main command, `predict()` and kernel.py (`--strict` turns it off: the first bad row is an error):
- one input unusable (`errors.UnusableInput`: its file missing, unreadable, without the needed columns or rows):
  the row is predicted from the other one, the unusable one an all-NaN window (SPEC §2's NaN rules): `degraded`;
- both unusable, or the models give no finite probabilities for the row: `fallback`, the manifest's `fallback`
  distribution (`mean`, the default: the mean of the run's predicted rows; uniform when there are none);
- no row predicted at all: nothing to submit, an error.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .constants import CLASSES
from .errors import HMSInputError
from .files import write_text_atomic

DEGRADED, FALLBACK = "degraded", "fallback"
Problem = tuple[str, str, str]  # (input: eeg | spectrogram | model, file, reason)


def status(problems: Sequence[Problem]) -> str | None:
    """None (a clean row), `degraded` (one input replaced by NaN) or `fallback`."""
    inputs = {p[0] for p in problems}
    if "model" in inputs or {"eeg", "spectrogram"} <= inputs:
        return FALLBACK
    return DEGRADED if problems else None


def fallback_distribution(spec: str | Mapping[str, float], probs: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(6,) in `CLASSES` order: the manifest's mapping, or the mean of the `predicted` rows of (N, 6) `probs`."""
    if spec != "mean":
        return np.array([spec[c] for c in CLASSES], dtype=np.float64)
    if not predicted.any():
        return np.full(len(CLASSES), 1 / len(CLASSES))
    return probs[predicted].mean(axis=0)


def apply_policy(probs: np.ndarray, problems: Mapping[int, Sequence[Problem]], spec: str | Mapping[str, float]
                 ) -> tuple[np.ndarray, dict[int, str]]:
    """Fill the fallback rows of (N, 6) `probs`; return them and each problem row's status."""
    statuses = {row: status(p) for row, p in problems.items() if p}
    falls = np.zeros(len(probs), dtype=bool)
    falls[[row for row, s in statuses.items() if s == FALLBACK]] = True
    probs = probs.copy()
    probs[falls] = fallback_distribution(spec, probs, ~falls)
    return probs, statuses


def finish_run(probs: np.ndarray, problems: Mapping[int, Sequence[Problem]], spec: str | Mapping[str, float],
               eeg_ids: Sequence[int], table: str) -> tuple[np.ndarray, list[dict]]:
    """The policy over a whole run: (N, 6) probabilities with the fallback rows filled, and one report entry per
    degraded / fallback row (`row` in the table, `eeg_id`, `status`, `problems`); an error if no row was predicted."""
    probs, statuses = apply_policy(probs, problems, spec)
    rows = [{"row": row, "eeg_id": int(eeg_ids[row]), "status": statuses[row],
             "problems": [{"input": i, "file": f, "reason": r} for i, f, r in problems[row]]}
            for row in sorted(statuses)]
    if len(probs) and sum(r["status"] == FALLBACK for r in rows) == len(probs):
        first = rows[0]["problems"][0]
        raise HMSInputError(f"no row of {table} could be predicted, nothing to submit ({len(probs)} rows; row 0: "
                            f"{first['file']}: {first['reason']})")
    return probs, rows


def status_counts(rows: Sequence[dict]) -> dict[str, int]:
    return {s: sum(r["status"] == s for r in rows) for s in (DEGRADED, FALLBACK)}


def announce(rows: Sequence[dict], n_rows: int, spec: str | Mapping[str, float]) -> str:
    """What the run prints about its degraded / fallback rows: a line and the table."""
    source = "the mean of the predicted rows" if spec == "mean" else "the manifest's fallback"
    return (f"hms_infer: {len(rows)} of {n_rows} rows without usable input (degraded: predicted from the other "
            f"input; fallback: {source}):\n{format_table(rows)}")


def format_table(rows: Sequence[dict]) -> str:
    lines = [f"{'row':>6}  {'eeg_id':>12}  {'status':<9} {'input':<12} file: reason"]
    for r in rows:
        for k, p in enumerate(r["problems"]):
            head = f"{r['row']:>6}  {r['eeg_id']:>12}  {r['status']:<9}" if k == 0 else " " * 31
            lines.append(f"{head} {p['input']:<12} {p['file']}: {p['reason']}")
    return "\n".join(lines)


def write_report(path: str | Path, rows: Sequence[dict], n_rows: int, budget: dict | None = None) -> None:
    """The rows as JSON, with the counts (and the time budget's section, `budget.BudgetTracker.report`)."""
    report = {"rows": n_rows, **status_counts(rows), "problem_rows": list(rows)}
    if budget is not None:
        report["budget"] = budget
    write_text_atomic(path, json.dumps(report, indent=2) + "\n")
