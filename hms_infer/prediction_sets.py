"""Named prediction sets in every layout the project reads or writes, matched to the rows of a training table.

Layouts:
- `preds`: the training code's saved OOF logits `DIR/<label_id>/pred_<seed>.npy` (`parity.read_preds_dir`);
- `oof`: a CSV of `label_id` + `logit_<class>` (`training.read_oof`);
- `submission`: a submission-format CSV keyed by `label_id`: `label_id` + the six `*_vote` probability columns;
- `pseudo`: the Parquet twin of the pseudo labels (`label_id`, `eeg_id`, `fold`, the six `*_vote` probabilities).
Probabilities must be finite and in [0, 1]; a row whose sum is off 1 by more than `SUM_TOLERANCE` (float32
rounding, a CSV's printed digits) is renormalised and the rows are counted in a log line; by more than
`SUM_LIMIT` it is an error naming the file, the row and its label_id.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from scipy.special import softmax

from .blending import blend_probs
from .constants import SUBMISSION_ORDER, VOTE_COLUMNS
from .data import read_csv
from .errors import HMSInputError
from .messages import row_number, shown, table_row
from .metric import EPSILON
from .training import integer_column, read_groups, shared_rows, unique_label_ids

log = logging.getLogger(__name__)
LOGIT_LAYOUTS = ("preds", "oof")
LAYOUTS = (*LOGIT_LAYOUTS, "submission", "pseudo")
SUM_TOLERANCE = 1e-6  # |row sum - 1| above this: the row is renormalised (logged)
SUM_LIMIT = 1e-2  # |row sum - 1| above this: an error


@dataclass(frozen=True)
class PredictionSet:
    """One named set: (N,) label_ids and (N, 6) values, logits in `CLASSES` order (`LOGIT_LAYOUTS`) or
    probabilities in `VOTE_COLUMNS` order."""

    name: str
    layout: str
    source: str
    label_ids: np.ndarray
    values: np.ndarray

    @property
    def is_logits(self) -> bool:
        return self.layout in LOGIT_LAYOUTS

    def probabilities(self, index: np.ndarray) -> np.ndarray:
        """(n,) positions in the set -> (n, 6) probabilities in `VOTE_COLUMNS` order."""
        values = self.values[index]
        return softmax(values, axis=1)[:, list(SUBMISSION_ORDER)] if self.is_logits else values

    def blend_logits(self, index: np.ndarray) -> np.ndarray:
        """(n,) positions -> (n, 6) in `CLASSES` order what the blend takes: the logits, or for probabilities their
        logs (clipped to the metric's 1e-15, so that a 0 does not veto a class in the logit blend)."""
        if self.is_logits:
            return self.values[index]
        logits = np.empty_like(self.values[index])
        logits[:, list(SUBMISSION_ORDER)] = np.log(np.clip(self.values[index], EPSILON, 1.0))
        return logits


def read_set(layout: str, name: str, path: str | Path, seed: int | None = None) -> PredictionSet:
    """One prediction set in `layout` (see the module docstring); `seed` is the `pred_<seed>.npy` of `preds`."""
    if layout in LOGIT_LAYOUTS:
        saved = read_groups([(layout, name, path)], seed)[name]  # `parity`'s readers; needs seed, some rows
        return PredictionSet(name, layout, str(path), np.fromiter(saved, np.int64, len(saved)),
                             np.stack(list(saved.values())))
    if layout not in LAYOUTS:
        raise HMSInputError(f"unknown layout {layout!r} of set {name}: one of {LAYOUTS}")
    frame = read_csv(path) if layout == "submission" else _read_parquet(path)
    missing = [c for c in ("label_id", *VOTE_COLUMNS) if c not in frame.columns]
    if missing:
        raise HMSInputError(f"{path}: missing column(s) {missing}; found {list(frame.columns)} (a {layout} set is "
                            f"keyed by label_id, with the six probability columns)")
    if frame.empty:
        raise HMSInputError(f"{path}: no rows; set {name} has no predictions")
    ids = integer_column(frame, "label_id", path).to_numpy()
    unique_label_ids(frame, path, "one prediction per label row")
    return PredictionSet(name, layout, str(path), ids, checked_probabilities(frame, path))


def _read_parquet(path: str | Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise HMSInputError(f"{path}: file not found") from None
    except (OSError, ValueError, pa.ArrowException) as e:
        raise HMSInputError(f"{path}: not a readable Parquet file ({e})") from None


def checked_probabilities(frame: pd.DataFrame, path: str | Path) -> np.ndarray:
    """The six `VOTE_COLUMNS` of `frame` -> (N, 6) probabilities: finite, in [0, 1], rows summing to 1 within
    `SUM_LIMIT` (rows off by more than `SUM_TOLERANCE` renormalised, logged); else an error naming the row."""
    p = frame[list(VOTE_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64, copy=True)
    total = p.sum(axis=1)
    off = np.abs(total - 1)
    for bad, what in ((~np.isfinite(p).all(axis=1) | (p < 0).any(axis=1) | (p > 1).any(axis=1),
                       "probabilities must be finite numbers in [0, 1]"),
                      (~(off <= SUM_LIMIT), f"probabilities must sum to 1 (within {SUM_LIMIT})")):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            where = table_row(path, row_number(frame, i), f"label_id {shown(frame['label_id'].iloc[i])}")
            raise HMSInputError(f"{where}: {what}, got {frame[list(VOTE_COLUMNS)].iloc[i].tolist()} (sum "
                                f"{float(total[i])!r})")
    fix = off > SUM_TOLERANCE
    if fix.any():
        worst = int(np.argmax(off))
        where = table_row("", row_number(frame, worst), f"label_id {shown(frame['label_id'].iloc[worst])}").lstrip()
        log.warning("%s: %d of %d rows do not sum to 1 within %g (the worst: %s, by %.3g); they are renormalised "
                    "per row", path, int(fix.sum()), len(p), SUM_TOLERANCE, where, off[worst])
        p[fix] /= total[fix, None]
    return p


def read_sets(specs: Sequence[tuple[str, str, str | Path]], seed: int | None = None) -> list[PredictionSet]:
    """(layout, NAME, PATH) in command-line order -> the sets; names must be unique."""
    sets: list[PredictionSet] = []
    for layout, name, path in specs:
        if any(s.name == name for s in sets):
            raise HMSInputError(f"set {name!r} is given twice")
        sets.append(read_set(layout, name, path, seed))
    if not sets:
        raise HMSInputError("no prediction set: give one or more with --preds NAME=DIR, --oof NAME=CSV, "
                            "--submission NAME=CSV or --pseudo NAME=PARQUET")
    return sets


def match_rows(table: pd.DataFrame, sets: Sequence[PredictionSet], table_name: str
               ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The table positions (table order) of the label_ids every set predicted (`training.shared_rows`), and per set
    the position of each of those rows in the set."""
    rows = shared_rows(table, {s.name: s.label_ids for s in sets}, table_name, sources={s.name: s.source for s in sets})
    if any(len(s.label_ids) != len(rows) for s in sets):
        log.warning("the sets cover different rows (rows per set: %s): every set is evaluated on the %d rows they "
                    "all cover", ", ".join(f"{s.name} {len(s.label_ids)}" for s in sets), len(rows))
    ids = table["label_id"].to_numpy(dtype=np.int64)
    return rows, [pd.Index(s.label_ids).get_indexer(ids[rows]) for s in sets]


def blend_sets(sets: Sequence[PredictionSet], index: Sequence[np.ndarray], how: str) -> np.ndarray:
    """The sets' equal blend (`blending.blend_probs`, `how` = prob | logit) of the rows `index` (per set its
    positions) -> (n, 6) probabilities in `VOTE_COLUMNS` order. Probability sets enter as their logs
    (`blend_logits`)."""
    logits = torch.from_numpy(np.stack([s.blend_logits(i) for s, i in zip(sets, index)]))[:, :, None]
    return blend_probs(logits, [1.0] * len(sets), how).numpy()
