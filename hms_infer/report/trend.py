"""A clinical recording's trends drawn and paged: the six probabilities along the whole recording, the seizure
burden per hour, the input quality, the file's annotations; the recording's page and the index of recordings.

`draw_trend` draws one recording's window table (`hms_infer.recordings.burden` gives the summary rows it shows);
`recording_page` is its self-contained page, `index_page` the list of recordings, `page_name` a recording's page
file. As in `pages`, every number a page shows is also in a table cell's `data-value`; the page's windows table
lists at most TREND_MAX_WINDOW_ROWS windows (evenly thinned: timeline.parquet has them all).
"""
from __future__ import annotations

import base64
import hashlib
import html
import re
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..constants import (
    REPORT_DPI, SUBMISSION_CLASSES, TIMELINE_FIGSIZE, TREND_MAX_ANNOTATION_TEXTS, TREND_MAX_WINDOW_ROWS, VOTE_COLUMNS,
)
from ..recordings.burden import HALF_WINDOW_S, SUMMARY_COLUMNS
from ..timeline import RECORDING_QUALITY_COLUMNS as QUALITY
from .analysis import Report, RowReport
from .drawing import png_bytes
from .pages import _SORT, _cell, _document, _probability_rows, _table, row_sections
from .timeline import CLASS_COLOURS, _stacked, geometry

if TYPE_CHECKING:
    from ..recordings.reader import Annotation

# png_bytes and geometry too: the recording task draws through this module alone
__all__ = ["draw_trend", "recording_page", "index_page", "page_name", "png_bytes", "geometry"]

_TEXT_CHARS = 32  # an annotation's text on the figure is cut to this many characters
_FORMATS = {"covered_min": ".1f", "length_s": "g", "onset_s": "g", "duration_s": "g",
            "seizure_burden_min_per_h": ".2f", "seizure_min": ".1f",
            "threshold": "g"}
_PICK = """const img = document.getElementById("trend");
const rows = Array.from(document.querySelectorAll("#windows tbody tr"));
img.addEventListener("click", e => {  // the window whose centre is nearest to the clicked time, marked in the table
  const box = img.getBoundingClientRect(), d = img.dataset, f = (e.clientX - box.left) / box.width;
  const t = Number(d.t0) + (f - d.x0) / (d.x1 - d.x0) * (d.t1 - d.t0), start = t - Number(d.half);
  let best = rows[0];
  for (const r of rows) if (Math.abs(r.dataset.start - start) < Math.abs(best.dataset.start - start)) best = r;
  rows.forEach(r => r.classList.remove("picked"));
  if (!best) return;
  best.classList.add("picked");
  best.scrollIntoView({block: "center"});
  document.getElementById("picked").textContent =
    `clicked ${t.toFixed(0)} s on the file clock: the window starting at ${best.dataset.start} s`;
});"""


def duration(seconds: float) -> str:
    """'24 h 00 min', '12 min 30 s', '45 s'."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def tick_step(span_s: float) -> float:
    """Seconds between time ticks: 10 min for recordings under 2 h, 6 h over 24 h, else an hour."""
    return 600.0 if span_s < 7200 else 21600.0 if span_s > 86400 else 3600.0


def tick_labels(ticks: Sequence[float], start: datetime | None) -> list[str]:
    """File-clock ticks (s) -> 'HH:MM' on the wall clock from `start` (the date under the first tick and under
    the first of each new day), else hours (and minutes) from the start: '0 h', '10 min', '1 h 30'."""
    labels, day = [], None
    for t in ticks:
        if start is None:
            h, m = divmod(int(round(t / 60)), 60)
            labels.append(f"{h} h" if m == 0 else f"{h} h {m:02d}" if h else f"{m} min")
            continue
        clock = start + timedelta(seconds=float(t))
        labels.append(clock.strftime("%H:%M") + ("" if clock.date() == day else clock.strftime("\n%Y-%m-%d")))
        day = clock.date()
    return labels


def segments(frame: pd.DataFrame) -> list[tuple[int, np.ndarray]]:
    """(segment index, positions of its windows in the frame, in time order) of each segment, in time order."""
    seg = frame["segment"].to_numpy()
    start_s = frame["start_s"].to_numpy(dtype=np.float64)
    parts = [(int(s), np.flatnonzero(seg == s)) for s in pd.unique(seg)]
    parts = [(s, rows[np.argsort(start_s[rows], kind="stable")]) for s, rows in parts]
    return sorted(parts, key=lambda p: start_s[p[1][0]])


def gaps(frame: pd.DataFrame) -> list[tuple[float, float]]:
    """(from, to) on the file clock between consecutive segments: the end of a segment's last window to the next
    segment's first sample; adjacent segments (no time between them) give none."""
    start_s = frame["start_s"].to_numpy(dtype=np.float64)
    first = start_s - frame["offset_s"].to_numpy(dtype=np.float64)
    parts = segments(frame)
    out = []
    for (_, a), (_, b) in zip(parts, parts[1:]):
        lo, hi = start_s[a[-1]] + 2 * HALF_WINDOW_S, float(first[b].min())
        if hi > lo:
            out.append((float(lo), hi))
    return out


