"""Noisy-student labels for the training code: every training label row predicted out of fold.

The 15th-place training code replaces a label, with probability 15%, by the ensemble's out-of-fold prediction for
that label row, read from `data/oof_noisy_student.pkl`: a pickled dict {label_id: float tensor of 6 probabilities
in `CLASSES` order} (alphabetical, the order of its normalised vote labels). Each row of the training table (its own
window, from its offsets) is predicted by the manifest members whose `fold` is the row's fold, over the views, and
blended as the manifest says (`--any-fold`: all members predict the rows of a fold without members).

At scale: label rows that share a window (eeg_id, spectrogram_id and both offsets) and a fold are read and
predicted once. The windows are cut into chunks of whole batches (`chunk_rows`); chunk k is computed by shard
k mod n (`--shard`, torchrun) and written atomically as `<out>.parts/chunk-<k>.npz` (`sharding.Parts`), tagged
with a fingerprint of the run. One DataLoader reads a shard's chunks, its batches never spanning two. A run that
starts again skips the chunks already on disk (each read once), so a stopped job loses at most one chunk per
process; the layout of the batches does not depend on the shards, so the files are the same bytes whether a run
was one process, torchrun, or stopped and resumed. The process that finds every chunk (rank 0 under torchrun)
writes the pickle, its Parquet twin and the report of degraded / fallback rows (`fallback` policy).
"""
from __future__ import annotations

import logging
import pickle
import time
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..budget import check_time_limit
from ..constants import CLASSES, PSEUDO_LABEL_CHUNK_ROWS, SUBMISSION_ORDER, VOTE_COLUMNS
from ..data import Competition, check_folders
from ..ensemble import Ensemble
from ..errors import HMSInputError
from ..fallback import Problem, announce, finish_run, status_counts, write_report
from ..files import atomic_path, check_writable
from ..loader import resolve_workers
from ..manifest import Manifest, Member, resolve_manifest
from ..metric import kl_divergence, no_votes, vote_probabilities
from ..options import RunOptions
from ..sharding import Parts, Shard, fingerprint, member_key
from ..submission import validate_probabilities
from ..training import read_label_table

log = logging.getLogger(__name__)

WINDOW_COLUMNS = ("eeg_id", "eeg_label_offset_seconds", "spectrogram_id", "spectrogram_label_offset_seconds")
ALL_MEMBERS = "all members"  # the group of `--any-fold` rows
PICKLE_PROTOCOL = 4  # Python >= 3.4: whatever the training environment runs


@dataclass(frozen=True)
class Chunk:
    """Windows [start, stop) of one group: whole batches, predicted by the group's members."""

    index: int
    group: str
    start: int
    stop: int


def fold_groups(table: pd.DataFrame, members: Sequence[Member], any_fold: bool, source: str
                ) -> tuple[list[str], dict[str, list[int]]]:
    """Each row's group (`fold <f>`, or `ALL_MEMBERS` for a fold without members under `any_fold`) and each
    group's member indices into `members`. A fold without members is an error naming it, unless `any_fold`."""
    folds = {f: [i for i, m in enumerate(members) if m.fold == f] for f in sorted(table["fold"].unique().tolist())}
    empty = [f for f, idx in folds.items() if not idx]
    if empty and not any_fold:
        have = {m.name: m.fold for m in members}
        n = int(table["fold"].isin(empty).sum())
        raise HMSInputError(f"fold {empty[0]}: {source} has no member with fold {empty[0]} (folds without "
                            f"members: {empty}, {n} rows; member folds: {have}); give its checkpoints, or "
                            f"--any-fold to predict those rows with all members")
    groups = {f"fold {f}": idx for f, idx in folds.items() if idx}
    if empty:
        groups[ALL_MEMBERS] = list(range(len(members)))
    row_group = [ALL_MEMBERS if f in empty else f"fold {f}" for f in table["fold"].tolist()]
    return row_group, groups


