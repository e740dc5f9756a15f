"""`python -m hms_infer timeline`: the ensemble's predictions along whole recordings, with a page per recording.

Outputs in `out/`: `timeline.parquet` (every window of every recording, sorted by eeg_id then offset_s),
`<eeg_id>.png` and `<eeg_id>.html` per recording, `index.html`, and `timeline.json` (each recording's summary:
status, notes, length, windows, padding, its labelled windows with votes, probabilities and KL).

At scale the recordings are cut into parts of `chunk_recordings` whole recordings; part k is computed by shard
k mod n (`--shard`, torchrun), its pages drawn, then written atomically to `out/timeline.parts/` with a fingerprint
of the run. A run started again skips the parts on disk (a part of another run, or a damaged one, is computed
again); `time_limit` stops after the part that passes it. The process that finds every part (rank 0 under
torchrun) writes the Parquet, the index and the summary, and removes the parts: the same bytes however the run was
split or resumed (the batches of a recording do not depend on the shards or the workers). The parts are
`sharding.Parts`, as the main command's and pseudo-labels'.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..budget import check_time_limit
from ..constants import TIMELINE_CHUNK_RECORDINGS, TIMELINE_STRIDE_S, VOTE_COLUMNS
from ..data import Competition
from ..ensemble import Ensemble
from ..errors import HMSInputError
from ..files import atomic_path, check_writable, write_text_atomic
from ..loader import resolve_workers
from ..manifest import Manifest, resolve_manifest
from ..options import RunOptions
from ..report import drawing_module
from ..sharding import Parts, Shard, fingerprint, member_key
from ..timeline import (
    DEGRADED, SHORT, SKIPPED, RecordingResult, TimelineStats, check_heads, plan_recordings, predict_recordings,
    run_description, stride_samples,
)

log = logging.getLogger(__name__)
PARTS = "timeline.parts"
LABELS = "labels.csv"


def write_part(parts: Parts, k: int, results: Sequence[RecordingResult]) -> tuple[pd.DataFrame, list[dict]]:
    """Part k: its recordings' windows (the frame's columns) and summaries, atomically; returns them (`read_part`'s
    answer)."""
    frame = pd.concat([r.frame for r in results], ignore_index=True)
    summaries = [r.summary for r in results]
    parts.write(f"part-{k:06d}", columns=np.array(json.dumps(list(frame.columns))),
                summaries=np.array(json.dumps(summaries)),
                **{f"column{j}": frame[c].to_numpy() for j, c in enumerate(frame.columns)})
    return frame, summaries


def read_part(parts: Parts, k: int, n_recordings: int) -> tuple[pd.DataFrame, list[dict]] | None:
    """Part k's frame and summaries if it is on disk, of this run and whole; else None (computed again)."""
    found = parts.read(f"part-{k:06d}")
    if found is None or "columns" not in found[0] or "summaries" not in found[0]:
        return None
    arrays = found[0]
    columns = json.loads(str(arrays["columns"]))
    if not all(f"column{j}" in arrays for j in range(len(columns))):
        return None
    frame = pd.DataFrame({c: arrays[f"column{j}"] for j, c in enumerate(columns)})
    summaries = json.loads(str(arrays["summaries"]))
    if len(summaries) != n_recordings or len(frame) != sum(s["windows"] for s in summaries):
        return None
    return frame, summaries


def write_labels(path: Path, summaries: Sequence[dict]) -> pd.DataFrame:
    """The probabilities at every labelled window with finite ones: label_id, eeg_id and the six vote columns, in
    the recordings' order (a prediction set of the `submission` layout for `evaluate`); written atomically."""
    rows = [{"label_id": lab["label_id"], "eeg_id": s["eeg_id"], **dict(zip(VOTE_COLUMNS, lab["probs"]))}
            for s in summaries for lab in s["labels"] if lab["probs"] is not None and np.isfinite(lab["probs"]).all()]
    frame = pd.DataFrame(rows, columns=["label_id", "eeg_id", *VOTE_COLUMNS])
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return frame


def _check(eeg_ids: Sequence[int] | None, all_recordings: bool, at: float | None, chunk_recordings: int,
           time_limit: float | None) -> None:
    if all_recordings and eeg_ids:
        raise HMSInputError("give --eeg-id ID ... or --all, not both")
    if not all_recordings and not eeg_ids:
        raise HMSInputError("name the recordings: --eeg-id ID ... or --all")
    if at is not None and not (math.isfinite(at) and at >= 0):
        raise HMSInputError(f"--at must be a non-negative number of seconds, got {at!r}")
    if not isinstance(chunk_recordings, int) or chunk_recordings < 1:
        raise HMSInputError(f"--chunk-recordings must be a positive integer, got {chunk_recordings!r}")
    check_time_limit(time_limit)


