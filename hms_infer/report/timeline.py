"""Whole recordings drawn: the six probabilities along a recording, the experts' labelled windows, the input quality.

`draw_timeline` draws one recording's result (`hms_infer.timeline.RecordingResult`); `write_recording_page` writes
its PNG and self-contained page (with `--at`, the report's figure of that window); `index_page` lists the
recordings. As in `pages`, every number a page shows is also in a table cell's `data-value`.
"""
from __future__ import annotations

import base64
import html
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..constants import (
    EEG_FS, EEG_WINDOW, REPORT_DPI, SPECT_FRAMES, SUBMISSION_CLASSES, TIMELINE_FIGSIZE, TIMELINE_STRIDE_S,
    VOTE_COLUMNS,
)
from ..data import Competition
from ..ensemble import Ensemble
from ..files import atomic_path, write_text_atomic
from ..timeline import QUALITY_COLUMNS, SKIPPED, Recording, RecordingResult, recording_timeline
from .analysis import Report, RowReport, analyse, row_inputs
from .drawing import draw, png_bytes, row_title, show_inline_in_ipython
from .pages import _SORT, _cell, _document, _probability_rows, _table, row_sections

CLASS_COLOURS = ("#d62728", "#ff7f0e", "#bcbd22", "#2ca02c", "#17becf", "#9e9e9e")  # SUBMISSION_CLASSES order
_WINDOW_S = EEG_WINDOW / EEG_FS
_MAX_KL_TEXTS = 30  # more labelled windows than this: their KL in the table only
_PICK = """const img = document.getElementById("timeline");
const rows = Array.from(document.querySelectorAll("#windows tbody tr"));
img.addEventListener("click", e => {  // the window nearest to the clicked time, marked in the table of windows
  const box = img.getBoundingClientRect(), d = img.dataset, f = (e.clientX - box.left) / box.width;
  const t = Number(d.t0) + (f - d.x0) / (d.x1 - d.x0) * (d.t1 - d.t0);
  let best = rows[0];
  for (const r of rows) if (Math.abs(r.dataset.offset - t) < Math.abs(best.dataset.offset - t)) best = r;
  rows.forEach(r => r.classList.remove("picked"));
  if (!best) return;
  best.classList.add("picked");
  best.scrollIntoView({block: "center"});
  document.getElementById("picked").textContent = `clicked ${t.toFixed(1)} s: the window at ${best.dataset.offset} s`;
});"""


def title(summary: dict, stride: float) -> str:
    """eeg_id, spectrogram_id, length, windows, stride, shift and status of a recording."""
    what = f"eeg_id {summary['eeg_id']} · spectrogram_id {summary['spectrogram_id']}"
    if summary["length_s"] is not None:
        what += f" · {summary['length_s']:g} s"
    if summary["shift_s"] is None:
        what += " · test split: one window, the row's own"
    else:
        what += f" · {summary['windows']} windows every {stride:g} s · shift {summary['shift_s']:g} s"
    return what + ("" if summary["status"] == "ok" else f" · {summary['status'].upper()}")


def _stacked(ax, x: np.ndarray, probs: np.ndarray) -> None:
    """(W,) offsets, (W, 6) probabilities as stacked areas; one window as a stacked bar over its 50 s."""
    if len(x) > 1:
        ax.stackplot(x, probs.T, colors=CLASS_COLOURS, labels=SUBMISSION_CLASSES, linewidth=0)
        margin = (x[-1] - x[0]) / 100
        ax.set_xlim(x[0] - margin, x[-1] + margin)
    elif len(x) == 1:
        bottom = 0.0
        for p, c, name in zip(probs[0], CLASS_COLOURS, SUBMISSION_CLASSES):
            ax.bar(x[0], p, bottom=bottom, width=_WINDOW_S, align="edge", color=c, label=name, linewidth=0)
            bottom += p
        ax.set_xlim(x[0] - 5, x[0] + _WINDOW_S + 5)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability (blend)")


