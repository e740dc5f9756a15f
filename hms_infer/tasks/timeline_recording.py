"""`python -m hms_infer timeline --recording FILE_OR_DIR`: the ensemble along clinical EEG files (EDF, BDF,
BrainVision, EEGLAB, FIF, ... through MNE; the `recordings` extra), hours long, with burden and trends.

Each file is opened lazily (`recordings.reader`): its channels matched to the 19 electrodes, its values in µV, its
rate brought to 200 Hz, its continuous segments found (an EDF+D file, or gaps, gives several: each its own
timeline, never joined). Every segment of 50 s or more has a window every `stride` s; windows stream through the
main command's fast path in blocks (`recordings.windows`), so memory does not grow with the length.

Outputs in `out/`: `timeline.parquet` (every window: recording, segment, offset_s, start_s, time, the six
probabilities, members', quality), `summary.csv` (`recordings.burden`: per recording, segment and hour: the share
of time each class is the most probable, the mean probabilities, the seizure burden), a page per recording (the
trend over the whole recording, with the file's annotations; `--at`: the report's figure of that window),
`index.html` and `timeline.json` (per file: status, notes, what was done to the signals, segments, annotations).

Resumable and shardable as `timeline --data-dir`: the work is cut into units of `chunk_windows` windows of one
segment; unit k is computed by shard k mod n, written atomically to `out/timeline.parts/`; a run started again
skips the units on disk; the process that finds every unit writes the outputs.
"""
from __future__ import annotations

import glob
import json
import logging
import math
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..budget import check_time_limit
from ..constants import (
    EEG_COLUMNS, EEG_FS, EEG_WINDOW, RECORDING_CHUNK_WINDOWS, SEIZURE_BURDEN_THRESHOLD, SPECT_FRAMES, SPECT_FREQS,
    SPECT_REGIONS, SUBMISSION_ORDER, TIMELINE_STRIDE_S, VOTE_COLUMNS,
)
from ..data import Competition
from ..ensemble import Ensemble
from ..errors import HMSInputError
from ..files import atomic_path, check_writable, write_text_atomic
from ..loader import resolve_workers, worker_died
from ..manifest import Manifest, resolve_manifest
from ..options import RunOptions
from ..recordings import burden
from ..recordings.channels import load_channel_map
from ..recordings.multitaper import frame_count, multitaper_frames, to_kaggle_frame, window_frames
from ..recordings.reader import ClinicalRecording, find_recordings, mne_module
from ..recordings.windows import FRAME_STEP, QUALITY, Piece, ReadOptions, Unit, WindowStream, needed
from ..report import drawing_module
from ..sharding import Parts, Shard, fingerprint, member_key
from ..timeline import (
    TimelineStats, WindowAccumulator, run_description, stride_samples, window_count, window_probabilities,
)
from .timeline import PARTS

log = logging.getLogger(__name__)
SUMMARY, PARQUET, INDEX, REPORT = "summary.csv", "timeline.parquet", "index.html", "timeline.json"


def _as_is(item: object) -> object:
    return item


def resolve_heads(heads: str | None, spectrogram: str | None) -> tuple[str, bool]:
    """(heads, whether a multitaper spectrogram is built) for a clinical recording: without a spectrogram the
    EEG-only heads (`eeg`, the default); `--spectrogram multitaper` rebuilds one and defaults to `head_all`."""
    if spectrogram not in (None, "multitaper"):
        raise HMSInputError(f"--spectrogram {spectrogram}: a clinical recording has no Kaggle spectrogram; use "
                            f"--spectrogram multitaper (rebuilt from the EEG) or the EEG-only heads (--heads eeg)")
    multitaper = spectrogram == "multitaper"
    heads = heads or ("all" if multitaper else "eeg")
    if heads not in ("all", "eeg"):
        raise HMSInputError(f"--heads must be all or eeg, got {heads!r}")
    if heads == "all" and not multitaper:
        raise HMSInputError("--heads all needs a spectrogram: add --spectrogram multitaper (rebuilt from the EEG), "
                            "or use the EEG-only heads (--heads eeg, the default)")
    return heads, multitaper