def problem_table(summaries: Sequence[dict]) -> str:
    """One line per note of each recording that has some."""
    lines = [f"{'eeg_id':>12}  {'status':<18} note"]
    for s in summaries:
        for k, note in enumerate(s["notes"]):
            lines.append((f"{s['eeg_id']:>12}  {s['status']:<18}" if k == 0 else " " * 32) + f" {note}")
    return "\n".join(lines)


def timeline(*, data_dir: str | Path, out: str | Path, manifest: str | Path | Manifest, split: str = "train",
             eeg_ids: Sequence[int] | None = None, all_recordings: bool = False, stride: float = TIMELINE_STRIDE_S,
             at: float | None = None, members: bool = False, weights_dir: str | Path | None = None,
             options: RunOptions | None = None, time_limit: float | None = None,
             chunk_recordings: int = TIMELINE_CHUNK_RECORDINGS, heads: str = "all", spectrogram: str = "kaggle",
             **run: Any) -> dict:
    """Predict every window of the recordings `eeg_ids` (or, `all_recordings`, the table's) and write `out/` (module
    docstring); return a summary: `recordings`, `windows`, `computed`, `skipped`, `degraded`, `short`,
    `padded_windows`, `parts`, `parts_on_disk`, `stopped`, `written`, `seconds`, `windows_per_s`, `read_share`,
    `wait_share`, and `report` (the lines it logs).

    `heads`: `all` (head_all, the prediction) or `eeg` (the EEG-only heads, `timeline.window_probabilities`);
    `spectrogram`: `kaggle` (the files) or `multitaper` (rebuilt from each EEG, `recordings.multitaper`). On the
    train split `out/labels.csv` holds the probabilities at the labelled windows (label_id, eeg_id, the six vote
    columns: `evaluate --submission NAME=out/labels.csv` scores them).

    Options, the table, the recordings and the output folder are checked before the models load: an unknown
    eeg_id, a recording whose label rows disagree on the spectrogram or its shift, a bad stride are one-line errors.
    Bad files are a recording's own: no usable EEG skips it (listed with the reason), no usable spectrogram
    predicts it from the EEG alone (`degraded`), an EEG shorter than 50 s is one NaN-padded window (`short`).
    """
    options = RunOptions.of(options, **run)
    progress = options.progress
    t0 = time.perf_counter()
    pages = drawing_module("timeline", "the timeline's pages need")
    _check(eeg_ids, all_recordings, at, chunk_recordings, time_limit)
    stride_samples(stride)
    check_heads(heads, spectrogram)
    comp = Competition(data_dir, split)
    recordings = plan_recordings(comp, None if all_recordings else eeg_ids)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise HMSInputError(f"{out}: is a file; --out is the timeline's folder")
    parquet, index, report_path = out / "timeline.parquet", out / "index.html", out / "timeline.json"
    labels_path = out / LABELS
    for path in (parquet, index, report_path, labels_path):
        check_writable(path)
    part = Shard.resolve(options.shard)
    workers = resolve_workers(options.num_workers)
    manifest, weights_dir, _ = resolve_manifest(manifest, weights_dir)
    ens = Ensemble.from_manifest(manifest, weights_dir, options=options)
    size = ens.batch_size(options.batch_size)
    t1 = time.perf_counter()

    chunks = [range(a, min(a + chunk_recordings, len(recordings))) for a in range(0, len(recordings), chunk_recordings)]
    key = fingerprint(split, [asdict(r) for r in recordings], stride, at, members,
                      [member_key(m, weights_dir) for m in manifest.members], ens.views, ens.blend_mode,
                      ens.precision, size, chunk_recordings, heads, spectrogram)
    parts = Parts(out / PARTS, key)
    have = {k: found for k, c in enumerate(chunks) if (found := read_part(parts, k, len(c))) is not None}  # read once
    on_disk = set(have)
    todo = [k for k in range(len(chunks)) if k % part.count == part.index and k not in on_disk]
    order = [i for k in todo for i in chunks[k]]
    left = {k: len(chunks[k]) for k in todo}
    done: dict[int, RecordingResult] = {}
    stats = TimelineStats()
    computed = written = 0
    pages_s = 0.0
    stopped = False
    stream = predict_recordings(ens, comp, [recordings[i] for i in order], stride, size, workers, members, stats,
                                progress, heads, spectrogram)
    try:
        for j, result in stream:
            i = order[j]
            t = time.perf_counter()
            pages.write_recording_page(out, ens, comp, result, stride, at)
            pages_s += time.perf_counter() - t
            done[i] = result
            computed += len(result.frame)
            k = i // chunk_recordings
            left[k] -= 1
            if left[k] == 0:
                results = [done.pop(r) for r in chunks[k]]
                have[k] = write_part(parts, k, results)
                written += 1
                if time_limit is not None and time.perf_counter() - t0 >= time_limit and written < len(todo):
                    stopped = True
                    break
    finally:
        stream.close()
    dt = time.perf_counter() - t1
    part.barrier()

    how = run_description(ens, size)
    input_s = stats.read_s + stats.prep_s
    predict_s = max(dt - pages_s, 1e-9)
    summary = {"recordings": len(recordings), "computed": computed, "parts": len(chunks),
               "parts_on_disk": len(on_disk), "stopped": stopped, "written": False, "seconds": round(dt, 3),
               "windows_per_s": computed / predict_s if computed else None,
               "read_share": stats.read_s / input_s if input_s else None,
               "wait_share": stats.wait_s / stats.wall_s if stats.wall_s else None}
    pace = ""
    if computed:
        pace = (f"{computed} windows computed in {predict_s:.1f} s ({summary['windows_per_s']:.2f} windows/s; "
                f"input: parquet reads {stats.read_s:.1f} s = {100 * summary['read_share']:.0f}% of reading + "
                f"cutting + preprocessing ({input_s:.1f} s, in the workers), waiting for input "
                f"{100 * (summary['wait_share'] or 0):.0f}% of the prediction's wall time; pages {pages_s:.1f} s)")
    merged = _merge(parts, chunks, have) if part.merges else None
    if merged is None:
        state = "stopped by --time-limit" if stopped else f"shard {part}" if part.count > 1 else "incomplete"
        summary["report"] = (f"hms_infer timeline: {state}: {pace or 'no windows computed'}, {how}; {len(on_disk)} "
                             f"of {len(chunks)} parts were on disk before; parts in {parts.folder}"
                             + ("; run the same command again to resume" if stopped else ""))
        log.info(summary["report"])
        return summary

    frame, summaries = merged
    frame = frame.sort_values(["eeg_id", "offset_s"], kind="mergesort").reset_index(drop=True)
    with atomic_path(parquet) as tmp:
        frame.to_parquet(tmp, index=False)
    summaries = sorted(summaries, key=lambda s: s["eeg_id"])
    about = (f"{comp.table_name}, {len(ens.members)} members ({', '.join(m.name for m in ens.members)}) x "
             f"{len(ens.views)} views ({', '.join(ens.views)}); windows every {stride:g} s"
             + (f"; --at {at:g} s" if at is not None else "") + f"; heads {heads}, {spectrogram} spectrogram.")
    write_text_atomic(index, pages.index_page(summaries, stride, about))
    if split == "train":
        write_labels(labels_path, summaries)
    write_text_atomic(report_path, json.dumps({"split": split, "stride_s": stride, "at_s": at, "heads": heads,
                                               "spectrogram": spectrogram,
                                               "members": [m.name for m in ens.members], "views": list(ens.views),
                                               "windows": len(frame), "recordings": summaries}, indent=1) + "\n")
    parts.remove()
    counts = {flag: sum(flag in s["status"] for s in summaries) for flag in (SKIPPED, DEGRADED, SHORT)}
    padded = sum(s["padded_windows"] for s in summaries)
    summary.update(written=True, windows=len(frame), padded_windows=padded, **counts)
    lines = []
    if any(s["notes"] for s in summaries):
        lines += ["hms_infer timeline: recordings with notes (skipped: no usable EEG; degraded: no usable "
                  "spectrogram, predicted from the EEG alone; short: under 50 s, one NaN-padded window):",
                  problem_table(summaries)]
    lines.append(f"hms_infer timeline: {len(summaries)} recordings ({counts[SKIPPED]} skipped, {counts[DEGRADED]} "
                 f"degraded, {counts[SHORT]} short), {len(frame)} windows ({padded} with NaN-padded spectrogram "
                 f"frames); {pace or 'every part was on disk'}; models loaded in {t1 - t0:.1f} s; {len(on_disk)} "
                 f"of {len(chunks)} parts were on disk; {how} -> {parquet}, {index}")
    summary["report"] = "\n".join(lines)
    log.info(summary["report"])
    return summary


def _merge(parts: Parts, chunks: Sequence[range], have: dict[int, tuple[pd.DataFrame, list[dict]]]
           ) -> tuple[pd.DataFrame, list[dict]] | None:
    """Every part's frame and summaries (from `have`, else its part: another shard's), or None while one is
    missing."""
    frames, summaries = [], []
    for k, c in enumerate(chunks):
        found = have.get(k) or read_part(parts, k, len(c))
        if found is None:
            return None
        frames.append(found[0])
        summaries += found[1]
    return pd.concat(frames, ignore_index=True), summaries