def _labels(ax, votes_ax, labels: Sequence[dict], span: float) -> None:
    """Markers at the labelled offsets; below, each label row's vote distribution as a stacked bar, its KL above."""
    offsets = np.array([lab["offset_s"] for lab in labels])
    ax.vlines(offsets, 0, 1, colors="k", linewidth=0.7, linestyles=":")
    ax.plot(offsets, np.ones(len(offsets)), linestyle="none", marker="v", color="k", markersize=7, clip_on=False,
            gid="labelled-windows", label="labelled windows")
    same: dict[float, list[dict]] = {}
    for lab in labels:
        same.setdefault(lab["offset_s"], []).append(lab)
    distinct = np.array(sorted(same))
    gap = np.diff(distinct).min() if len(distinct) > 1 else span
    width = max(min(0.8 * gap, span / 60), span / 2000)
    # (left edge, width, label) of each label row's bar: the rows at one offset side by side
    bars = [(o - width / 2 + j * (width / len(same[o])), width / len(same[o]), lab)
            for o in distinct.tolist() for j, lab in enumerate(same[o])]
    voted = [(x, w, lab["votes"]) for x, w, lab in bars if lab["votes"] is not None]
    if voted:
        xs, ws, votes = (np.array(v, dtype=np.float64) for v in zip(*voted))  # (B,), (B,), (B, 6)
        bottoms = np.concatenate([np.zeros((len(votes), 1)), np.cumsum(votes, axis=1)[:, :-1]], axis=1)
        for k, c in enumerate(CLASS_COLOURS):
            votes_ax.bar(xs, votes[:, k], bottom=bottoms[:, k], width=ws, align="edge", color=c, linewidth=0)
    if len(labels) <= _MAX_KL_TEXTS:
        for x, w, lab in bars:
            if lab["kl"] is not None:
                votes_ax.text(x + w / 2, 1.03, f"{lab['kl']:.2f}", ha="center", va="bottom", fontsize=7,
                              rotation=90 if len(labels) > 8 else 0)
    votes_ax.set_ylim(0, 1)
    votes_ax.set_ylabel("expert votes\n(KL above)", fontsize=8)


def _quality(ax, x: np.ndarray, frame: pd.DataFrame) -> None:
    """NaN share and spectrogram padding (share of frames) on the left axis, flat channels on the right."""
    step = "mid" if len(x) > 1 else None
    xs = x if len(x) > 1 else np.array([x[0], x[0] + _WINDOW_S])
    rep = (lambda v: v) if len(x) > 1 else (lambda v: np.repeat(v, 2))
    padded = rep(frame[QUALITY_COLUMNS[2]].to_numpy() / SPECT_FRAMES)
    ax.fill_between(xs, 0, padded, step=step, color="#f5c542", alpha=0.6, linewidth=0,
                    label="spectrogram padding (share)")
    ax.plot(xs, rep(frame[QUALITY_COLUMNS[0]].to_numpy()), color="#333333", lw=1.2, drawstyle="steps-mid",
            label="EEG NaN share")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share", fontsize=8)
    flat = ax.twinx()
    channels = rep(frame[QUALITY_COLUMNS[1]].to_numpy())
    flat.plot(xs, channels, color="#9467bd", lw=1.2, drawstyle="steps-mid", label="flat channels")
    flat.set_ylim(-0.2, max(4, int(channels.max(initial=0)) + 1))
    flat.yaxis.get_major_locator().set_params(integer=True)
    flat.set_ylabel("flat channels (of 19)", fontsize=8, color="#9467bd")
    handles = ax.get_legend_handles_labels()
    more = flat.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left", bbox_to_anchor=(1.07, 1), fontsize=8)


