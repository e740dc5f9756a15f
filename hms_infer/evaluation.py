"""Vote-aware evaluation of predicted probabilities against the experts' votes: pure numpy on arrays.

Arrays of classes are in `VOTE_COLUMNS` order (seizure, lpd, gpd, lrda, grda, other): (N, 6) targets y (votes
normalised per row), (N, 6) predictions p, (N, 6) vote counts. The KL is the competition's (`metric.kl_terms`:
p clipped to [1e-15, 1 - 1e-15], terms with y == 0 count 0), so `row_kl(y, p).mean()` is `metric.score`.

Confidence intervals come from a bootstrap over groups (patients, else EEGs: rows of one group are not
independent): a resample draws G of the G groups with replacement and takes every row of each drawn group as often
as it was drawn. Vectorised: per-group sums of each quantity, the (b, G) draw counts of a chunk of resamples, one
matrix product per chunk. Every set is scored on the same resamples, so differences between sets are paired.
"""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from .constants import CALIBRATION_BINS, CI_PERCENTILES, VOTE_BUCKETS
from .metric import kl_terms

DRAWS_PER_CHUNK = 4_000_000  # group draws held in memory at once (a (b, G) chunk: b = this // G resamples)


def row_kl(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(N, K) targets, (N, K) predictions -> (N,) each row's KL divergence sum(y * log(y / p))."""
    return kl_terms(y, p).sum(1)


def class_kl(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(N, K), (N, K) -> (K,) each class's additive share of the KL: the mean over rows of y_c * log(y_c / p_c).
    The shares sum to the KL."""
    return kl_terms(y, p).mean(0)


def bucket_names() -> list[str]:
    """`VOTE_BUCKETS` as labels: '1', '2', '3-5', '6-9', '10-19', '20+'."""
    return [f"{lo}+" if hi is None else str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in VOTE_BUCKETS]


def vote_bucket(totals: np.ndarray) -> np.ndarray:
    """(N,) total votes (>= 1) -> (N,) index of its `VOTE_BUCKETS` bucket."""
    return np.searchsorted([lo for lo, _ in VOTE_BUCKETS], totals, side="right") - 1


def grouped_mean(values: np.ndarray, codes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) values, (N,) codes in [0, n) -> ((n,) row counts, (n,) mean value per code; NaN where empty)."""
    counts = np.bincount(codes, minlength=n)
    sums = np.bincount(codes, weights=values, minlength=n)
    return counts, _ratio(sums, counts)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den == 0."""
    return np.divide(num, den, out=np.full(np.shape(num), np.nan), where=np.asarray(den) > 0)


def calibration(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per class, rows binned by predicted probability into `bins` equal-width bins of [0, 1] (bin k holds
    k / bins <= p < (k + 1) / bins; the last also p = 1).

    (N, K) targets, (N, K) predictions -> (K, bins) row counts, (K, bins) mean predicted probability, (K, bins) mean
    vote fraction (NaN in empty bins), (K,) expected calibration error sum_k count_k / N * |mean p - mean y|.
    """
    n, k = p.shape
    b = np.clip(np.floor(p * bins).astype(np.int64), 0, bins - 1) + bins * np.arange(k)  # (N, K) flat bin ids
    counts = np.bincount(b.ravel(), minlength=k * bins).reshape(k, bins)
    pred = np.bincount(b.ravel(), weights=p.ravel(), minlength=k * bins).reshape(k, bins)
    frac = np.bincount(b.ravel(), weights=y.ravel(), minlength=k * bins).reshape(k, bins)
    ece = np.abs(pred - frac).sum(1) / n  # count * |mean p - mean y| = |sum p - sum y|
    return counts, _ratio(pred, counts), _ratio(frac, counts), ece


def consensus(votes: np.ndarray) -> np.ndarray:
    """(N, K) votes -> (N,) the experts' consensus class: the most voted, ties to the first column."""
    return np.argmax(votes, axis=1)


def confusion(true: np.ndarray, predicted: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) consensus classes, (N,) predicted classes -> (k, k) counts [consensus, predicted] and the same
    normalised per row (each consensus class's rows sum to 1; NaN for a class no row has)."""
    counts = np.bincount(true * k + predicted, minlength=k * k).reshape(k, k)
    return counts, _ratio(counts, counts.sum(1, keepdims=True))


def worst_rows(kl: np.ndarray, n: int) -> np.ndarray:
    """(N,) per-row KL -> the indices of the n highest, highest first (ties: table order)."""
    return np.argsort(-kl, kind="stable")[:n]


def bootstrap_means(values: np.ndarray, weights: np.ndarray, codes: np.ndarray, groups: int, resamples: int,
                    seed: int, progress: bool = False) -> np.ndarray:
    """Group-bootstrap weighted means. (N, C) row values, (N, C) row weights (1 / 0 picks rows), (N,) group codes
    -> (resamples, C): per resample, sum(w * v) / sum(w) over the rows of the drawn groups (NaN where that is
    no row). The same `seed` gives the same resamples."""
    sums = np.stack([np.bincount(codes, weights=c, minlength=groups) for c in (values * weights).T], axis=1)
    mass = np.stack([np.bincount(codes, weights=c, minlength=groups) for c in weights.T], axis=1)
    rng = np.random.default_rng(seed)
    chunk = max(1, DRAWS_PER_CHUNK // groups)
    out = np.empty((resamples, values.shape[1]))
    with tqdm(total=resamples, desc="bootstrap", unit="resample", disable=not progress) as bar:
        for start in range(0, resamples, chunk):
            b = min(chunk, resamples - start)
            draws = rng.integers(0, groups, size=(b, groups)) + groups * np.arange(b)[:, None]
            counts = np.bincount(draws.ravel(), minlength=b * groups).reshape(b, groups).astype(np.float64)
            out[start:start + b] = _ratio(counts @ sums, counts @ mass)
            bar.update(b)
    return out


def percentile_interval(samples: np.ndarray) -> tuple[float, float]:
    """(B,) resampled statistic -> its `CI_PERCENTILES` interval over the finite samples ((nan, nan) if none)."""
    finite = samples[np.isfinite(samples)]
    if not finite.size:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, CI_PERCENTILES)
    return float(low), float(high)


def paired(a: np.ndarray, b: np.ndarray) -> tuple[tuple[float, float], float]:
    """(B,) resampled KL of set a and of set b on the same resamples -> the interval of kl(a) - kl(b) and the share
    of resamples in which a is better (kl(a) < kl(b); NaN if no resample is finite)."""
    diff = a - b
    finite = diff[np.isfinite(diff)]
    share = float((finite < 0).mean()) if finite.size else float("nan")
    return percentile_interval(diff), share