def _inputs(recording: str | Path) -> tuple[list[Path], bool]:
    """The files of `recording` (a file, or every recording of a folder) and whether it is a folder."""
    path = Path(recording)
    if path.is_dir() and path.suffix.lower() != ".mff":
        return find_recordings(path), True
    if not path.exists():
        raise HMSInputError(f"{path}: no such file or folder (--recording)")
    return [path], False


def file_key(path: Path) -> list:
    """What identifies a recording's data in a run's fingerprint: the name, size and time of every file it is made
    of (a BrainVision .vhdr and its .vmrk/.eeg, an EEGLAB .set and its .fdt: the files of its stem; a folder
    format such as .mff: every file in it)."""
    files = sorted(path.rglob("*")) if path.is_dir() else sorted(path.parent.glob(f"{glob.escape(path.stem)}.*"))
    return [str(path.resolve()), *([str(f.relative_to(path.parent)), f.stat().st_size, f.stat().st_mtime_ns]
                                   for f in files if f.is_file())]


def _check(stride: float, at: float | None, threshold: float, chunk_windows: int, time_limit: float | None) -> int:
    step = stride_samples(stride)
    if at is not None and not (math.isfinite(at) and at >= 0):
        raise HMSInputError(f"--at must be a non-negative number of seconds, got {at!r}")
    if not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
        raise HMSInputError(f"--threshold must be a probability between 0 and 1, got {threshold!r}")
    if not isinstance(chunk_windows, int) or chunk_windows < 1:
        raise HMSInputError(f"--chunk-windows must be a positive integer, got {chunk_windows!r}")
    check_time_limit(time_limit)
    return step


def plan_units(recordings: Sequence[ClinicalRecording | None], step: int, chunk_windows: int
               ) -> tuple[list[Unit], dict[int, list[str]]]:
    """Every file's segments of 50 s or more in units of at most `chunk_windows` windows (`windows.Unit`), and per
    file the notes on the segments left out (shorter than 50 s)."""
    units, notes = [], {}
    for f, rec in enumerate(recordings):
        if rec is None:
            continue
        for seg in rec.segments:
            if seg.samples < EEG_WINDOW:
                notes.setdefault(f, []).append(f"segment {seg.index} at {seg.start_s:g} s is {seg.samples / EEG_FS:g} "
                                               f"s long, shorter than a 50-s window: left out")
                continue
            n = window_count(seg.samples, step)
            units += [Unit(f, seg.index, a, min(chunk_windows, n - a)) for a in range(0, n, chunk_windows)]
    return units, notes


def _stream(ens: Ensemble, paths: Sequence[Path], options: ReadOptions, units: Sequence[Unit], todo: Sequence[int],
            step: int, size: int, multitaper: bool, heads: str, members: bool, workers: int, stats: TimelineStats
            ) -> Iterator[tuple[int, Piece, np.ndarray, np.ndarray | None]]:
    """(unit position, piece, (n, 6) probabilities in `CLASSES` order, members (M, n, 6) or None) per batch of
    the units `todo`, read by `workers` DataLoader workers; a unit whose file failed: its error piece, None, None."""
    cuda = any(d.type == "cuda" for d in ens.devices)
    dataset = WindowStream(paths, options, [units[k] for k in todo], step, size, multitaper)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=_as_is, pin_memory=cuda,
                        prefetch_factor=2 if workers else None)
    failed: list[Piece] = []

    def batches() -> Iterator[tuple[Piece, Any, Any]]:
        for piece, electrodes, spect in loader:
            stats.read_s += piece.read_s
            stats.prep_s += piece.prep_s
            if piece.error is not None:
                failed.append(piece)
            else:
                yield piece, electrodes, spect

    for piece, logits in ens.stream_logits(batches(), size, stats, heads == "eeg"):
        while failed:
            p = failed.pop(0)
            yield todo[p.unit], p, None, None
        probs, each = window_probabilities(ens, logits, heads, members)
        yield todo[piece.unit], piece, probs, each
    for p in failed:
        yield todo[p.unit], p, None, None