def draw_timeline(result: RecordingResult, stride: float = TIMELINE_STRIDE_S, at: float | None = None) -> Figure:
    """One recording's figure (TIMELINE_FIGSIZE at REPORT_DPI, Agg canvas): the six probabilities along the
    recording as stacked areas (x: each window's EEG offset, its 50 s start there), the labelled windows' markers
    and vote distributions with the model's KL, the input quality along time, `at` as a vertical line."""
    summary, frame = result.summary, result.frame
    fig = Figure(figsize=TIMELINE_FIGSIZE, dpi=REPORT_DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(3, 1, height_ratios=(3, 1.2, 1.2), hspace=0.18, left=0.06, right=0.8, top=0.9,
                            bottom=0.08)
    ax = fig.add_subplot(grid[0])
    votes_ax = fig.add_subplot(grid[1], sharex=ax)
    quality_ax = fig.add_subplot(grid[2], sharex=ax)
    x = frame["offset_s"].to_numpy()
    _stacked(ax, x, frame[list(VOTE_COLUMNS)].to_numpy())
    lo, hi = ax.get_xlim()
    if summary["labels"]:
        _labels(ax, votes_ax, summary["labels"], max(hi - lo, 1.0))
    else:
        votes_ax.text(0.5, 0.5, "no labelled windows" + (" (test split)" if summary["shift_s"] is None else ""),
                      transform=votes_ax.transAxes, ha="center", va="center", fontsize=9)
        votes_ax.set_yticks([])
    _quality(quality_ax, x, frame)
    if at is not None:
        for a in (ax, votes_ax, quality_ax):
            a.axvline(at, color="k", lw=1.6)
        ax.text(at, 1.08, f"--at {at:g} s", ha="center", fontsize=8, transform=ax.get_xaxis_transform())
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    for a in (ax, votes_ax):
        a.tick_params(labelbottom=False)
    quality_ax.set_xlabel("offset of the 50-s window in the recording (s)")
    fig.suptitle(title(summary, stride), fontsize=11)
    return fig


def zoom(ens: Ensemble, comp: Competition, rec: Recording, at: float) -> tuple[Report, RowReport, bytes, str]:
    """The report's figure and numbers of the window at `at` s (train: a labelled window there is its label row,
    with its votes; test: the row's own window), in a batch of one (a GPU pads a batch to its size)."""
    if rec.shift_s is None:
        table = comp.table[comp.table["eeg_id"] == rec.eeg_id].iloc[:1]
        window = Competition(comp.root, comp.split, table=table, table_name=comp.table_name)
    else:
        label = next((lab for lab in rec.labels if lab.offset_s == at), None)
        if label is not None:
            window = Competition(comp.root, comp.split, table=comp.table.loc[[label.row]], table_name=comp.table_name)
        else:
            table = pd.DataFrame([{"eeg_id": rec.eeg_id, "spectrogram_id": rec.spectrogram_id, "label_id": 0,
                                   "eeg_label_offset_seconds": at,
                                   "spectrogram_label_offset_seconds": at + rec.shift_s}])
            window = Competition(comp.root, comp.split, table=table, table_name="the timeline's window")
            window.rows = [replace(window.rows[0], key_name="eeg_id", key=rec.eeg_id)]
    report = analyse(ens, window, [0], 1, 0, progress=False)
    r = report.rows[0]
    name = row_title(report, r)
    return report, r, png_bytes(draw(report, r, row_inputs(ens, window, 0))), name


def _int_cell(col: str, value: int | None) -> str:
    shown = "-" if value is None else str(int(value))
    return f'<td data-col="{col}" data-value="{"" if value is None else int(value)}">{shown}</td>'


def _number(col: str, value: float | None, fmt: str = ".4f") -> str:
    if value is None:
        return f'<td data-col="{col}" data-value="">-</td>'
    return _cell(col, float(value), format(float(value), fmt))


def _summary_cells(s: dict, stride: float) -> list[str]:
    return [_cell("spectrogram_id", str(s["spectrogram_id"])), _cell("status", s["status"]),
            _number("length_s", s["length_s"], "g"), _int_cell("windows", s["windows"]),
            _number("stride_s", stride if s["shift_s"] is not None else None, "g"),
            _number("shift_s", s["shift_s"], "g"), _int_cell("padded_windows", s["padded_windows"]),
            _int_cell("labelled_windows", len(s["labels"])), _number("mean_kl", s["mean_kl"]),
            _number("max_kl", s["max_kl"]), _int_cell("max_kl_label_id", s["max_kl_label_id"]),
            _number("max_kl_offset_s", s["max_kl_offset_s"], "g")]


SUMMARY_HEADER = ["spectrogram_id", "status", "length (s)", "windows", "stride (s)", "shift (s)",
                  "windows with spectrogram padding", "labelled windows", "mean KL at labelled windows",
                  "largest KL", "at label_id", "at offset (s)"]


def recording_page(result: RecordingResult, png: bytes, geometry: dict[str, float], stride: float,
                   zoomed: tuple[Report, RowReport, bytes, str] | None = None, at: float | None = None) -> str:
    """The page of one recording: summary, the figure (click: the nearest window in the table), the labelled
    windows (votes, the model's probabilities, KL), the `--at` window's report, every window's numbers."""
    s, frame = result.summary, result.frame
    name = title(s, stride)
    parts = [f'<p><a href="index.html">all recordings</a></p><h1>{html.escape(name)}</h1>',
             "<style>tr.picked td{background:#fde68a}</style>"]
    if s["notes"]:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in s["notes"]) + "</ul>")
    parts.append(_table("recording", ["eeg_id", *SUMMARY_HEADER],
                        [({"data-eeg-id": str(s["eeg_id"])}, [_cell("eeg_id", str(s["eeg_id"])),
                                                              *_summary_cells(s, stride)])], "summary"))
    b64 = base64.b64encode(png).decode("ascii")
    data = "".join(f' data-{k}="{v!r}"' for k, v in geometry.items())
    parts.append(f'<img id="timeline" alt="{html.escape(name)}"{data} src="data:image/png;base64,{b64}">'
                 '<p id="picked">Click the timeline: the window nearest to that time is marked in the table of '
                 'windows below.</p>')
    if s["labels"]:
        rows = []
        for lab in s["labels"]:
            cells = [_cell("label_id", str(lab["label_id"])), _number("offset_s", lab["offset_s"], "g")]
            for prefix, values in (("votes", lab["votes"]), ("model", lab["probs"])):
                values = values if values is not None else [None] * len(SUBMISSION_CLASSES)
                cells += [_number(f"{prefix}:{c}", v) for c, v in zip(SUBMISSION_CLASSES, values)]
            cells.append(_number("kl", lab["kl"], ".6f"))
            rows.append(({"data-label-id": str(lab["label_id"]), "data-offset": repr(float(lab["offset_s"]))}, cells))
        header = ["label_id", "offset (s)", *(f"votes: {c}" for c in SUBMISSION_CLASSES),
                  *(f"model: {c}" for c in SUBMISSION_CLASSES), "KL"]
        parts.append(_table("the experts' labelled windows: vote distribution, the model's probabilities at the "
                            "window, KL divergence", header, rows, "labels", sortable=True))
    if zoomed is not None:
        report, r, zoom_png, zoom_title = zoomed
        parts.append(f"<h2>The window at {at:g} s (--at): what the models saw</h2>")
        parts += row_sections(report, r, zoom_title, zoom_png)
    names = [({"id": f"w{k}", "data-offset": repr(float(o))},
              [_number("offset_s", o, "g")]) for k, o in enumerate(frame["offset_s"].tolist())]
    rows = _probability_rows(names, frame[list(VOTE_COLUMNS)].to_numpy())
    for (_, cells), nan, flat, padded in zip(rows, *(frame[c].tolist() for c in QUALITY_COLUMNS)):
        cells += [_number(QUALITY_COLUMNS[0], nan), _int_cell(QUALITY_COLUMNS[1], flat),
                  _int_cell(QUALITY_COLUMNS[2], padded)]
    parts.append(_table("every window: the six probabilities, the EEG's NaN share and flat channels, the "
                        "spectrogram's NaN-padded frames", ["offset (s)", *SUBMISSION_CLASSES, "EEG NaN share",
                                                            "flat channels", "spectrogram padded frames"],
                        rows, "windows", sortable=True))
    return _document(name, "\n".join(parts), _SORT + "\n" + _PICK)