def plan_windows(table: pd.DataFrame, row_group: Sequence[str], order: Sequence[str]
                 ) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """(N,) label rows with their groups -> the U distinct (group, window)s, as table rows (the first label row of
    each, index = table row numbers) ordered by group (`order`), then table order; each label row's window (N,);
    each window's group (U,)."""
    rank = {g: i for i, g in enumerate(order)}
    by_group = np.argsort([rank[g] for g in row_group], kind="stable")
    key = table[list(WINDOW_COLUMNS)].assign(group=list(row_group)).iloc[by_group]
    ids = key.groupby([*WINDOW_COLUMNS, "group"], sort=False).ngroup().to_numpy()
    window_of = np.empty(len(table), dtype=np.int64)
    window_of[by_group] = ids
    first = ~key.duplicated().to_numpy()
    windows = table.iloc[by_group[first]]
    return windows, window_of, key["group"].to_numpy()[first].tolist()


def plan_chunks(window_group: Sequence[str], batch_size: int, chunk_rows: int) -> list[Chunk]:
    """Cut each group's windows (contiguous in `window_group`) into chunks of whole batches, about `chunk_rows`
    windows each; a chunk never spans two groups."""
    per_chunk = batch_size * max(1, -(-chunk_rows // batch_size))
    chunks, start = [], 0
    while start < len(window_group):
        group = window_group[start]
        end = start
        while end < len(window_group) and window_group[end] == group:
            end += 1
        for a in range(start, end, per_chunk):
            chunks.append(Chunk(len(chunks), group, a, min(a + per_chunk, end)))
        start = end
    return chunks


def _name(chunk: Chunk) -> str:
    return f"chunk-{chunk.index:06d}"


def read_chunk(parts: Parts, chunk: Chunk) -> tuple[np.ndarray, dict[int, list[Problem]]] | None:
    """A chunk's (n, 6) probabilities and its windows' problems if its part is on disk, of this run and whole."""
    found = parts.read(_name(chunk))
    if found is None or found[0].get("probs", np.empty(0)).shape != (chunk.stop - chunk.start, len(CLASSES)):
        return None
    return found[0]["probs"], found[1]


class _TensorsAsLists(pickle.Pickler):
    """Pickles a tensor as `torch.FloatTensor([...])`: plain `pickle.load` gives a float32 tensor, and the bytes
    depend on the values only (torch's own tensor pickling embeds a memory address)."""

    def reducer_override(self, obj):
        if isinstance(obj, torch.Tensor):
            return torch.FloatTensor, (obj.tolist(),)
        return NotImplemented


def write_pickle(path: str | Path, labels: Mapping[int, torch.Tensor]) -> None:
    """The training code's `oof_noisy_student.pkl`, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        _TensorsAsLists(f, protocol=PICKLE_PROTOCOL).dump(dict(labels))


def label_frame(table: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """(N, 6) probabilities in `CLASSES` order -> `label_id, eeg_id, fold` and the six `*_vote` columns in
    submission order."""
    frame = pd.DataFrame(probs[:, list(SUBMISSION_ORDER)], columns=list(VOTE_COLUMNS))
    for i, col in enumerate(("label_id", "eeg_id", "fold")):
        frame.insert(i, col, table[col].to_numpy(dtype=np.int64))
    return frame


def outputs(out: str | Path) -> tuple[Path, Path, Path]:
    """The pickle, its Parquet twin and the problem-row report."""
    out = Path(out)
    if out.suffix != ".pkl":
        raise HMSInputError(f"--out {out}: the pseudo labels are a pickle, give a .pkl path "
                            f"(the training code reads data/oof_noisy_student.pkl)")
    return out, out.with_suffix(".parquet"), out.with_suffix(".issues.json")


def pseudo_labels(*, data_dir: str | Path, table: str | Path, manifest: str | Path | Manifest, out: str | Path,
                  weights_dir: str | Path | None = None, members: str = "*", options: RunOptions | None = None,
                  any_fold: bool = False, strict: bool = False, chunk_rows: int = PSEUDO_LABEL_CHUNK_ROWS,
                  time_limit: float | None = None, **run: Any) -> dict:
    """Predict every label row of `table` out of fold and write `out` (pickle), its `.parquet` twin and
    `.issues.json`; return a summary (`rows`, `windows`, `score`, `rows_without_votes`, `degraded`, `fallback`,
    `any_fold_rows`, `chunks`, `chunks_on_disk`, `written`, `stopped`, `seconds`). Rows without votes (all six
    zero) are predicted, left out of `score` (None when no row has votes) and named in one warning.

    `data_dir` holds `train_eegs/` and `train_spectrograms/`; `table` the training table (`eeg_id`, `eeg_sub_id`,
    both offsets, `spectrogram_id`, `label_id`, `fold`, votes). `members` is a glob on member names; `options` (or
    its fields by keyword) how the models run, its `views` overriding the manifest's. Chunks of about `chunk_rows`
    windows are written to `<out>.parts/`; `time_limit` (seconds) stops after the chunk that passes it (`stopped`;
    run again to resume).
    """
    options = RunOptions.of(options, **run)
    t0 = time.perf_counter()
    pkl, parquet, issues_path = outputs(out)
    for path in (pkl, parquet, issues_path):
        check_writable(path)
    if chunk_rows < 1:
        raise HMSInputError(f"--chunk-rows must be a positive integer, got {chunk_rows!r}")
    check_time_limit(time_limit)
    manifest, weights_dir, source = resolve_manifest(manifest, weights_dir)
    check_folders(data_dir, "train")
    labels = read_label_table(table)
    targets, unvoted = vote_probabilities(labels, str(table))  # refuses bad votes before any model runs
    if unvoted.any():
        log.warning(f"{no_votes(str(table), labels, unvoted)}: predicted, and left out of the score against the "
                    f"votes")
    chosen = [m for m in manifest.members if fnmatch(m.name, members)]
    if not chosen:
        raise HMSInputError(f"--members {members!r} matches none of the members of {source}: "
                            f"{[m.name for m in manifest.members]}")
    row_group, groups = fold_groups(labels, chosen, any_fold, source)
    part = Shard.resolve(options.shard)
    workers = resolve_workers(options.num_workers)

    needed = sorted({i for idx in groups.values() for i in idx})
    ens = Ensemble.from_manifest(Manifest([chosen[i] for i in needed], manifest.views, manifest.blend,
                                          fallback=manifest.fallback, source=manifest.source), weights_dir,
                                 options=options)
    sub = {g: ens.subset(ens.views, [needed.index(i) for i in idx]) for g, idx in groups.items()}  # models shared
    size = ens.batch_size(options.batch_size)
    t1 = time.perf_counter()

    windows, window_of, window_group = plan_windows(labels, row_group, list(groups))
    comp = Competition(data_dir, "train", table=windows, table_name=Path(table).name)
    chunks = plan_chunks(window_group, size, chunk_rows)
    parts = Parts(f"{pkl}.parts", fingerprint(
        windows[list(WINDOW_COLUMNS)], window_group,
        {g: [member_key(chosen[i], weights_dir) for i in idx] for g, idx in groups.items()},
        ens.views, ens.blend_mode, ens.precision, size, chunk_rows))
    done = {c.index: found for c in chunks if (found := read_chunk(parts, c)) is not None}  # each part read once
    on_disk = len(done)
    todo = [c for c in chunks if c.index % part.count == part.index and c.index not in done]
    computed, stopped = _compute(ens, sub, comp, todo, parts, done, size, workers, strict, options.progress,
                                 None if time_limit is None else t0 + time_limit)
    dt = time.perf_counter() - t1
    part.barrier()
    how = (f"{len(ens.members)} members in {len(groups)} group(s) x {len(ens.views)} views on "
           f"{','.join(str(d) for d in ens.devices)} {ens.precision}, batch {size}")
    pace = f"{1000 * dt / computed:.1f} s per 1,000 windows; " if computed else ""
    summary = {"rows": len(labels), "windows": len(windows), "chunks": len(chunks), "chunks_on_disk": on_disk,
               "computed": computed, "stopped": stopped, "written": False, "seconds": round(dt, 3)}
    merged = _merge(parts, chunks, done, len(windows)) if part.merges else None
    if merged is None:
        state = "stopped by --time-limit" if stopped else f"shard {part}" if part.count > 1 else "incomplete"
        log.info(f"hms_infer pseudo-labels: {state}: {computed} windows computed in {dt:.1f} s ({pace}{how}); "
                 f"{on_disk} of {len(chunks)} chunks were on disk before; parts in {parts.folder}"
                 + ("; run the same command again to resume" if stopped else ""))
        return summary

    window_probs, window_problems = merged
    problems = {r: window_problems[w] for r, w in enumerate(window_of.tolist()) if w in window_problems}
    probs, issues = finish_run(window_probs[window_of], problems, ens.fallback, labels["eeg_id"].tolist(),
                               Path(table).name)
    probs = probs.astype(np.float32)
    validate_probabilities(probs)
    voted = ~unvoted
    score = kl_divergence(targets[voted], probs[voted][:, list(SUBMISSION_ORDER)]) if voted.any() else None
    if issues:
        log.info(announce(issues, len(labels), ens.fallback))
    write_pickle(pkl, {int(i): torch.from_numpy(p) for i, p in zip(labels["label_id"].tolist(), probs)})
    with atomic_path(parquet) as tmp:
        label_frame(labels, probs).to_parquet(tmp, index=False)
    write_report(issues_path, issues, len(labels))
    parts.remove()
    n = status_counts(issues)
    any_rows = sum(g == ALL_MEMBERS for g in row_group)
    summary.update(written=True, score=score, rows_without_votes=int(unvoted.sum()), any_fold_rows=any_rows, **n)
    log.info(f"hms_infer pseudo-labels: {len(labels)} label rows ({len(windows)} distinct windows read and "
             f"predicted; {n['degraded']} degraded, {n['fallback']} fallback"
             + (f"; {any_rows} rows of folds without members predicted by all members (--any-fold)" if any_rows
                else "")
             + f") in {dt:.1f} s ({pace}models loaded in {t1 - t0:.1f} s; {on_disk} of {len(chunks)} chunks "
             f"were on disk), {how} -> {pkl}, {parquet} (problem rows: {issues_path})")
    if score is None:
        log.info("no score: no row of the table has votes")
    else:
        log.info(f"score {score:.6f} (the pseudo labels against the table's votes, Kaggle's KL divergence"
                 + (f", on the {int(voted.sum())} rows with votes)" if unvoted.any() else ")"))
    return summary


def _compute(ens: Ensemble, sub: Mapping[str, Ensemble], comp: Competition, todo: Sequence[Chunk], parts: Parts,
             done: dict[int, tuple[np.ndarray, dict[int, list[Problem]]]], size: int, workers: int, strict: bool,
             progress: bool, deadline: float | None) -> tuple[int, bool]:
    """Predict the `todo` chunks with one DataLoader over `ens` (all the members; batches cut at chunk starts, each
    batch predicted by its group's ensemble of `sub`), writing each chunk's part as it completes and adding it to
    `done`; stop after the chunk that ends past `deadline`. Returns (windows computed, stopped early)."""
    rows = [w for c in todo for w in range(c.start, c.stop)]
    chunk_of = {w: c for c in todo for w in range(c.start, c.stop)}
    cuts = np.cumsum([0] + [c.stop - c.start for c in todo])[:-1].tolist()
    filling: dict[int, tuple[np.ndarray, dict[int, list[Problem]], list[int]]] = {}
    computed, left = 0, len(todo)
    bar = tqdm(total=len(rows), desc="hms_infer pseudo-labels", unit="window", disable=not progress)
    batches = ens.batch_probs(comp, rows, size, workers, progress=False, strict=strict,
                              route=lambda first: sub[chunk_of[first].group], cuts=cuts)
    try:
        for index, probs, problems in batches:
            c = chunk_of[index[0]]
            values, notes, filled = filling.setdefault(c.index, (np.zeros((c.stop - c.start, len(CLASSES))), {}, [0]))
            values[[w - c.start for w in index]] = probs
            notes.update(problems)
            filled[0] += len(index)
            bar.update(len(index))
            if filled[0] < c.stop - c.start:
                continue
            parts.write(_name(c), notes, probs=values)
            done[c.index] = filling.pop(c.index)[:2]
            computed += c.stop - c.start
            left -= 1
            if deadline is not None and time.perf_counter() >= deadline and left:
                return computed, True
    finally:
        batches.close()  # its DataLoader's workers too, when stopped early
        bar.close()
    return computed, False


def _merge(parts: Parts, chunks: Sequence[Chunk], done: Mapping[int, tuple[np.ndarray, dict[int, list[Problem]]]],
           n_windows: int) -> tuple[np.ndarray, dict[int, list[Problem]]] | None:
    """Every chunk (from `done`, else its part: another shard's) -> (U, 6) probabilities and {window: problems};
    None while a chunk is missing."""
    probs = np.zeros((n_windows, len(CLASSES)))
    problems: dict[int, list[Problem]] = {}
    for c in chunks:
        found = done.get(c.index) or read_chunk(parts, c)
        if found is None:
            return None
        probs[c.start:c.stop] = found[0]
        problems.update(found[1])
    return probs, problems