def _compute(ens: Ensemble, paths: Sequence[Path], options: ReadOptions, units: Sequence[Unit], todo: Sequence[int],
             step: int, size: int, multitaper: bool, heads: str, members: bool, workers: int, stats: TimelineStats,
             progress: bool) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """(unit position, its arrays) as each unit of `todo` completes (a unit whose file failed while read:
    {"error": its one-line reason}); a DataLoader worker that dies is replaced by reading the units not yet done in
    this process (the same batches, so the same numbers)."""
    bar = tqdm(total=sum(units[k].count for k in todo), desc="hms_infer timeline", unit="window",
               disable=not progress)
    pending: dict[int, WindowAccumulator] = {}
    done: set[int] = set()
    try:
        rest = list(todo)
        for attempt in (workers, 0):
            try:
                for k, piece, probs, each in _stream(ens, paths, options, units, rest, step, size, multitaper, heads,
                                                     members, min(attempt, len(rest)), stats):
                    if piece.error is not None:
                        pending.pop(k, None)
                        done.add(k)
                        yield k, {"error": np.array(piece.error)}
                        continue
                    bar.update(len(piece.offset_s))
                    acc = pending.setdefault(k, WindowAccumulator(units[k].count))
                    if acc.add(piece.offset_s, piece.quality, probs, each):
                        done.add(k)
                        yield k, pending.pop(k).arrays()
                return
            except RuntimeError as e:
                if attempt == 0 or not worker_died(e, attempt, "recording units"):
                    raise
            pending.clear()
            rest = [k for k in todo if k not in done]
    finally:
        bar.close()


def unit_frame(unit: Unit, arrays: Mapping[str, np.ndarray], member_names: Sequence[str]) -> pd.DataFrame:
    """A unit's windows: segment, offset_s, the six probabilities (submission columns), each member's, quality."""
    cols: dict[str, np.ndarray] = {"segment": np.full(len(arrays["offset_s"]), unit.segment, np.int64),
                                   "offset_s": arrays["offset_s"].astype(np.float64)}
    blocks = [("", arrays["probs"])] + list(zip(member_names, arrays["members"] if "members" in arrays else []))
    for name, p in blocks:
        for j, c in enumerate(VOTE_COLUMNS):
            cols[f"{name}/{c}" if name else c] = np.asarray(p, np.float64)[:, SUBMISSION_ORDER[j]]
    for j, c in enumerate(QUALITY):
        cols[c] = arrays["quality"][:, j].astype(np.float64 if j == 0 else np.int64)
    return pd.DataFrame(cols)