def geometry(fig: Figure) -> dict[str, float]:
    """Where the time axis lies in the figure (x0, x1: fractions of its width) and its range (t0, t1 s)."""
    ax = fig.axes[0]
    box = ax.get_position()
    t0, t1 = ax.get_xlim()
    return {"x0": float(box.x0), "x1": float(box.x1), "t0": float(t0), "t1": float(t1)}


def page_files(out: Path, eeg_id: int) -> tuple[Path, Path]:
    """A recording's PNG and page."""
    return out / f"{eeg_id}.png", out / f"{eeg_id}.html"


def write_recording_page(out: Path, ens: Ensemble, comp: Competition, result: RecordingResult,
                         stride: float = TIMELINE_STRIDE_S, at: float | None = None) -> bool:
    """Write a recording's PNG and page atomically (none for a skipped recording: False). `at`: the zoom's window
    (on the test split, the recording's one window)."""
    s = result.summary
    if SKIPPED in s["status"]:
        return False
    shown_at = at if at is not None and (s["length_s"] is None or at <= s["length_s"]) else None
    if shown_at is not None and s["shift_s"] is None:  # test split: the one window, the row's own
        shown_at = float(result.frame["offset_s"].iloc[0])
    if at is not None and shown_at is None:
        s["notes"].append(f"--at {at:g} s is past the end of the recording ({s['length_s']:g} s): no zoom")
    fig = draw_timeline(result, stride, shown_at)
    png = png_bytes(fig)
    zoomed = None if shown_at is None else zoom(ens, comp, result.recording, shown_at)
    png_path, page_path = page_files(out, s["eeg_id"])
    with atomic_path(png_path) as tmp:
        tmp.write_bytes(png)
    write_text_atomic(page_path, recording_page(result, png, geometry(fig), stride, zoomed, shown_at))
    return True


