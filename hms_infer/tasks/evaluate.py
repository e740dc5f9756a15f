"""`python -m hms_infer evaluate`: named prediction sets scored against the experts' votes the way the top teams
judged models: on all rows and on the rows with many votes, per fold, per class, per vote bucket, calibrated or not,
with group-bootstrap confidence intervals and paired comparisons; `DIR/evaluation.json`, `DIR/summary.txt`,
`DIR/index.html`.

The sets are read and matched by `prediction_sets`, the numbers computed by `evaluation`; the page is
`report.evaluation_page`, its figures `report.evaluation_figures` (matplotlib, the `plot` extra: without it the
page has the tables and says how to get the figures).
"""
from __future__ import annotations

import json
import logging
import shlex
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..constants import (
    BLENDS, BOOTSTRAP_RESAMPLES, CALIBRATION_BINS, CI_PERCENTILES, MIN_VOTES, SUBMISSION_CLASSES, VOTE_BUCKETS,
    VOTE_COLUMNS, WORST_ROWS,
)
from ..errors import HMSInputError
from ..evaluation import (
    bootstrap_means, bucket_names, calibration, class_kl, confusion, consensus, grouped_mean, paired,
    percentile_interval, row_kl, vote_bucket, worst_rows,
)
from ..files import check_writable, write_text_atomic
from ..messages import shown, table_row
from ..metric import vote_totals
from ..prediction_sets import blend_sets, match_rows, read_sets
from ..training import read_vote_table

log = logging.getLogger(__name__)
BLEND = "blend"  # the name of the sets' equal blend
GROUP_COLUMNS = ("patient_id", "eeg_id")
JSON_NAME, TEXT_NAME, PAGE_NAME = "evaluation.json", "summary.txt", "index.html"


def evaluate(*, table: str | Path, sets: Sequence[tuple[str, str, str | Path]], out: str | Path | None = None,
             seed: int | None = None, blend: str | None = None, min_votes: int = MIN_VOTES,
             groups: str | None = None, bootstrap: int = BOOTSTRAP_RESAMPLES, bootstrap_seed: int = 0,
             worst: int = WORST_ROWS, progress: bool = True) -> dict:
    """Score each prediction set (and with `blend` = prob | logit, their equal blend, named `blend`) against the
    votes of `table`; return the numbers (the JSON's dict; `summary_frame` makes a DataFrame of it) and, with `out`,
    write `out/evaluation.json`, `out/summary.txt` and `out/index.html`.

    `sets`: (layout, NAME, PATH), layout one of preds (DIR/<label_id>/pred_<seed>.npy, needs `seed`), oof,
    submission, pseudo (`prediction_sets`). Every set is scored on the rows all of them cover. `groups`: the
    bootstrap's groups, `patient_id` (default where the table has it) or `eeg_id`; `bootstrap` resamples
    (0: no intervals) drawn from `bootstrap_seed`; `worst`: the rows listed per set.
    """
    t0 = time.perf_counter()
    _check_options(min_votes, bootstrap, worst, blend)
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise HMSInputError(f"{out}: is a file; --out is the evaluation's folder")
        for name in (JSON_NAME, TEXT_NAME, PAGE_NAME):
            check_writable(out / name)
    frame = read_vote_table(table)
    group_col = _group_column(frame, groups, table)
    loaded = read_sets(sets, seed)
    if blend is not None and any(s.name == BLEND for s in loaded):
        raise HMSInputError(f"a set is named {BLEND!r}, the name of the blend (--blend): rename it")
    rows, index = match_rows(frame, loaded, str(table))
    votes, totals = _votes(frame, rows, table)
    y = votes / totals[:, None]
    probs = {s.name: s.probabilities(i) for s, i in zip(loaded, index)}
    if blend is not None:
        probs[BLEND] = blend_sets(loaded, index, blend)
    sub = frame.iloc[rows]
    codes, uniques = pd.factorize(sub[group_col])
    keep = totals >= min_votes
    if not keep.any():
        log.warning("no evaluated row has %d or more votes (the most: %d): the >= %d numbers are empty",
                    min_votes, int(totals.max()), min_votes)
    kl = {name: row_kl(y, p) for name, p in probs.items()}
    intervals = _bootstrap(kl, keep, codes, len(uniques), bootstrap, bootstrap_seed, progress)
    layouts = {s.name: (s.layout, s.source, len(s.label_ids)) for s in loaded}
    if blend is not None:
        layouts[BLEND] = ("blend", f"equal {blend} blend of " + ", ".join(s.name for s in loaded), len(rows))
    result = {
        "table": str(table),
        "rows_table": len(frame),
        "rows_common": len(rows),
        "rows_total": {s.name: len(s.label_ids) for s in loaded},
        "groups": group_col,
        "groups_count": len(uniques),
        "min_votes": min_votes,
        "bootstrap": bootstrap,
        "bootstrap_seed": bootstrap_seed,
        "ci_percentiles": list(CI_PERCENTILES),
        "blend": blend,
        "classes": list(SUBMISSION_CLASSES),
        "vote_buckets": bucket_names(),
        "calibration_bins": [k / CALIBRATION_BINS for k in range(CALIBRATION_BINS + 1)],
        "sets": {name: {"layout": layouts[name][0], "source": layouts[name][1], "rows_total": layouts[name][2],
                        **_set_numbers(name, sub, y, votes, totals, probs[name], kl[name], keep, intervals, worst)}
                 for name in probs},
    }
    result["pairs"] = _pairs(result["sets"], intervals)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    summary = format_summary(result)
    if out is not None:  # everything made before anything is written: the three files always agree
        texts = {JSON_NAME: json.dumps(result, indent=2) + "\n", TEXT_NAME: summary + "\n", PAGE_NAME: _page(result)}
        for name, text in texts.items():
            write_text_atomic(out / name, text)
    n, dt = result["rows_common"], time.perf_counter() - t0  # the page's figures too
    log.info(summary)
    log.info(f"hms_infer evaluate: {n} rows x {len(result['sets'])} sets, {result['bootstrap']} resamples of "
             f"{result['groups_count']} {result['groups']} groups in {dt:.1f} s ({n * len(result['sets']) / dt:.0f} "
             f"rows/s)" + (f" -> {out / PAGE_NAME}, {out / JSON_NAME}" if out is not None else ""))
    return result