def recording_frame(name: str, recording: ClinicalRecording, parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """A file's window table (the layout of `recordings`): its units' frames with the recording's name, the
    file-clock start and the wall-clock time (UTC; NaT without a start date), in segment then offset order."""
    frame = pd.concat(parts, ignore_index=True).sort_values(["segment", "offset_s"], kind="mergesort")
    frame = frame.reset_index(drop=True)
    starts = {s.index: s.start_s for s in recording.segments}
    start_s = frame["segment"].map(starts).to_numpy(np.float64) + frame["offset_s"].to_numpy()
    if recording.meas_date is not None:
        t0 = pd.Timestamp(recording.meas_date)
        t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
        clock = t0 + pd.to_timedelta(start_s, unit="s")
    else:
        clock = pd.DatetimeIndex([pd.NaT] * len(frame), tz="UTC")
    frame.insert(0, "recording", name)
    frame.insert(3, "start_s", start_s)
    frame.insert(4, "time", clock)
    return frame


def zoom_window(ens: Ensemble, recording: ClinicalRecording, frame: pd.DataFrame, at: float, multitaper: bool
                ) -> tuple[Any, Any, bytes, str, int] | None:
    """The report's figure and numbers of the window whose start is nearest to `at` s (file clock), as a
    one-row Kaggle test folder (its 50 s of EEG; its multitaper spectrogram, else none): what `report` shows of a
    row (every head, each member and view): (report, row, png, title, the window's position in `frame`). None
    when the recording has no windows."""
    from ..report.analysis import analyse, row_inputs
    from ..report.drawing import draw, png_bytes
    if not len(frame):
        return None
    k = int(np.argmin(np.abs(frame["start_s"].to_numpy() - at)))
    segment, offset = int(frame["segment"].iloc[k]), float(frame["offset_s"].iloc[k])
    start = int(round(offset * EEG_FS))
    with tempfile.TemporaryDirectory(prefix="hms_zoom_") as tmp:
        root = Path(tmp)
        for folder in ("test_eegs", "test_spectrograms"):
            (root / folder).mkdir()
        eeg = recording.read(segment, start, start + EEG_WINDOW)
        columns = {c: eeg[:, j] for j, c in enumerate(EEG_COLUMNS[:-1])}
        pd.DataFrame({**columns, EEG_COLUMNS[-1]: np.full(len(eeg), np.nan, np.float32)}).to_parquet(
            root / "test_eegs" / "1.parquet", index=False)
        power = np.full((SPECT_FRAMES, len(SPECT_REGIONS), SPECT_FREQS), np.nan, np.float32)  # none: all NaN
        if multitaper:  # the frames around the window (from the segment's frame grid): its 300 (times 1 ... 599 s)
            samples = recording.segments[segment].samples
            lo, hi = needed(start, True)
            frames = multitaper_frames(recording.read(segment, lo, min(hi, samples)))
            power, _ = window_frames(frames, start / EEG_FS, lo // FRAME_STEP, frame_count(samples))
        to_kaggle_frame(1.0 + 2 * np.arange(len(power)), power).to_parquet(root / "test_spectrograms" / "1.parquet",
                                                                          index=False)
        pd.DataFrame([{"eeg_id": 1, "spectrogram_id": 1, "patient_id": 0}]).to_csv(root / "test.csv", index=False)
        comp = Competition(root, "test")
        report = analyse(ens, comp, [0], 1, 0, progress=False)
        r = report.rows[0]
        title = f"{frame['recording'].iloc[k]} segment {segment} window at {offset:g} s" + (
            "" if multitaper else " (no spectrogram: the timeline's prediction is the EEG-only heads', eeg_stft and "
                                  "eeg_wavenet below; the blend shown is head_all's on an empty spectrogram)")
        return report, r, png_bytes(draw(report, r, row_inputs(ens, comp, 0))), title, k


def timeline_recordings(*, recording: str | Path, out: str | Path, manifest: str | Path | Manifest,
                        stride: float = TIMELINE_STRIDE_S, heads: str | None = None, spectrogram: str | None = None,
                        channel_map: str | Path | Mapping[str, str] | None = None, allow_missing: bool = False,
                        invert_polarity: bool = False, threshold: float = SEIZURE_BURDEN_THRESHOLD,
                        at: float | None = None, members: bool = False, weights_dir: str | Path | None = None,
                        options: RunOptions | None = None, time_limit: float | None = None,
                        chunk_windows: int = RECORDING_CHUNK_WINDOWS, **run: Any) -> dict:
    """Predict every window of the clinical recording(s) `recording` (a file, or every recording of a folder) and
    write `out/` (module docstring); return a summary: `recordings`, `skipped`, `windows`, `computed`, `units`,
    `units_on_disk`, `stopped`, `written`, `seconds`, `windows_per_s`, `read_share`, `wait_share`, `report`.

    `heads`: `eeg` (default: the EEG-only heads, no spectrogram needed) or, with `spectrogram="multitaper"` (the
    Kaggle-like spectrogram rebuilt from the EEG), `all` (its default). `channel_map`: a YAML file (or mapping) of
    file labels to electrodes; `allow_missing`: an electrode without a channel is NaN (a dropped-out channel) and
    every window of the file counts it (`missing_channels`); `invert_polarity`: every electrode times -1.
    `threshold`: p(seizure) above which a window counts towards the seizure burden. `at`: the report's figure of
    the window starting nearest to `at` s (file clock) on each page.

    Options, the files and the output folder are checked before the models load. One file: a bad file is a
    one-line error; a folder: a bad file is skipped, listed with the reason, and the others done.
    """
    options = RunOptions.of(options, **run)
    progress = options.progress
    t0 = time.perf_counter()
    pages = drawing_module("trend", "the recordings' pages need")
    mne_module()
    step = _check(stride, at, threshold, chunk_windows, time_limit)
    heads, multitaper = resolve_heads(heads, spectrogram)
    mapping = load_channel_map(channel_map) if isinstance(channel_map, (str, Path)) else channel_map
    read = ReadOptions(dict(mapping) if mapping else None, allow_missing, invert_polarity)
    paths, folder = _inputs(recording)
    opened: list[ClinicalRecording | None] = []
    skipped: dict[int, str] = {}
    for f, path in enumerate(paths):
        try:
            opened.append(read.open(path))
            log.info("%s: %s", path, "; ".join(opened[-1].steps[1:]))
            if opened[-1].channels.missing:
                log.warning("%s: no channel for %s: NaN (--allow-missing), counted in every window's "
                            "missing_channels", path, ", ".join(opened[-1].channels.missing))
        except HMSInputError as e:
            if not folder:
                raise
            opened.append(None)
            skipped[f] = str(e)
            log.warning("skipped: %s", e)
    units, segment_notes = plan_units(opened, step, chunk_windows)
    for f, rec in enumerate(opened):
        if rec is not None and not any(u.file == f for u in units):
            reason = f"{paths[f]}: no segment of 50 s or more ({'; '.join(segment_notes.get(f, []))})"
            if not folder:
                raise HMSInputError(reason)
            skipped[f] = reason
            log.warning("skipped: %s", reason)
    if len(skipped) == len(paths):
        raise HMSInputError(f"{recording}: none of its {len(paths)} recordings can be used: "
                            + "; ".join(skipped[f] for f in sorted(skipped)))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise HMSInputError(f"{out}: is a file; --out is the timeline's folder")
    names = [p.name for p in paths]
    for path in (out / PARQUET, out / SUMMARY, out / INDEX, out / REPORT,
                 *(out / pages.page_name(n) for f, n in enumerate(names) if f not in skipped)):
        check_writable(path)
    part = Shard.resolve(options.shard)
    workers = resolve_workers(options.num_workers)
    manifest, weights_dir, _ = resolve_manifest(manifest, weights_dir)
    ens = Ensemble.from_manifest(manifest, weights_dir, options=options)
    size = ens.batch_size(options.batch_size)
    member_names = [m.name for m in ens.members] if members else []
    t1 = time.perf_counter()

    key = fingerprint([file_key(p) for p in paths], asdict(read), stride, heads, multitaper, members,
                      [asdict(u) for u in units], [member_key(m, weights_dir) for m in manifest.members], ens.views,
                      ens.blend_mode, ens.precision, size)
    parts = Parts(out / PARTS, key)
    have = {k: found[0] for k in range(len(units))  # a unit that failed is read again (the failure may have passed)
            if (found := parts.read(f"unit-{k:06d}")) is not None and "error" not in found[0]}
    on_disk = set(have)
    todo = [k for k in range(len(units)) if k % part.count == part.index and k not in on_disk]
    stats = TimelineStats()
    computed = written = 0
    stopped = False
    stream = _compute(ens, paths, read, units, todo, step, size, multitaper, heads, members, workers, stats, progress)
    try:
        for k, arrays in stream:
            if "error" in arrays and not folder:
                raise HMSInputError(str(arrays["error"]))
            parts.write(f"unit-{k:06d}", **arrays)
            have[k] = arrays
            computed += 0 if "error" in arrays else units[k].count
            written += 1
            if time_limit is not None and time.perf_counter() - t0 >= time_limit and written < len(todo):
                stopped = True
                break
    finally:
        stream.close()
    dt = time.perf_counter() - t1
    part.barrier()

    how = run_description(ens, size) + f", heads {heads}" + (", multitaper spectrogram" if multitaper else "")
    input_s = stats.read_s + stats.prep_s
    summary = {"recordings": len(paths), "skipped": len(skipped), "units": len(units), "units_on_disk": len(on_disk),
               "computed": computed, "stopped": stopped, "written": False, "seconds": round(dt, 3),
               "windows_per_s": computed / dt if computed else None,
               "read_share": stats.read_s / input_s if input_s else None,
               "wait_share": stats.wait_s / stats.wall_s if stats.wall_s else None}
    pace = ""
    if computed:
        pace = (f"{computed} windows computed in {dt:.1f} s ({summary['windows_per_s']:.2f} windows/s; input: "
                f"reading + resampling {stats.read_s:.1f} s = {100 * summary['read_share']:.0f}% of reading + "
                f"preprocessing ({input_s:.1f} s, in the workers); waiting for input "
                f"{100 * (summary['wait_share'] or 0):.0f}% of the prediction's wall time)")
    for k in range(len(units) if part.merges else 0):
        if k not in have and (found := parts.read(f"unit-{k:06d}")) is not None:
            have[k] = found[0]  # another shard's
    for k, arrays in sorted(have.items()):  # a file that failed while read: skipped (the part keeps its reason)
        if "error" in arrays and units[k].file not in skipped:
            skipped[units[k].file] = str(arrays["error"])
            log.warning("skipped: %s", skipped[units[k].file])
    complete = part.merges and all(k in have or units[k].file in skipped for k in range(len(units)))
    if not complete:
        state = "stopped by --time-limit" if stopped else f"shard {part}" if part.count > 1 else "incomplete"
        summary["report"] = (f"hms_infer timeline: {state}: {pace or 'no windows computed'}, {how}; {len(on_disk)} "
                             f"of {len(units)} units were on disk before; parts in {parts.folder}"
                             + ("; run the same command again to resume" if stopped else ""))
        log.info(summary["report"])
        return summary

    frames, tables, infos, lengths, all_notes = [], [], [], {}, {}
    for f, path in enumerate(paths):
        rec = opened[f]
        if f in skipped:
            infos.append({"recording": names[f], "status": "skipped", "notes": [skipped[f]]})
            continue
        mine = [k for k, u in enumerate(units) if u.file == f]
        frame = recording_frame(names[f], rec, [unit_frame(units[k], have[k], member_names) for k in mine])
        table = burden.burden_table(frame, stride, threshold, rec.meas_date)
        notes = list(segment_notes.get(f, []))
        if rec.channels.missing:
            notes.append(f"no channel for {', '.join(rec.channels.missing)}: NaN (--allow-missing); every window "
                         f"counts them in missing_channels")
        zoomed = None if at is None else zoom_window(ens, rec, frame, at, multitaper)
        shown_at = None if zoomed is None else float(frame["start_s"].iloc[zoomed[4]])
        lengths[names[f]] = max(s.start_s + s.samples / EEG_FS for s in rec.segments)
        all_notes[names[f]] = notes
        fig = pages.draw_trend(frame, table, stride, rec.annotations, rec.meas_date, shown_at, names[f])
        write_text_atomic(out / pages.page_name(names[f]),
                          pages.recording_page(names[f], frame, table, pages.png_bytes(fig), pages.geometry(fig),
                                               rec.steps, notes, stride, zoomed[:4] if zoomed else None, shown_at,
                                               length_s=lengths[names[f]], annotations=rec.annotations))
        frames.append(frame)
        tables.append(table)
        infos.append({"recording": names[f], "status": "ok", "notes": notes, "path": str(path), "format": rec.format,
                      "source_fs": rec.source_fs, "meas_date": None if rec.meas_date is None else str(rec.meas_date),
                      "steps": list(rec.steps), "channels": rec.channels.found, "missing": list(rec.channels.missing),
                      "segments": [asdict(s) for s in rec.segments], "annotations": len(rec.annotations),
                      "windows": len(frame)})
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    with atomic_path(out / PARQUET) as tmp:
        frame.to_parquet(tmp, index=False)
    burden.write_summary(out / SUMMARY, table)
    about = (f"{len(ens.members)} members ({', '.join(m.name for m in ens.members)}) x {len(ens.views)} views; "
             f"windows every {stride:g} s; heads {heads}" + (", multitaper spectrogram" if multitaper else "")
             + f"; seizure burden: p(seizure) > {threshold:g}.")
    write_text_atomic(out / INDEX, pages.index_page(tables, [i for i in infos if i["status"] == "skipped"], about,
                                                    all_notes, lengths))
    write_text_atomic(out / REPORT, json.dumps({"stride_s": stride, "heads": heads, "multitaper": multitaper,
                                                "threshold": threshold, "members": [m.name for m in ens.members],
                                                "views": list(ens.views), "windows": len(frame),
                                                "recordings": infos}, indent=1, default=str) + "\n")
    parts.remove()
    summary.update(written=True, windows=len(frame))
    lines = []
    if skipped:
        lines += ["hms_infer timeline: files skipped:", *(f"  {skipped[f]}" for f in sorted(skipped))]
    lines.append(f"hms_infer timeline: {len(paths)} recordings ({len(skipped)} skipped), {len(frame)} windows; "
                 f"{pace or 'every unit was on disk'}; models loaded in {t1 - t0:.1f} s; {how} -> {out / PARQUET}, "
                 f"{out / SUMMARY}, {out / INDEX}")
    summary["report"] = "\n".join(lines)
    log.info(summary["report"])
    return summary
