"""Seizure burden and trends of clinical recordings: `recordings.burden` (summary.csv's rows) against hand-computed
tables and an independent recomputation from the window table; `report.trend`'s figure (ticks, gaps never bridged,
annotations) and pages (the summary's numbers in data-value cells, the windows table thinned, names escaped)."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from hms_infer.constants import SUBMISSION_CLASSES, VOTE_COLUMNS
from hms_infer.recordings.burden import SUMMARY_COLUMNS, burden_table, burden_tables, hour_of, recording_start, \
    write_summary
from hms_infer.recordings.reader import Annotation

matplotlib = pytest.importorskip("matplotlib")
from hms_infer.report.trend import (  # noqa: E402
    TREND_MAX_WINDOW_ROWS, draw_trend, geometry, index_page, page_name, png_bytes, recording_page, tick_labels,
    tick_step,
)


BACKGROUND = [0.05, 0.05, 0.05, 0.05, 0.05, 0.75]  # "other" most probable
SEIZURE = [0.9, 0.02, 0.02, 0.02, 0.02, 0.02]
QUALITY = {"eeg_nan_share": 0.0, "flat_channels": 0, "spect_padded_frames": 0, "missing_channels": 2}


def windows(recording: str, segments: list[tuple[float, float]], stride: float = 2.0,
            start: datetime | None = None) -> pd.DataFrame:
    """The window table of a recording: segments as (first sample on the file clock, length) in s; windows of
    50 s every `stride` s from each segment's start; every window BACKGROUND."""
    parts = []
    for k, (first, length) in enumerate(segments):
        offset = np.arange(int((length - 50) // stride) + 1) * stride
        parts.append(pd.DataFrame({"recording": recording, "segment": k, "offset_s": offset,
                                   "start_s": first + offset}))
    frame = pd.concat(parts, ignore_index=True)
    offsets = pd.to_timedelta(frame["start_s"], unit="s")
    frame["time"] = (pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]") if start is None
                     else pd.Timestamp(start).tz_convert("UTC") + offsets)
    frame[list(VOTE_COLUMNS)] = np.tile(BACKGROUND, (len(frame), 1))
    for c, v in QUALITY.items():
        frame[c] = v
    return frame


def seizure_between(frame: pd.DataFrame, lo: float, hi: float) -> pd.DataFrame:
    """SEIZURE for the windows starting in [lo, hi) on the file clock."""
    frame = frame.copy()
    frame.loc[(frame["start_s"] >= lo) & (frame["start_s"] < hi), list(VOTE_COLUMNS)] = SEIZURE
    return frame


def row(table: pd.DataFrame, scope: str, **key) -> pd.Series:
    mine = table[table["scope"] == scope]
    for k, v in key.items():
        mine = mine[mine[k] == v]
    assert len(mine) == 1
    return mine.iloc[0]


def test_hour_of_is_the_hour_of_the_window_centre():
    assert hour_of(np.array([0.0, 3574.0, 3575.0, 3576.0, 7174.0, 7175.0])).tolist() == [0, 0, 1, 1, 1, 2]


def test_fifteen_seizure_minutes_in_hour_one():
    # 3 h: windows start at 0, 2, ..., 10750. Hour 1 holds the windows centred in [3600, 7200): starts 3576..7174,
    # 1800 windows. Seizure for the 450 windows starting at 3576..4474: 15 min of hour 1, 15 min/h.
    frame = seizure_between(windows("rec.edf", [(0.0, 10800.0)]), 3576.0, 3576.0 + 900.0)
    table = burden_table(frame, 2.0)
    assert table.columns.tolist() == list(SUMMARY_COLUMNS)
    assert table["scope"].tolist() == ["recording", "segment", "hour", "hour", "hour"]
    h0, h1, h2 = (row(table, "hour", hour=h) for h in range(3))
    assert (h0["windows"], h1["windows"], h2["windows"]) == (1788, 1800, 1788)  # 0..3574, 3576..7174, 7176..10750
    assert h1["seizure_burden_min_per_h"] == 15.0 and h1["seizure_min"] == 15.0 and h1["covered_min"] == 60.0
    assert h0["seizure_burden_min_per_h"] == 0.0 and h2["seizure_burden_min_per_h"] == 0.0
    assert h1["top_seizure"] == 0.25 and h1["top_other"] == 0.75 and h1["max_seizure"] == 0.9
    assert h1["mean_seizure"] == pytest.approx(0.25 * 0.9 + 0.75 * 0.05, abs=1e-12)
    whole = row(table, "recording")
    assert whole["windows"] == 5376 and whole["covered_min"] == pytest.approx(5376 * 2 / 60)
    assert whole["seizure_burden_min_per_h"] == pytest.approx(60 * 450 / 5376) and whole["seizure_min"] == 15.0
    shares = table[[f"top_{c}" for c in SUBMISSION_CLASSES]].sum(axis=1)
    np.testing.assert_allclose(shares, 1.0, atol=1e-12)
    assert table["threshold"].eq(0.5).all() and table["clock_start"].eq("").all()
    assert pd.isna(whole["segment"]) and pd.isna(whole["hour"]) and row(table, "segment")["segment"] == 0


def test_the_hour_boundary_follows_the_window_centre():
    # the seizure windows start at 3574 (centre 3599: hour 0) and 3576 (centre 3601: hour 1)
    frame = seizure_between(windows("rec.edf", [(0.0, 10800.0)]), 3574.0, 3578.0)
    table = burden_table(frame, 2.0)
    assert row(table, "hour", hour=0)["seizure_min"] == pytest.approx(2 / 60)
    assert row(table, "hour", hour=1)["seizure_min"] == pytest.approx(2 / 60)
    assert row(table, "hour", hour=0)["seizure_burden_min_per_h"] == pytest.approx(60 / 1788)
    # the threshold is strict: p = 0.5 is not above 0.5
    assert burden_table(frame, 2.0, threshold=0.9)["seizure_min"].eq(0).all()
    assert row(burden_table(frame, 2.0, threshold=0.89), "recording")["seizure_min"] == pytest.approx(4 / 60)


def test_two_segments_a_gap_nan_windows_and_the_wall_clock():
    start = datetime(2024, 1, 2, 23, 30, 0, tzinfo=timezone(timedelta(hours=1)))
    # segment 0: file clock 0..5400 s (windows 0..5350); segment 1: 6000.5..10800.5 s (starts 6000.5..10750.5)
    frame = seizure_between(windows("rec.edf", [(0.0, 5400.0), (6000.5, 4800.0)], start=start), 6000.5, 6600.5)
    frame.loc[frame.index[:10], "lpd_vote"] = np.nan  # the first 10 windows of segment 0 without probabilities
    table = burden_table(frame, 2.0, start=start)
    s0, s1 = row(table, "segment", segment=0), row(table, "segment", segment=1)
    assert (s0["windows"], s0["windows_without_probabilities"], s1["windows"]) == (2666, 10, 2376)
    assert s1["seizure_min"] == 10.0 and s1["seizure_burden_min_per_h"] == pytest.approx(60 * 300 / 2376)
    assert s0["clock_start"] == "2024-01-02T23:30:00+01:00" and s1["clock_start"] == "2024-01-03T01:10:00.500000+01:00"
    assert row(table, "recording")["clock_start"] == "2024-01-02T23:30:00+01:00"
    assert row(table, "recording")["windows_without_probabilities"] == 10
    # hour 1 spans both segments: starts 3576..5350 (888 windows) and 6000.5..7174.5 (588)
    h1 = row(table, "hour", hour=1)
    assert h1["windows"] == 888 + 588 and h1["clock_start"] == "2024-01-03T00:30:00+01:00"
    assert h1["seizure_min"] == 10.0 and h1["seizure_burden_min_per_h"] == pytest.approx(60 * 300 / 1476)
    assert row(table, "hour", hour=0)["windows_without_probabilities"] == 10
    assert recording_start(frame) == start


def test_a_scope_without_probabilities_and_several_recordings(tmp_path):
    a = windows("a.edf", [(0.0, 3600.0)])
    a[list(VOTE_COLUMNS)] = np.nan
    b = seizure_between(windows("b.edf", [(0.0, 100.0)]), 0.0, 10.0)  # 26 windows, 5 seizure
    tables = burden_tables(pd.concat([a, b], ignore_index=True), 2.0)
    assert tables["recording"].tolist() == ["a.edf"] * 3 + ["b.edf"] * 3
    whole_a = row(tables, "recording", recording="a.edf")
    assert whole_a["windows"] == 0 and whole_a["windows_without_probabilities"] == 1776
    assert math.isnan(whole_a["seizure_burden_min_per_h"]) and math.isnan(whole_a["top_seizure"])
    whole_b = row(tables, "recording", recording="b.edf")
    assert whole_b["seizure_burden_min_per_h"] == pytest.approx(60 * 5 / 26) and whole_b["top_seizure"] == 5 / 26
    path = tmp_path / "out" / "summary.csv"
    write_summary(path, tables)
    back = pd.read_csv(path, keep_default_na=False, na_values=[""])
    assert back.columns.tolist() == list(SUMMARY_COLUMNS) and len(back) == 6
    np.testing.assert_array_equal(back["seizure_burden_min_per_h"], tables["seizure_burden_min_per_h"])
    assert back["segment"].isna().tolist() == tables["segment"].isna().tolist()
    assert [p.name for p in path.parent.iterdir()] == ["summary.csv"]


class Cells(HTMLParser):
    """Every <table id=...>'s rows as (tr attributes, {data-col: data-value}); the text of elements by id."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[tuple[dict, dict]]] = {}
        self.ids: dict[str, str] = {}
        self._rows: list | None = None
        self._id: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._rows = self.tables.setdefault(a["id"], [])
        elif tag == "tr" and self._rows is not None:
            self._rows.append((a, {}))
        elif tag == "td" and self._rows and "data-col" in a:
            self._rows[-1][1][a["data-col"]] = a["data-value"]
        if tag == "h1" or ("id" in a and tag in ("p", "ul")):
            self._id = a["id"] if tag != "h1" else "h1"
            self.ids[self._id] = ""

    def handle_data(self, data):
        if self._id is not None:
            self.ids[self._id] += data

    def handle_endtag(self, tag):
        if tag == "table":
            self._rows = None
        if tag in ("p", "h1", "ul"):
            self._id = None

    def rows(self, table: str) -> list[tuple[dict, dict]]:
        return [(a, c) for a, c in self.tables[table] if c]


def recomputed(frame: pd.DataFrame, threshold: float) -> dict[tuple, tuple[int, float, float]]:
    """Plain numpy from the window table: {(scope, key): (windows, burden min/h, mean p(seizure))}."""
    p = frame[list(VOTE_COLUMNS)].to_numpy()
    ok = np.isfinite(p).all(axis=1)
    centre_hour = np.floor((frame["start_s"].to_numpy() + 25.0) / 3600.0)
    scopes = {("recording", ""): ok}
    scopes |= {("segment", str(s)): ok & (frame["segment"].to_numpy() == s) for s in np.unique(frame["segment"])}
    scopes |= {("hour", str(int(h))): ok & (centre_hour == h) for h in np.unique(centre_hour)}
    return {k: (int(m.sum()), 60.0 * float(np.mean(p[m, 0] > threshold)), float(np.mean(p[m, 0])))
            for k, m in scopes.items()}


def two_segment_recording() -> tuple[pd.DataFrame, datetime]:
    start = datetime(2024, 1, 2, 23, 30, 0, tzinfo=timezone(timedelta(hours=1)))
    frame = windows("rec01.edf", [(0.0, 5400.0), (6000.0, 4800.0)], start=start)
    frame = seizure_between(frame, 2000.0, 2900.0)
    frame = seizure_between(frame, 7300.0, 7660.0)
    rng = np.random.default_rng(0)
    frame["seizure_vote"] = np.clip(frame["seizure_vote"] + rng.uniform(-0.04, 0.04, len(frame)), 0, 1)
    frame["eeg_nan_share"] = np.where(frame["start_s"].between(9000, 9100), 0.4, 0.0)
    frame["flat_channels"] = np.where(frame["start_s"] > 8000, 1, 0)
    return frame, start


def test_the_summary_and_the_page_agree_with_the_window_table():
    frame, start = two_segment_recording()
    table = burden_table(frame, 2.0, threshold=0.5, start=start)
    expected = recomputed(frame, 0.5)
    page = recording_page("rec01.edf", frame, table, b"png", {"x0": 0.06, "x1": 0.8, "t0": 0.0, "t1": 10800.0},
                          ["resampled to 200 Hz"], ["2 segments"], 2.0)
    cells = Cells(page)
    shown = {}
    for attrs, c in cells.rows("summary"):
        key = (c["scope"], c["segment"] if c["scope"] == "segment" else c["hour"])
        shown[key] = (int(c["windows"]), float(c["seizure_burden_min_per_h"]), float(c["mean_seizure"]))
        for col in SUMMARY_COLUMNS:  # every column of summary.csv, at full precision
            value = table.loc[(table["scope"] == c["scope"]) & (table["clock_start"] == c["clock_start"])
                              & (table["windows"] == int(c["windows"])), col].iloc[0]
            if isinstance(value, float):
                assert float(c[col]) == value, col
            else:
                assert c[col] == ("" if pd.isna(value) else str(value)), col
    assert set(shown) == set(expected) and len(shown) == 1 + 2 + 3
    for k, (n, burden, mean) in expected.items():
        assert shown[k][0] == n and shown[k][1] == pytest.approx(burden, abs=1e-12)
        assert shown[k][2] == pytest.approx(mean, abs=1e-12)
    assert expected[("hour", "0")][1] == pytest.approx(60 * 450 / 1788)  # the 900 s from 2000 s
    # the windows table: 5,052 windows, thinned to 5,000, each with its own numbers
    window_rows = cells.rows("windows")
    assert len(window_rows) == TREND_MAX_WINDOW_ROWS < len(frame)
    for attrs, c in window_rows[::500]:
        k = int(attrs["id"][1:])
        assert float(attrs["data-start"]) == frame["start_s"].iloc[k] == float(c["start_s"])
        assert float(c["seizure"]) == frame["seizure_vote"].iloc[k]
        assert c["time"] == frame["time"].iloc[k].tz_convert(start.tzinfo).isoformat()  # the title's time zone
    assert window_rows[0][1]["time"] == "2024-01-02T23:30:00+01:00"
    assert "2024-01-02T23:30:00+01:00" in cells.ids["h1"] and "3 h 00 min · 2 segments" in cells.ids["h1"]
    assert cells.ids["steps"] == "resampled to 200 Hz" and cells.ids["notes"] == "2 segments"


def test_the_windows_table_of_a_day_is_thinned_evenly():
    frame = windows("day.edf", [(0.0, 86400.0 + 48.0)])
    assert len(frame) == 43200
    table = burden_table(frame, 2.0)
    page = recording_page("day.edf", frame, table, b"png", {"x0": 0.0, "x1": 1.0, "t0": 0.0, "t1": 1.0}, [], [], 2.0)
    cells = Cells(page)
    positions = [int(a["id"][1:]) for a, _ in cells.rows("windows")]
    assert len(positions) == 5000 and positions[0] == 0 and positions[-1] == 43199
    steps = np.diff(positions)
    assert steps.min() >= 8 and steps.max() <= 9  # 43,199 / 4,999 = 8.64
    assert "5,000 of the 43,200 windows" in cells.ids["thinned"] and "timeline.parquet" in cells.ids["thinned"]
    assert "time" not in cells.rows("windows")[0][1]  # no start date: no wall-clock column
    assert len(page.encode()) < 6_000_000
    small = windows("short.edf", [(0.0, 150.0)])
    small_page = Cells(recording_page("short.edf", small, burden_table(small, 2.0), b"png", {}, [], [], 2.0))
    assert len(small_page.rows("windows")) == 51 and "thinned" not in small_page.ids


def test_names_are_escaped_and_pages_have_safe_names():
    name = "<b>&x\".edf"
    frame = windows(name, [(0.0, 60.0)])
    page = recording_page(name, frame, burden_table(frame, 2.0), b"png", {}, ["<i>"], [], 2.0)
    assert "<b>" not in page and "<i>" not in page and "&lt;b&gt;&amp;x&quot;.edf" in page
    assert page_name("rec01.edf") == "rec01.edf.html"
    assert page_name("sub/rec 01.edf").startswith("sub_rec_01.edf-") and page_name("sub/rec 01.edf").endswith(".html")
    assert page_name("sub/rec_01.edf") != page_name("sub_rec_01.edf") != page_name("sub/rec 01.edf")
    assert not page_name("../x.edf").startswith(".") and "/" not in page_name("../x.edf")
    ok = burden_table(seizure_between(windows("sub/a b.edf", [(0.0, 100.0)]), 0.0, 10.0), 2.0)
    index = index_page([ok], [{"recording": "<bad>.edf", "status": "skipped", "notes": ["<bad>.edf: not an EEG file"]}],
                       "two files.", lengths={"sub/a b.edf": 100.0})
    cells = Cells(index)
    (a_attrs, a), (b_attrs, b) = cells.rows("recordings")
    assert a_attrs["data-page"] == page_name("sub/a b.edf") and f'href="{page_name("sub/a b.edf")}"' in index
    assert float(a["seizure_burden_min_per_h"]) == 60 * 5 / 26 and a["top_class"] == "other" and a["segments"] == "1"
    assert a["length_s"] == "100.0" and a["windows"] == "26"
    assert b["status"] == "skipped" and b["notes"] == "<bad>.edf: not an EEG file" and "data-page" not in b_attrs
    assert "<bad>" not in index and "&lt;bad&gt;.edf: not an EEG file" in index
    assert cells.ids["skipped"] == "<bad>.edf: not an EEG file"  # the reason names the file: not twice


def test_tick_steps_and_labels():
    assert (tick_step(3600), tick_step(7200), tick_step(86400), tick_step(86401)) == (600, 3600, 3600, 21600)
    assert tick_labels([0, 600, 3600, 4200], None) == ["0 h", "10 min", "1 h", "1 h 10"]
    start = datetime(2024, 1, 2, 23, 30, tzinfo=timezone(timedelta(hours=1)))
    assert tick_labels([0, 3600, 7200], start) == ["23:30\n2024-01-02", "00:30\n2024-01-03", "01:30"]


def test_the_trend_figure():
    frame, start = two_segment_recording()
    table = burden_table(frame, 2.0, start=start)
    notes = [Annotation(1000.0, 0.0, "eyes closed"), Annotation(2000.0, 900.0, "seizure onset (nurse)"),
             Annotation(7300.0, 0.0, "a very long description that the figure cuts short")]
    fig = draw_trend(frame, table, 2.0, notes, start=start, at=7300.0, title="rec01.edf")
    top, burden_ax, quality_ax = fig.axes[:3]
    fig.canvas.draw()
    assert [t.get_text() for t in quality_ax.get_xticklabels()] == [
        "23:30\n2024-01-02", "00:30\n2024-01-03", "01:30", "02:30"]
    assert top.get_xlim() == (0.0, 10800.0) and geometry(fig)["t1"] == 10800.0
    # the stacked areas: 6 per segment, each inside its segment's window centres; the gap shaded, never bridged
    areas = [c for c in top.collections if c.get_gid() != "annotations"]
    assert len(areas) == 12
    for k, c in enumerate(areas):
        x = np.concatenate([p.vertices[:, 0] for p in c.get_paths()])
        lo, hi = ((25.0, 5375.0), (6025.0, 10775.0))[k // 6]
        assert x.min() == pytest.approx(lo) and x.max() == pytest.approx(hi)
    gap = [p for p in top.patches if p.get_gid() == "gap"]
    assert len(gap) == 1 and gap[0].get_x() == 5400.0 and gap[0].get_width() == 600.0
    assert any(t.get_text() == "gap 10 min 00 s" for t in top.texts)
    line_x = quality_ax.lines[0].get_xdata()
    assert np.isnan(line_x).sum() == 1 and np.nanmax(line_x[:2676]) == 5375.0
    # the burden bars: one per hour of the file clock, in min/h
    bars = [p for p in burden_ax.patches if p.get_gid() == "burden"]
    assert [b.get_x() for b in bars] == [0.0, 3600.0, 7200.0]
    np.testing.assert_allclose([b.get_height() for b in bars],
                               table.loc[table["scope"] == "hour", "seizure_burden_min_per_h"])
    assert "p > 0.5" in burden_ax.get_ylabel()
    texts = [t.get_text() for t in top.texts]
    assert "eyes closed" in texts and "seizure onset (nurse)" in texts and "a very long description that th…" in texts
    assert "--at 7300 s" in texts and top.lines[-1].get_xdata()[0] == 7325.0
    assert png_bytes(fig)[:4] == b"\x89PNG"
    many = [Annotation(100.0 * k, 0.0, f"note {k}") for k in range(45)]
    fig = draw_trend(frame, table, 2.0, many)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "45 annotations: lines only (texts above 40)" in texts and "note 3" not in texts
    fig.canvas.draw()
    assert [t.get_text() for t in fig.axes[2].get_xticklabels()] == ["0 h", "1 h", "2 h", "3 h"]
