"""The numbers a report shows, from one batched pass of the ensemble over the chosen rows (no plotting here).

Every (..., 6) array of a report is in `SUBMISSION_CLASSES` order (the submission's columns: seizure, lpd, gpd,
lrda, grda, other), so what a page shows reads like the submission.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..constants import HEADS, SUBMISSION_ORDER, VOTE_COLUMNS
from ..data import Competition, Row
from ..ensemble import Ensemble
from ..errors import HMSInputError
from ..fallback import Problem, apply_policy
from ..loader import ModelInputs
from ..metric import kl_divergence, vote_probabilities
from ..montage import bipolar
from ..runtime import RunStats, autocast, on_device

_ORDER = list(SUBMISSION_ORDER)


@dataclass
class RowReport:
    """One row's numbers. probs (6,) the blend (as the submission, fallback policy applied); member_view (M, V, 6)
    each member's and view's `head_all` probabilities; heads (M, 4, 6) each member's heads in `HEADS` order, the
    softmax averaged over the views; votes (6,) the expert votes and kl the row's KL divergence, when the table
    has votes."""

    row: Row
    probs: np.ndarray
    member_view: np.ndarray
    heads: np.ndarray
    status: str | None = None
    problems: list[Problem] = field(default_factory=list)
    votes: np.ndarray | None = None
    kl: float | None = None


@dataclass
class Report:
    """The chosen rows of a competition table, with the ensemble's member names and views."""

    split: str
    table_name: str
    members: list[str]
    views: list[str]
    rows: list[RowReport]


@dataclass
class RowInputs:
    """What the models saw of a row: signals (24, 10000) the filtered `none` montage (model units, µV / 32);
    spect (4, 300, 100) the four regions of the model's spectrogram image (log power, normalised);
    stft (H, W) the first member's trainable-STFT image (the input of its 2-D backbone)."""

    signals: np.ndarray
    spect: np.ndarray
    stft: np.ndarray
    stft_member: str


def select_rows(comp: Competition, rows: Sequence[int] | None = None, eeg_ids: Sequence[int] | None = None
                ) -> list[int]:
    """Table positions to report: `rows` (0-based), or every row of each of `eeg_ids`, or (neither) all rows;
    in the order given, without repeats. An unknown row or id is an `HMSInputError` naming it and the table."""
    if rows is not None and eeg_ids is not None:
        raise HMSInputError("give --rows or --eeg-id, not both")
    if eeg_ids is not None:
        chosen = []
        for eeg_id in eeg_ids:
            found = [i for i, r in enumerate(comp.rows) if r.eeg_id == eeg_id]
            if not found:
                raise HMSInputError(f"--eeg-id {eeg_id}: no row of {comp.root / comp.table_name} has this eeg_id")
            chosen += found
    elif rows is not None:
        for i in rows:
            if not 0 <= i < len(comp):
                raise HMSInputError(f"--rows {i}: {comp.root / comp.table_name} has rows 0..{len(comp) - 1}")
        chosen = list(rows)
    else:
        chosen = list(range(len(comp)))
    return list(dict.fromkeys(chosen))


def _votes(comp: Competition, rows: Sequence[int]) -> np.ndarray | None:
    """(N, 6) normalised votes of `rows` (NaN in a row without votes), or None when the table has no vote
    columns."""
    if not all(c in comp.table.columns for c in VOTE_COLUMNS):
        return None
    return vote_probabilities(comp.table.iloc[list(rows)][["eeg_id", *VOTE_COLUMNS]], comp.table_name)[0]


def analyse(ens: Ensemble, comp: Competition, rows: Sequence[int], batch_size: int | str = "auto",
            num_workers: int | str = "auto", progress: bool = True, stats: RunStats | None = None) -> Report:
    """Every head of every member and view for `rows`, in one batched pass (`Ensemble.batch_logits(heads=True)`);
    the blend exactly as `predict` computes it, then the fallback policy over these rows."""
    rows = list(rows)
    votes = _votes(comp, rows)  # bad votes are an error before the forward pass; a row without votes shows none
    where = {r: k for k, r in enumerate(rows)}
    m, v = len(ens.members), len(ens.views)
    logits = torch.zeros(len(rows), m, v, len(HEADS), 6, dtype=torch.float32)
    problems: dict[int, list[Problem]] = {}
    for index, batch, row_problems in ens.batch_logits(comp, rows, batch_size, num_workers, progress, stats,
                                                        heads=True):
        logits[[where[i] for i in index]] = batch.transpose(0, 1)
        problems.update({where[i]: list(p) for i, p in zip(index, row_problems) if p})
    probs = ens.blend(logits[..., 0, :].transpose(0, 1))  # (N, 6), the blend of `predict_rows`
    for k in np.flatnonzero(~np.isfinite(probs).all(axis=1)):
        probs[k] = np.nan
        what = comp.rows[rows[k]].where(comp.table_name)
        problems.setdefault(int(k), []).append(("model", what, "the models gave no finite probabilities"))
    probs, statuses = apply_policy(probs, problems, ens.fallback)
    soft = logits.double().softmax(-1).numpy()[..., _ORDER]  # (N, M, V, 4, 6)
    out = []
    for k, i in enumerate(rows):
        p = probs[k][_ORDER]
        voted = votes is not None and bool(np.isfinite(votes[k]).all())
        out.append(RowReport(comp.rows[i], p, soft[k, :, :, 0], soft[k].mean(axis=1), statuses.get(k),
                             problems.get(k, []), votes[k] if voted else None,
                             kl_divergence(votes[k:k + 1], p[None]) if voted else None))
    return Report(comp.split, comp.table_name, [mb.name for mb in ens.members], list(ens.views), out)


def row_inputs(ens: Ensemble, comp: Competition, row: int) -> RowInputs:
    """Read and preprocess `row` as the loader does; the STFT image from the first member's own STFT layer."""
    item = ModelInputs(comp, [row])[0]
    if isinstance(item, HMSInputError):
        raise item
    _, electrodes, image, _ = item
    signals = bipolar(electrodes, "none")
    member = ens.members[0]
    x = torch.from_numpy(signals)[None].to(member.device)
    with torch.inference_mode(), on_device(member.device), autocast(member.device, ens.precision):
        stft_image = member.model.stft_image(x)[0, 0].float().cpu().numpy()
    return RowInputs(signals, image[:4], stft_image, member.name)
