"""The `evaluate` command's figures, drawn from its result (the JSON's dict), so they show exactly its numbers.

matplotlib (the `plot` extra), on the Agg canvas without pyplot; each figure comes back as PNG bytes.
"""
from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..constants import SUBMISSION_CLASSES
from .drawing import png_bytes, short

DPI = 100
_NO = float("nan")


def _new(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _f(x: float | None) -> float:
    return _NO if x is None else x


def _errorbars(ax, labels: list[str], values: list, intervals: list, colour: str, shift: float, label: str) -> None:
    y = np.arange(len(labels)) + shift
    v = np.array([_f(x) for x in values])
    ci = np.array([[_f(None if c is None else c[0]), _f(None if c is None else c[1])] for c in intervals])
    ax.errorbar(v, y, xerr=np.abs(np.stack([v - ci[:, 0], ci[:, 1] - v])), fmt="o", color=colour, capsize=3,
                label=label)


def intervals(result: dict) -> Figure:
    """Left: each set's KL (all rows; >= min_votes rows) with its interval. Right: each pair's difference."""
    sets, pairs, n = result["sets"], result["pairs"], result["min_votes"]
    names = list(sets)
    fig = _new(13, 1.6 + 0.45 * max(len(names), len(pairs), 2))
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.2) if pairs else (1, 0.01))
    _errorbars(left, names, [s["kl"] for s in sets.values()], [s["kl_ci"] for s in sets.values()], "#1f77b4", -0.12,
               "all rows")
    _errorbars(left, names, [s["kl_min_votes"] for s in sets.values()], [s["kl_min_votes_ci"] for s in sets.values()],
               "#d62728", 0.12, f">= {n} votes")
    left.set_yticks(range(len(names)), [short(x, 18) for x in names])
    left.invert_yaxis()
    left.set_xlabel("KL divergence (lower is better)")
    left.legend(fontsize=8)
    left.set_title("each set, with its bootstrap interval", fontsize=10)
    if not pairs:
        right.set_axis_off()
        return fig
    labels = [f"{short(p['a'], 12)} - {short(p['b'], 12)}" for p in pairs]
    _errorbars(right, labels, [p["kl_diff"] for p in pairs], [p["ci"] for p in pairs], "#1f77b4", -0.12, "all rows")
    _errorbars(right, labels, [p["kl_diff_min_votes"] for p in pairs], [p["ci_min_votes"] for p in pairs], "#d62728",
               0.12, f">= {n} votes")
    right.axvline(0, color="k", lw=0.8)
    right.set_yticks(range(len(labels)), labels, fontsize=8)
    right.invert_yaxis()
    shares = right.twinx()  # the share of resamples in which a is better, beside each pair
    shares.set_ylim(right.get_ylim())
    shares.set_yticks(range(len(labels)), ["" if p["p_a_better"] is None else f"a better: {p['p_a_better']:.1%}"
                                           for p in pairs], fontsize=7)
    right.set_xlabel("KL of a - KL of b (< 0: a is better)")
    right.set_title("each pair on the same resamples (paired interval)", fontsize=10)
    return fig


def vote_buckets(result: dict) -> Figure:
    """Grouped bars: each set's KL in each total-vote bucket; the bucket's rows under its name."""
    sets, buckets = result["sets"], result["vote_buckets"]
    fig = _new(11, 4.2)
    ax = fig.subplots()
    width = 0.8 / len(sets)
    x = np.arange(len(buckets))
    for k, (name, s) in enumerate(sets.items()):
        ax.bar(x - 0.4 + width * (k + 0.5), [_f(s["vote_buckets"][b]["kl"]) for b in buckets], width,
               label=short(name, 18))
    rows = next(iter(sets.values()))["vote_buckets"]  # every set is scored on the same rows
    ax.set_xticks(x, [f"{b} vote{'' if b == '1' else 's'}\n{rows[b]['rows']} rows" for b in buckets], fontsize=8)
    ax.set_ylabel("KL divergence")
    ax.set_title("KL by the row's total expert votes", fontsize=10)
    ax.legend(fontsize=8, ncols=min(4, len(sets)))
    return fig


def reliability(result: dict) -> Figure:
    """Per class: mean predicted probability against the mean vote fraction in each non-empty bin, per set."""
    fig = _new(13, 7.5)
    axes = fig.subplots(2, 3, sharex=True, sharey=True).ravel()
    for ax, c in zip(axes, SUBMISSION_CLASSES):
        ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls="--")
        for name, s in result["sets"].items():
            cal = s["calibration"][c]
            shown = [i for i, count in enumerate(cal["count"]) if count]
            ax.plot([cal["mean_pred"][i] for i in shown], [cal["mean_frac"][i] for i in shown], marker="o", ms=3,
                    label=f"{short(name, 14)} (ECE {cal['ece']:.3f})")
        ax.set_title(c, fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, loc="upper left")
    for ax in axes[3:]:
        ax.set_xlabel("mean predicted probability")
    for ax in axes[::3]:
        ax.set_ylabel("mean vote fraction")
    return fig


def confusion(result: dict) -> Figure:
    """Per set: consensus class (rows) against predicted class (columns), shares of each row, counts written."""
    sets = result["sets"]
    cols = min(3, len(sets))
    lines = -(-len(sets) // cols)
    fig = _new(4.4 * cols, 4.0 * lines)
    axes = np.atleast_1d(fig.subplots(lines, cols)).ravel()
    ticks = range(len(SUBMISSION_CLASSES))
    for ax, (name, s) in zip(axes, sets.items()):
        shares = np.array([[_f(v) for v in row] for row in s["confusion"]["normalised"]])
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        for (i, j), count in np.ndenumerate(np.array(s["confusion"]["counts"])):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                    color="w" if np.nan_to_num(shares[i, j]) > 0.6 else "k")
        ax.set_xticks(ticks, SUBMISSION_CLASSES, fontsize=7, rotation=45)
        ax.set_yticks(ticks, SUBMISSION_CLASSES, fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("experts' consensus", fontsize=8)
        ax.set_title(short(name, 24), fontsize=9)
    for ax in axes[len(sets):]:
        ax.set_axis_off()
    return fig


def draw_figures(result: dict) -> dict[str, bytes]:
    """{figure name: PNG bytes} for `evaluation_page.FIGURES`."""
    return {name: png_bytes(draw(result)) for name, draw in (("intervals", intervals), ("vote_buckets", vote_buckets),
                                                        ("reliability", reliability), ("confusion", confusion))}
