"""The `evaluate` command's page: self-contained HTML, figures as data-URI PNGs, every number in a table.

Each number carries its value at full precision in `data-value` (Python's `repr`; empty for a JSON null) and its
place in `evaluation.json` in `data-key` (a '/'-separated path, e.g. `sets/cfg_1/kl_ci/0`), so the page reads
back against the JSON. No matplotlib here: the figures come in as PNG bytes (`evaluation_figures`), or the page
says how to get them.
"""
from __future__ import annotations

import base64
import html
from typing import Mapping

from ..constants import SUBMISSION_CLASSES
from .pages import _document, _table

FIGURES = {
    "intervals": "KL of each set with its group-bootstrap interval (all rows; rows with many votes), and each pair's "
                 "difference with its paired interval",
    "vote_buckets": "KL by total votes per row",
    "reliability": "reliability per class: mean predicted probability against the mean vote fraction, per bin",
    "confusion": "predicted class against the experts' consensus (share of each consensus class's rows)",
}
NO_FIGURES = ("The figures need matplotlib: <code>pip install 'hms_infer[plot]'</code>, then run the command again. "
              "Every number is in the tables below and in evaluation.json.")

Row = tuple[dict[str, str], list[str]]


def _number(key: str, value: float | int | None, digits: int = 6) -> str:
    """A number cell: shown rounded, `data-value` exact, `data-key` its JSON path; None is '-'."""
    if value is None:
        return f'<td data-key="{html.escape(key)}" data-value="">-</td>'
    exact = repr(value) if isinstance(value, int) else repr(float(value))
    shown = str(value) if isinstance(value, int) else f"{value:.{digits}f}"
    return f'<td data-key="{html.escape(key)}" data-value="{exact}">{shown}</td>'


def _text(value: str) -> str:
    return f'<td class="text">{html.escape(str(value))}</td>'


def _span(key: str, value: float | int) -> str:
    exact = repr(value) if isinstance(value, int) else repr(float(value))
    shown = str(value) if isinstance(value, int) else f"{value:g}"
    return f'<span data-key="{html.escape(key)}" data-value="{exact}">{shown}</span>'


def _interval(key: str, ci: list | None) -> list[str]:
    return [_number(f"{key}/{k}", None if ci is None else ci[k]) for k in (0, 1)]