def index_page(summaries: Sequence[dict], stride: float, about: str) -> str:
    """Every recording: length, windows, mean and largest KL at its labelled windows (which), status and notes;
    sortable; each links to its page (a skipped recording has none)."""
    rows = []
    for s in summaries:
        skipped = SKIPPED in s["status"]
        link = (_cell("eeg_id", str(s["eeg_id"])) if skipped else
                f'<td data-col="eeg_id" data-value="{s["eeg_id"]}"><a href="{s["eeg_id"]}.html">{s["eeg_id"]}</a></td>')
        rows.append(({"data-eeg-id": str(s["eeg_id"]), **({} if skipped else {"data-page": f"{s['eeg_id']}.html"})},
                     [link, *_summary_cells(s, stride), _cell("notes", "; ".join(s["notes"]))]))
    name = f"hms_infer timeline: {len(summaries)} recordings"
    body = (f"<h1>{html.escape(name)}</h1><p>{html.escape(about)} Click a column header to sort; an eeg_id opens its "
            f"page.</p>\n" + _table("recordings", ["eeg_id", *SUMMARY_HEADER, "notes"], rows, "recordings",
                                    sortable=True))
    return _document(name, body, _SORT)


def timeline_figure(ensemble: Ensemble, competition: Competition, eeg_id: int, stride: float = TIMELINE_STRIDE_S,
                    at: float | None = None, batch_size: int | str = "auto", num_workers: int | str = 0) -> Figure:
    """The timeline figure of recording `eeg_id` of `competition` (`draw_timeline`); a notebook cell returning it
    shows it inline. `hms_infer.timeline.timeline_frame` gives the same numbers as a DataFrame."""
    result = recording_timeline(ensemble, competition, eeg_id, stride, False, batch_size, num_workers)
    show_inline_in_ipython()
    return draw_timeline(result, stride, at)