def _check_options(min_votes: int, bootstrap: int, worst: int, blend: str | None) -> None:
    for name, value, least in (("--min-votes", min_votes, 1), ("--bootstrap", bootstrap, 0), ("--worst", worst, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise HMSInputError(f"{name} must be an integer >= {least}, got {value!r}")
    if blend is not None and blend not in BLENDS:
        raise HMSInputError(f"--blend must be one of {BLENDS}, got {blend!r}")


def _group_column(frame: pd.DataFrame, groups: str | None, table: str | Path) -> str:
    """The bootstrap's group column: `groups`, or patient_id where the table has it, else eeg_id (logged)."""
    if groups is None:
        if "patient_id" in frame.columns:
            groups = "patient_id"
        else:
            log.warning("%s has no patient_id column: the bootstrap resamples eeg_ids instead (EEGs of one "
                        "patient then count as independent, which narrows the intervals)", table)
            return "eeg_id"
    if groups not in GROUP_COLUMNS:
        raise HMSInputError(f"--groups must be one of {GROUP_COLUMNS}, got {groups!r}")
    if groups not in frame.columns:
        raise HMSInputError(f"{table}: no {groups} column to group the bootstrap by (--groups {groups}); found "
                            f"{list(frame.columns)}")
    missing = frame[groups].isna().to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise HMSInputError(f"{table_row(table, i, f'label_id {shown(frame.label_id.iloc[i])}')}: no {groups}")
    return groups


def _votes(frame: pd.DataFrame, rows: np.ndarray, table: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The evaluated rows' (n, 6) vote counts and (n,) totals; counts checked on the whole table, and every
    evaluated row must have a vote."""
    totals = vote_totals(frame, str(table))
    none = totals[rows] == 0
    if none.any():
        i = int(rows[np.flatnonzero(none)[0]])
        raise HMSInputError(f"{table_row(table, i, f'label_id {shown(frame.label_id.iloc[i])}')}: no votes (all six "
                            f"vote columns are zero); evaluate judges every row against its votes")
    return frame[list(VOTE_COLUMNS)].to_numpy(dtype=np.float64)[rows], totals[rows]


def _bootstrap(kl: dict[str, np.ndarray], keep: np.ndarray, codes: np.ndarray, groups: int, resamples: int,
               seed: int, progress: bool) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """{set: ((B,) resampled KL on all rows, (B,) on the >= min_votes rows)}, every set on the same resamples."""
    if resamples == 0:
        return None
    names = list(kl)
    values = np.stack([kl[n] for n in names] * 2, axis=1)
    weights = np.concatenate([np.ones((len(keep), len(names))), np.repeat(keep[:, None], len(names), 1)], axis=1)
    means = bootstrap_means(values, weights, codes, groups, resamples, seed, progress)
    return {n: (means[:, k], means[:, len(names) + k]) for k, n in enumerate(names)}


def _num(x: float) -> float | None:
    """A JSON number: NaN (an empty bin, bucket, subset) -> None."""
    return float(x) if np.isfinite(x) else None


def _nums(a: np.ndarray) -> list:
    a = np.asarray(a, dtype=np.float64)
    return [_nums(r) for r in a] if a.ndim > 1 else [_num(v) for v in a]


def _interval(samples: np.ndarray | None) -> list | None:
    if samples is None:
        return None
    low, high = percentile_interval(samples)
    return None if not np.isfinite(low) else [low, high]


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def _set_numbers(name: str, sub: pd.DataFrame, y: np.ndarray, votes: np.ndarray, totals: np.ndarray,
                 p: np.ndarray, kl: np.ndarray, keep: np.ndarray,
                 intervals: dict[str, tuple[np.ndarray, np.ndarray]] | None, worst: int) -> dict:
    """One set's numbers (see README *Evaluating models*)."""
    buckets, bucket_kl = grouped_mean(kl, vote_bucket(totals), len(VOTE_BUCKETS))
    counts, mean_pred, mean_frac, ece = calibration(y, p)
    matrix, normalised = confusion(consensus(votes), np.argmax(p, axis=1), len(SUBMISSION_CLASSES))
    folds = sub["fold"].to_numpy() if "fold" in sub.columns else None
    samples = (None, None) if intervals is None else intervals[name]
    return {
        "rows": len(kl),
        "kl": float(kl.mean()),
        "kl_ci": _interval(samples[0]),
        "rows_min_votes": int(keep.sum()),
        "kl_min_votes": _mean(kl[keep]),
        "kl_min_votes_ci": _interval(samples[1]),
        "kl_by_fold": {} if folds is None else {
            str(f): {"rows": int((folds == f).sum()), "kl": _mean(kl[folds == f]),
                     "rows_min_votes": int((keep & (folds == f)).sum()), "kl_min_votes": _mean(kl[keep & (folds == f)])}
            for f in sorted(set(folds.tolist()))},
        "class_kl": dict(zip(SUBMISSION_CLASSES, class_kl(y, p).tolist())),
        "vote_buckets": {b: {"rows": int(n), "kl": _num(v)} for b, n, v in zip(bucket_names(), buckets, bucket_kl)},
        "calibration": {c: {"count": counts[k].tolist(), "mean_pred": _nums(mean_pred[k]),
                            "mean_frac": _nums(mean_frac[k]), "ece": float(ece[k])}
                        for k, c in enumerate(SUBMISSION_CLASSES)},
        "confusion": {"counts": matrix.tolist(), "normalised": _nums(normalised)},
        **_worst(name, sub, votes, p, kl, worst),
    }


def _worst(name: str, sub: pd.DataFrame, votes: np.ndarray, p: np.ndarray, kl: np.ndarray, n: int) -> dict:
    """The n rows of highest KL and the `report` command line that draws their EEGs."""
    chosen = worst_rows(kl, n)
    label_ids, eeg_ids = sub["label_id"].to_numpy()[chosen], sub["eeg_id"].to_numpy()[chosen]
    rows = [{"label_id": int(label_ids[j]), "eeg_id": int(eeg_ids[j]), "kl": float(kl[i]),
             "votes": dict(zip(SUBMISSION_CLASSES, votes[i].astype(np.int64).tolist())),
             "probabilities": dict(zip(SUBMISSION_CLASSES, p[i].tolist()))} for j, i in enumerate(chosen)]
    ids = " ".join(str(e) for e in dict.fromkeys(eeg_ids.tolist()))
    command = (f"python -m hms_infer report --split train --data-dir DATA --eeg-id {ids} --manifest MANIFEST "
               f"--out {shlex.quote(f'worst_{name}')}") if rows else None
    return {"worst_rows": rows, "report_command": command}


def _pairs(sets: dict[str, dict], intervals: dict[str, tuple[np.ndarray, np.ndarray]] | None) -> list[dict]:
    """Each pair (a, b) of sets in the order given: kl(a) - kl(b), its paired-bootstrap interval and the share of
    resamples in which a is better; the same on the >= min_votes rows."""
    names = list(sets)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pair = {"a": a, "b": b}
            for k, suffix in enumerate(("", "_min_votes")):
                ka, kb = sets[a][f"kl{suffix}"], sets[b][f"kl{suffix}"]
                pair[f"kl_diff{suffix}"] = None if ka is None else ka - kb
                ci, share = (None, None) if intervals is None else paired(intervals[a][k], intervals[b][k])
                pair[f"ci{suffix}"] = None if ci is None or not np.isfinite(ci[0]) else list(ci)
                pair[f"p_a_better{suffix}"] = None if share is None else _num(share)
            pairs.append(pair)
    return pairs


def _page(result: dict) -> str:
    """The page, with figures where matplotlib is installed."""
    from ..report.evaluation_page import evaluation_page
    try:
        from ..report.evaluation_figures import draw_figures
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] != "matplotlib":
            raise
        log.warning("the page has no figures: they need matplotlib (pip install 'hms_infer[plot]')")
        return evaluation_page(result, None)
    return evaluation_page(result, draw_figures(result))


def summary_frame(result: dict) -> pd.DataFrame:
    """The sets side by side: rows, KL and its interval, on all rows and on the >= min_votes rows."""
    records = {}
    for name, s in result["sets"].items():
        ci, ci_min = s["kl_ci"] or [None, None], s["kl_min_votes_ci"] or [None, None]
        records[name] = {"rows": s["rows"], "kl": s["kl"], "kl_low": ci[0], "kl_high": ci[1],
                         "rows_min_votes": s["rows_min_votes"], "kl_min_votes": s["kl_min_votes"],
                         "kl_min_votes_low": ci_min[0], "kl_min_votes_high": ci_min[1]}
    return pd.DataFrame.from_dict(records, orient="index", dtype=float).astype({"rows": int, "rows_min_votes": int})


def pairs_frame(result: dict) -> pd.DataFrame:
    """One row per pair: kl(a) - kl(b), its interval, the share of resamples in which a is better."""
    return pd.DataFrame([{"a": p["a"], "b": p["b"], "kl_diff": p["kl_diff"], "ci_low": (p["ci"] or [None])[0],
                          "ci_high": (p["ci"] or [None, None])[1], "p_a_better": p["p_a_better"]}
                         for p in result["pairs"]], columns=["a", "b", "kl_diff", "ci_low", "ci_high", "p_a_better"])


def format_summary(result: dict) -> str:
    """The text table: the sets side by side, then the pairs."""
    level = f"{result['ci_percentiles'][1] - result['ci_percentiles'][0]:g}%"
    intervals = (f"intervals: {level}, {result['bootstrap']} group-bootstrap resamples" if result["bootstrap"]
                 else "no intervals (--bootstrap 0)")
    head = (f"{result['table']}: {result['rows_common']} rows (every set's), {result['groups_count']} "
            f"{result['groups']} groups; {intervals}; min_votes {result['min_votes']}")
    lines = [head, summary_frame(result).to_string(float_format=lambda x: f"{x:.6f}")]
    if result["pairs"]:
        lines += ["pairs (kl_diff = KL of a - KL of b; p_a_better: share of resamples with a better)",
                  pairs_frame(result).to_string(index=False, float_format=lambda x: f"{x:.6f}")]
    return "\n".join(lines)