def _figure(figures: Mapping[str, bytes] | None, name: str) -> str:
    if figures is None:
        return ""
    b64 = base64.b64encode(figures[name]).decode("ascii")
    return (f'<figure><img id="figure-{name}" alt="{html.escape(FIGURES[name])}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{html.escape(FIGURES[name])}</figcaption></figure>")


def _summary(result: dict) -> str:
    n = result["min_votes"]
    header = ["set", "layout", "rows", "rows in its file", "KL", "KL low", "KL high", f"rows >= {n} votes",
              f"KL >= {n}", f"KL >= {n} low", f"KL >= {n} high"]
    rows: list[Row] = []
    for name, s in result["sets"].items():
        k = f"sets/{name}"
        rows.append(({"data-set": name}, [
            _text(name), _text(s["layout"]), _number(f"{k}/rows", s["rows"]),
            _number(f"{k}/rows_total", s["rows_total"]), _number(f"{k}/kl", s["kl"]),
            *_interval(f"{k}/kl_ci", s["kl_ci"]),
            _number(f"{k}/rows_min_votes", s["rows_min_votes"]), _number(f"{k}/kl_min_votes", s["kl_min_votes"]),
            *_interval(f"{k}/kl_min_votes_ci", s["kl_min_votes_ci"])]))
    return _table("the sets side by side (KL: the competition's KL divergence; low / high: the bootstrap interval)",
                  header, rows, "sets")


def _pairs(result: dict) -> str:
    n = result["min_votes"]
    header = ["a", "b", "KL a - KL b", "low", "high", "share a better", f"(>= {n}) KL a - KL b", "low", "high",
              "share a better"]
    rows: list[Row] = []
    for i, p in enumerate(result["pairs"]):
        k = f"pairs/{i}"
        rows.append(({}, [_text(p["a"]), _text(p["b"]), _number(f"{k}/kl_diff", p["kl_diff"]),
                          *_interval(f"{k}/ci", p["ci"]), _number(f"{k}/p_a_better", p["p_a_better"], 4),
                          _number(f"{k}/kl_diff_min_votes", p["kl_diff_min_votes"]),
                          *_interval(f"{k}/ci_min_votes", p["ci_min_votes"]),
                          _number(f"{k}/p_a_better_min_votes", p["p_a_better_min_votes"], 4)]))
    return _table("paired bootstrap: each pair of sets on the same resamples (a better: a lower KL)", header, rows,
                  "pairs")


def _class_kl(result: dict) -> str:
    rows = [({}, [_text(name), *(_number(f"sets/{name}/class_kl/{c}", s["class_kl"][c]) for c in SUBMISSION_CLASSES),
                  _number(f"sets/{name}/kl", s["kl"])]) for name, s in result["sets"].items()]
    return _table("each class's additive share of the KL (mean over rows of y log(y / p) of the class; they sum to "
                  "the KL)", ["set", *SUBMISSION_CLASSES, "KL"], rows, "class_kl")


def _folds(result: dict) -> str:
    n = result["min_votes"]
    rows = [({}, [_text(name), _text(f), _number(f"sets/{name}/kl_by_fold/{f}/rows", v["rows"]),
                  _number(f"sets/{name}/kl_by_fold/{f}/kl", v["kl"]),
                  _number(f"sets/{name}/kl_by_fold/{f}/rows_min_votes", v["rows_min_votes"]),
                  _number(f"sets/{name}/kl_by_fold/{f}/kl_min_votes", v["kl_min_votes"])])
            for name, s in result["sets"].items() for f, v in s["kl_by_fold"].items()]
    if not rows:
        return "<p>The table has no <code>fold</code> column: no KL per fold.</p>"
    return _table("KL per fold", ["set", "fold", "rows", "KL", f"rows >= {n} votes", f"KL >= {n}"], rows, "folds")


def _buckets(result: dict) -> str:
    names = result["vote_buckets"]
    rows: list[Row] = []
    for name, s in result["sets"].items():
        for what in ("rows", "kl"):
            rows.append(({}, [_text(name), _text(what), *(_number(f"sets/{name}/vote_buckets/{b}/{what}",
                                                                  s["vote_buckets"][b][what]) for b in names)]))
    return _table("KL and rows by the row's total votes", ["set", "", *names], rows, "vote_buckets")


def _calibration(result: dict) -> str:
    ece = [({}, [_text(name), *(_number(f"sets/{name}/calibration/{c}/ece", s["calibration"][c]["ece"])
                                for c in SUBMISSION_CLASSES)]) for name, s in result["sets"].items()]
    edges = result["calibration_bins"]
    bins: list[Row] = []
    for name, s in result["sets"].items():
        for c in SUBMISSION_CLASSES:
            k = f"sets/{name}/calibration/{c}"
            for b in range(len(edges) - 1):
                cal = s["calibration"][c]
                bins.append(({}, [_text(name), _text(c), _number(f"calibration_bins/{b}", edges[b], 2),
                                  _number(f"calibration_bins/{b + 1}", edges[b + 1], 2),
                                  _number(f"{k}/count/{b}", cal["count"][b]),
                                  _number(f"{k}/mean_pred/{b}", cal["mean_pred"][b], 4),
                                  _number(f"{k}/mean_frac/{b}", cal["mean_frac"][b], 4)]))
    return (_table("expected calibration error per class (sum over bins of rows / N x |mean predicted - mean vote "
                   "fraction|)", ["set", *SUBMISSION_CLASSES], ece, "ece")
            + _table("calibration bins (a bin holds from <= p < to; the last also p = 1)",
                     ["set", "class", "from", "to", "rows", "mean predicted", "mean vote fraction"], bins,
                     "calibration"))


def _confusion(result: dict) -> str:
    parts = []
    for i, (name, s) in enumerate(result["sets"].items()):
        k = f"sets/{name}/confusion"
        rows = [({}, [_text(c), *(_number(f"{k}/counts/{r}/{j}", s["confusion"]["counts"][r][j])
                                  for j in range(len(SUBMISSION_CLASSES))),
                      *(_number(f"{k}/normalised/{r}/{j}", s["confusion"]["normalised"][r][j], 3)
                        for j in range(len(SUBMISSION_CLASSES)))])
                for r, c in enumerate(SUBMISSION_CLASSES)]
        header = ["consensus \\ predicted", *SUBMISSION_CLASSES, *(f"{c} share" for c in SUBMISSION_CLASSES)]
        parts.append(_table(f"{name}: rows by consensus class (the most voted; ties: the first column) and predicted "
                            f"class (the most probable): counts, then shares of the consensus row", header, rows,
                            f"confusion-{i}"))
    return "\n".join(parts)


def _worst(result: dict) -> str:
    parts = []
    for i, (name, s) in enumerate(result["sets"].items()):
        if not s["worst_rows"]:
            continue
        rows: list[Row] = []
        for j, w in enumerate(s["worst_rows"]):
            k = f"sets/{name}/worst_rows/{j}"
            rows.append(({}, [_number(f"{k}/label_id", w["label_id"]), _number(f"{k}/eeg_id", w["eeg_id"]),
                              _number(f"{k}/kl", w["kl"], 4),
                              *(_number(f"{k}/votes/{c}", w["votes"][c]) for c in SUBMISSION_CLASSES),
                              *(_number(f"{k}/probabilities/{c}", w["probabilities"][c], 3)
                                for c in SUBMISSION_CLASSES)]))
        header = ["label_id", "eeg_id", "KL", *(f"{c} votes" for c in SUBMISSION_CLASSES), *SUBMISSION_CLASSES]
        parts.append(_table(f"{name}: the {len(rows)} rows of highest KL", header, rows, f"worst-{i}")
                     + f"<p>Draw them (DATA: the competition folder, MANIFEST: the set's models):<br>"
                       f"<code>{html.escape(s['report_command'])}</code></p>")
    return "\n".join(parts)


def evaluation_page(result: dict, figures: Mapping[str, bytes] | None) -> str:
    """The page of an evaluation `result` (the JSON's dict); `figures`: {name in FIGURES: PNG bytes}, or None."""
    title = f"hms_infer evaluate: {result['table']}"
    totals = ", ".join(f"{html.escape(name)} {_span(f'rows_total/{name}', n)}"
                       for name, n in result["rows_total"].items())
    level = result["ci_percentiles"]
    intro = (f"<h1>{html.escape(title)}</h1><p>{_span('rows_common', result['rows_common'])} rows that every set "
             f"predicted (rows per set: {totals}; the table has {_span('rows_table', result['rows_table'])}). "
             f"Intervals: the {_span('ci_percentiles/0', level[0])}-{_span('ci_percentiles/1', level[1])} percentiles "
             f"of {_span('bootstrap', result['bootstrap'])} resamples of the "
             f"{_span('groups_count', result['groups_count'])} {html.escape(result['groups'])} groups (seed "
             f"{_span('bootstrap_seed', result['bootstrap_seed'])}); many votes: at least "
             f"{_span('min_votes', result['min_votes'])}. Computed in {_span('seconds', result['seconds'])} s.</p>")
    body = [intro, "" if figures is not None else f'<p class="note">{NO_FIGURES}</p>',
            "<h2>Scores and intervals</h2>", _summary(result), _figure(figures, "intervals"), _pairs(result),
            "<h2>Where the KL comes from</h2>", _class_kl(result), _folds(result),
            _figure(figures, "vote_buckets"), _buckets(result),
            "<h2>Calibration</h2>", _figure(figures, "reliability"), _calibration(result),
            "<h2>Confusion</h2>", _figure(figures, "confusion"), _confusion(result),
            "<h2>Worst rows</h2>", _worst(result)]
    return _document(title, "\n".join(part for part in body if part))