def _with_breaks(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Window centres and a column's values, segment after segment with a NaN between them (a line never joins
    two segments)."""
    start_s = frame["start_s"].to_numpy(dtype=np.float64)
    values = frame[column].to_numpy(dtype=np.float64)
    xs, ys = [np.zeros(0)], [np.zeros(0)]
    for _, rows in segments(frame):
        xs += [[np.nan], start_s[rows] + HALF_WINDOW_S]
        ys += [[np.nan], values[rows]]
    return np.concatenate(xs)[1:], np.concatenate(ys)[1:]


def _annotations(ax, annotations: Sequence[Annotation]) -> None:
    """Thin lines at the onsets (spans for durations > 0) and, up to TREND_MAX_ANNOTATION_TEXTS, their texts."""
    if not annotations:
        return
    where = ax.get_xaxis_transform()
    onsets = np.array([a.onset_s for a in annotations], dtype=np.float64)
    ax.vlines(onsets, 0, 1, colors="k", linewidth=0.6, transform=where, gid="annotations")
    for a in annotations:
        if a.duration_s > 0:
            ax.axvspan(a.onset_s, a.onset_s + a.duration_s, color="k", alpha=0.12, linewidth=0)
    if len(annotations) > TREND_MAX_ANNOTATION_TEXTS:
        ax.text(0.995, 0.98, f"{len(annotations)} annotations: lines only (texts above "
                f"{TREND_MAX_ANNOTATION_TEXTS})", transform=ax.transAxes, ha="right", va="top", fontsize=8,
                bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0})
        return
    for a in annotations:
        text = a.description if len(a.description) <= _TEXT_CHARS else a.description[:_TEXT_CHARS - 1] + "…"
        ax.text(a.onset_s, 0.97, text, rotation=90, ha="right", va="top", fontsize=7, transform=where,
                clip_on=True, bbox={"facecolor": "white", "alpha": 0.6, "linewidth": 0, "pad": 1})


def _burden(ax, table: pd.DataFrame) -> None:
    """Each hour's seizure burden (min/h) as a bar over its hour of the file clock, its value above (up to 48
    hours; none on an empty bar)."""
    hours = table[table["scope"] == "hour"]
    h = hours["hour"].to_numpy(dtype=np.float64)
    burden = hours["seizure_burden_min_per_h"].to_numpy(dtype=np.float64)
    ax.bar(h * 3600, np.nan_to_num(burden), width=3600, align="edge", color=CLASS_COLOURS[0], alpha=0.85,
           edgecolor="white", linewidth=0.8, gid="burden")
    if len(h) <= 48:
        for x, b in zip(h, burden):
            if b > 0:
                ax.text(x * 3600 + 1800, min(b, 52) + 1.5, f"{b:.1f}", ha="center", va="bottom", fontsize=7,
                        clip_on=True)
    ax.set_ylim(0, 60)
    ax.set_yticks([0, 15, 30, 45, 60])
    threshold = table["threshold"].iloc[0] if len(table) else float("nan")
    ax.set_ylabel(f"seizure burden\n(min/h, p > {threshold:g})", fontsize=8)


def _quality(ax, frame: pd.DataFrame) -> None:
    """The EEG's NaN share on the left axis; flat and missing channels on the right; segment by segment."""
    ax.plot(*_with_breaks(frame, QUALITY[0]), color="#333333", lw=1.2, label="EEG NaN share")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share", fontsize=8)
    counts = ax.twinx()
    top = 4
    for column, colour, label in ((QUALITY[1], "#9467bd", "flat channels"),
                                  (QUALITY[3], "#8c564b", "missing channels")):
        if column in frame:
            x, y = _with_breaks(frame, column)
            counts.plot(x, y, color=colour, lw=1.2, label=label)
            top = max(top, int(np.nanmax(y, initial=0)) + 1)
    counts.set_ylim(-0.2, top)
    counts.yaxis.get_major_locator().set_params(integer=True)
    counts.set_ylabel("channels (of 19)", fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = counts.get_legend_handles_labels()
    ax.legend(handles + more, labels + more_labels, loc="upper left", bbox_to_anchor=(1.05, 1), fontsize=8)


def draw_trend(frame: pd.DataFrame, table: pd.DataFrame, stride: float, annotations: Sequence[Annotation] = (),
               start: datetime | None = None, at: float | None = None, title: str = "") -> Figure:
    """One recording's figure (TIMELINE_FIGSIZE at REPORT_DPI, Agg canvas), x: the file clock (s), each window at
    its centre (start_s + 25): the six probabilities as stacked areas, segment by segment (a gap stays empty and
    shaded), with the annotations; the seizure burden per hour (`table`'s hour rows, `burden_table`); the input
    quality. Ticks every hour (`tick_step`), labelled with the wall clock from `start`, else hours. `at`: the start
    of a window (file clock), marked at its centre."""
    fig = Figure(figsize=TIMELINE_FIGSIZE, dpi=REPORT_DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(3, 1, height_ratios=(3, 1.3, 1.2), hspace=0.12, left=0.06, right=0.8, top=0.9,
                            bottom=0.1)
    ax = fig.add_subplot(grid[0])
    burden_ax = fig.add_subplot(grid[1], sharex=ax)
    quality_ax = fig.add_subplot(grid[2], sharex=ax)
    start_s = frame["start_s"].to_numpy(dtype=np.float64)
    probs = frame[list(VOTE_COLUMNS)].to_numpy(dtype=np.float64)
    for _, rows in segments(frame):
        x = start_s[rows] + HALF_WINDOW_S if len(rows) > 1 else start_s[rows]  # one window: a bar over its 50 s
        _stacked(ax, x, probs[rows])
    end = float(start_s.max()) + 2 * HALF_WINDOW_S if len(frame) else 1.0
    for lo, hi in gaps(frame):
        for a in (ax, burden_ax, quality_ax):
            a.axvspan(lo, hi, color="#d0d0d0", alpha=0.7, linewidth=0, zorder=0.5, gid="gap")
        ax.text((lo + hi) / 2, 0.5, f"gap {duration(hi - lo)}", ha="center", va="center", rotation=90, fontsize=8,
                color="#555555", transform=ax.get_xaxis_transform())
    _annotations(ax, annotations)
    _burden(burden_ax, table)
    _quality(quality_ax, frame)
    ticks = np.arange(0.0, end + 1e-9, tick_step(end))
    ax.set_xticks(ticks)
    quality_ax.set_xticklabels(tick_labels(ticks, start), fontsize=8)
    ax.set_xlim(0, end)
    if at is not None:
        for a in (ax, burden_ax, quality_ax):
            a.axvline(at + HALF_WINDOW_S, color="k", lw=1.6)
        ax.text(at + HALF_WINDOW_S, 1.02, f"--at {at:g} s", ha="center", fontsize=8, transform=ax.get_xaxis_transform())
    ax.legend([Patch(color=c) for c in CLASS_COLOURS], SUBMISSION_CLASSES, loc="upper left", bbox_to_anchor=(1.01, 1),
              fontsize=8)
    for a in (ax, burden_ax):
        a.tick_params(labelbottom=False)
    quality_ax.set_xlabel("wall clock (from the file's start date)" if start is not None else
                          "time from the file's first sample (file clock); each window at its centre")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def page_name(recording: str) -> str:
    """A recording's page file: its name with every character but letters, digits, '.', '_' and '-' replaced by
    '_' (no leading dot), plus '.html'; a changed name gets 8 hex digits of its hash, so two names never meet."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", recording)
    safe = "_" + safe[1:] if safe.startswith(".") else safe
    if safe != recording or not safe:
        safe = f"{safe[:150]}-{hashlib.sha1(recording.encode()).hexdigest()[:8]}"
    return f"{safe}.html"


def _value(col: str, value: object) -> str:
    """A summary cell: NA as '-' (data-value ''), ints as ints, floats at full precision (shown by `_FORMATS`)."""
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return f'<td data-col="{col}" data-value="">-</td>'
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return _cell(col, str(value))
    if isinstance(value, (int, np.integer)):
        return f'<td data-col="{col}" data-value="{int(value)}">{int(value)}</td>'
    return _cell(col, float(value), format(float(value), _FORMATS.get(col, ".4f")))


def summary_rows(table: pd.DataFrame) -> list[tuple[dict[str, str], list[str]]]:
    """summary.csv's rows as table rows: one cell per column (`SUMMARY_COLUMNS`)."""
    out = []
    for row in table.to_dict("records"):
        attrs = {"data-scope": str(row["scope"])}
        out.append((attrs, [_value(c, row[c]) for c in SUMMARY_COLUMNS]))
    return out


def thinned(n: int, limit: int = TREND_MAX_WINDOW_ROWS) -> np.ndarray:
    """Positions of at most `limit` of n rows, evenly spread, the first and the last included."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, limit)).astype(np.int64))


def window_rows(frame: pd.DataFrame, positions: np.ndarray, tz: tzinfo | None = None
                ) -> tuple[list[str], list[tuple[dict[str, str], list[str]]]]:
    """The header and rows of the windows table for the frame's rows at `positions`: recording, segment, offset,
    file clock, wall clock (when any window has one; in time zone `tz`, else UTC), six probabilities, quality."""
    part = frame.iloc[positions]
    timed = "time" in frame and bool(frame["time"].notna().any())
    quality = [c for c in QUALITY if c in frame]
    names = []
    for k, row in zip(positions.tolist(), part.to_dict("records")):
        lead = [_cell("recording", str(row["recording"])), _value("segment", int(row["segment"])),
                _cell("offset_s", float(row["offset_s"]), f"{row['offset_s']:g}"),
                _cell("start_s", float(row["start_s"]), f"{row['start_s']:g}")]
        if timed:
            t = row["time"].tz_convert(tz) if pd.notna(row["time"]) and tz is not None else row["time"]
            lead.append(_cell("time", t.isoformat(), t.strftime("%Y-%m-%d %H:%M:%S")) if pd.notna(t)
                        else _value("time", None))
        names.append(({"id": f"w{k}", "data-start": repr(float(row["start_s"]))}, lead))
    rows = _probability_rows(names, part[list(VOTE_COLUMNS)].to_numpy(dtype=np.float64))
    for (_, cells), values in zip(rows, part[quality].to_dict("records")):
        cells += [_value(c, float(values[c]) if c == QUALITY[0] else int(values[c])) for c in quality]
    header = ["recording", "segment", "offset in segment (s)", "file clock (s)", *(["wall clock"] if timed else []),
              *SUBMISSION_CLASSES, *(c.replace("_", " ") for c in quality)]
    return header, rows


def recording_title(name: str, frame: pd.DataFrame, table: pd.DataFrame, length_s: float | None = None) -> str:
    """'rec01.edf · 3 h 00 min · 2 segments · start 2024-01-02T03:04:05+00:00'."""
    if length_s is None:
        length_s = float(frame["start_s"].max()) + 2 * HALF_WINDOW_S if len(frame) else 0.0
    n = int((table["scope"] == "segment").sum())
    clock = table.loc[table["scope"] == "recording", "clock_start"]
    when = f" · start {clock.iloc[0]}" if len(clock) and clock.iloc[0] else " · no start date"
    return f"{name} · {duration(length_s)} · {n} segment{'' if n == 1 else 's'}{when}"


def recording_page(name: str, frame: pd.DataFrame, table: pd.DataFrame, png: bytes, geometry: dict[str, float],
                   steps: Sequence[str], notes: Sequence[str], stride: float,
                   zoomed: tuple[Report, RowReport, bytes, str] | None = None, at: float | None = None,
                   length_s: float | None = None, annotations: Sequence[Annotation] = ()) -> str:
    """The page of one recording: title (file, length: `length_s`, else the windows' span; segments; start),
    notes, what was done to the signals (`steps`), the figure (`draw_trend`'s PNG and `report.timeline.geometry`;
    a click marks the nearest window in the windows table), the summary (`table`: summary.csv's rows of this
    recording), the file's `annotations` (onset on the file clock, duration, text), the `--at` window's report
    (`zoomed`: `report.timeline.zoom`'s tuple), every window's numbers (at most TREND_MAX_WINDOW_ROWS, evenly
    thinned)."""
    heading = recording_title(name, frame, table, length_s)
    parts = [f'<p><a href="index.html">all recordings</a></p><h1>{html.escape(heading)}</h1>',
             "<style>tr.picked td{background:#fde68a}td{white-space:nowrap}</style>"]
    if notes:
        parts.append("<ul id=\"notes\">" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    if steps:
        parts.append("<h2>What was done to the signals</h2><ul id=\"steps\">"
                     + "".join(f"<li>{html.escape(s)}</li>" for s in steps) + "</ul>")
    b64 = base64.b64encode(png).decode("ascii")
    data = "".join(f' data-{k}="{v!r}"' for k, v in {**geometry, "half": HALF_WINDOW_S}.items())
    parts.append(f'<img id="trend" alt="{html.escape(heading)}"{data} src="data:image/png;base64,{b64}">'
                 '<p id="picked">Click the figure: the window nearest to that time is marked in the table of '
                 'windows below.</p>')
    threshold = float(table["threshold"].iloc[0]) if len(table) else float("nan")
    parts.append(_table(f"summary (summary.csv): the whole recording, each segment, each hour of the file clock; "
                        f"windows every {stride:g} s; seizure burden: minutes per hour with p(seizure) > "
                        f"{threshold:g}; top_<class>: share of windows where the class is the most probable",
                        list(SUMMARY_COLUMNS), summary_rows(table), "summary", sortable=True))
    if annotations:
        rows = [({}, [_value("onset_s", float(a.onset_s)), _value("duration_s", float(a.duration_s)),
                      _cell("description", a.description)]) for a in annotations]
        parts.append(_table("the file's annotations (file clock)", ["onset (s)", "duration (s)", "description"], rows,
                            "annotations", sortable=True))
    if zoomed is not None:
        report, r, zoom_png, zoom_title = zoomed
        parts.append(f"<h2>The window at {at:g} s (--at): what the models saw</h2><p id=\"zoom\">"
                     f"{html.escape(zoom_title)}</p>")
        parts += row_sections(report, r, zoom_title, zoom_png)
    positions = thinned(len(frame))
    if len(positions) < len(frame):
        parts.append(f'<p id="thinned">The table lists {len(positions):,} of the {len(frame):,} windows, evenly '
                     f"spread (about one in {len(frame) / len(positions):.1f}); timeline.parquet has every window."
                     "</p>")
    clock = table.loc[table["scope"] == "recording", "clock_start"]
    tz = pd.Timestamp(clock.iloc[0]).tzinfo if len(clock) and clock.iloc[0] else None  # the title's time zone
    header, rows = window_rows(frame, positions, tz)
    parts.append(_table("every window: the six probabilities (blend), the EEG's NaN share, flat channels, the "
                        "spectrogram's padded frames, electrodes missing from the file", header, rows, "windows",
                        sortable=True))
    return _document(heading, "\n".join(parts), _SORT + "\n" + _PICK)


_INDEX_COLUMNS = ("recording", "status", "length_s", "windows", "covered_min", "segments", "clock_start",
                  "seizure_burden_min_per_h", "seizure_min", "max_seizure", "top_class", "notes")
INDEX_HEADER = ["recording", "status", "length (s)", "windows", "covered (min)", "segments", "start",
                "seizure burden (min/h)", "seizure (min)", "largest p(seizure)", "most frequent top class", "notes"]


def _index_row(recording: str, table: pd.DataFrame | None, status: str, notes: Sequence[str],
               length_s: float | None) -> tuple[dict[str, str], list[str]]:
    """A file's row of the index (`_INDEX_COLUMNS`); `table` None: a skipped file (no page)."""
    note = _cell("notes", "; ".join(notes))
    if table is None:
        return ({"data-recording": recording}, [_cell("recording", recording), _cell("status", status),
                                                *(_value(c, None) for c in _INDEX_COLUMNS[2:-1]), note])
    whole = table[table["scope"] == "recording"].iloc[0]
    shares = np.array([whole[f"top_{c}"] for c in SUBMISSION_CLASSES], dtype=np.float64)
    top = SUBMISSION_CLASSES[int(np.argmax(shares))] if np.isfinite(shares).all() else "-"
    page = page_name(recording)
    link = (f'<td class="text" data-col="recording" data-value="{html.escape(recording)}">'
            f'<a href="{html.escape(page)}">{html.escape(recording)}</a></td>')
    cells = [link, _cell("status", status), _value("length_s", length_s), _value("windows", int(whole["windows"])),
             _value("covered_min", float(whole["covered_min"])),
             _value("segments", int((table["scope"] == "segment").sum())), _cell("clock_start", whole["clock_start"]),
             *(_value(c, float(whole[c])) for c in ("seizure_burden_min_per_h", "seizure_min", "max_seizure")),
             _cell("top_class", top), note]
    return {"data-recording": recording, "data-page": page}, cells


def index_page(tables: Sequence[pd.DataFrame], skipped: Sequence[dict], about: str,
               notes: Mapping[str, Sequence[str]] | None = None, lengths: Mapping[str, float] | None = None) -> str:
    """Every file: the recordings of `tables` (each `burden_table`'s rows of one recording; status ok, `notes` and
    `lengths` (s) by recording name where given), then the `skipped` files ({"recording", "status", "notes": the
    reason}) without a page; columns: status, length, windows, covered minutes, segments, start, the whole
    recording's seizure burden, seizure minutes, largest p(seizure), most frequent top class, notes; sortable;
    each name links to its page (`page_name`)."""
    rows = []
    for table in tables:
        name = str(table["recording"].iloc[0])
        rows.append(_index_row(name, table, "ok", (notes or {}).get(name, ()), (lengths or {}).get(name)))
    rows += [_index_row(s["recording"], None, s.get("status", "skipped"), s.get("notes", ()), None) for s in skipped]
    title = f"hms_infer recordings: {len(tables)} recordings" + (f", {len(skipped)} skipped" if skipped else "")
    body = (f"<h1>{html.escape(title)}</h1><p>{html.escape(about)} Click a column header to sort; a file name opens "
            f"its page.</p>\n" + _table("recordings", INDEX_HEADER, rows, "recordings", sortable=True))
    if skipped:
        items = []
        for s in skipped:
            why = "; ".join(s.get("notes", ())) or s.get("status", "skipped")
            items.append(html.escape(why if why.startswith(s["recording"]) else f"{s['recording']}: {why}"))
        body += "\n<h2>Skipped files</h2><ul id=\"skipped\">" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"
    return _document(title, body, _SORT)
