"""Noisy-student labels for the training code: every training label row predicted out of fold.

The 15th-place training code replaces a label, with probability 15%, by the ensemble's out-of-fold prediction for
that label row, read from `data/oof_noisy_student.pkl`: a pickled dict {label_id: float tensor of 6 probabilities
in `CLASSES` order} (alphabetical, the order of its normalised vote labels). Each row of the training table (its own
window, from its offsets) is predicted by the manifest members whose `fold` is the row's fold, over the views, and
blended as the manifest says (`--any-fold`: all members predict the rows of a fold without members).

At scale: label rows that share a window (eeg_id, spectrogram_id and both offsets) and a fold are read and
predicted once. The windows are cut into chunks of whole batches (`chunk_rows`); chunk k is computed by shard
k mod n (`--shard`, torchrun) and written atomically as `<out>.parts/chunk-<k>.npz`, tagged with a fingerprint of
the run. A run that starts again skips the chunks already on disk, so a stopped job loses at most one chunk per
process; the layout of the batches does not depend on the shards, so the files are the same bytes whether a run
was one process, torchrun, or stopped and resumed. The process that finds every chunk on disk (rank 0 under
torchrun) writes the pickle, its Parquet twin and the report of degraded / fallback rows (`fallback` policy).
"""
from __future__ import annotations

import json
import pickle
import shutil
import time
import zipfile
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .constants import CLASSES, SUBMISSION_ORDER, VOTE_COLUMNS
from .data import Competition
from .ensemble import Ensemble
from .errors import HMSInputError
from .fallback import Problem, announce, finish_run, status_counts, write_report
from .files import atomic_path, check_writable
from .loader import resolve_workers
from .manifest import Manifest, Member, load_manifest
from .metric import kl_divergence, solution_probabilities
from .parity import read_train_table
from .sharding import INCOMPLETE, Shard, fingerprint, member_key  # noqa: F401 (INCOMPLETE: the CLI's)
from .submission import validate_probabilities

WINDOW_COLUMNS = ("eeg_id", "eeg_label_offset_seconds", "spectrogram_id", "spectrogram_label_offset_seconds")
ALL_MEMBERS = "all members"  # the group of `--any-fold` rows
PICKLE_PROTOCOL = 4  # Python >= 3.4: whatever the training environment runs
CHUNK_ROWS = 1024  # windows per part: about 30 s of a GPU; what a lost process loses at most


@dataclass(frozen=True)
class Chunk:
    """Windows [start, stop) of one group: whole batches, predicted by the group's members."""

    index: int
    group: str
    start: int
    stop: int


def read_label_table(path: str | Path) -> pd.DataFrame:
    """The training table with `fold` and votes (`parity.read_train_table`); `label_id` must be unique."""
    table = read_train_table(path)
    twice = table["label_id"].duplicated().to_numpy()
    if twice.any():
        i = int(np.flatnonzero(twice)[0])
        raise HMSInputError(f"{path} row {i}: label_id {table['label_id'].iloc[i]} appears more than once "
                            f"(the pseudo labels are keyed by label_id)")
    return table


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


def _part(parts: Path, chunk: Chunk) -> Path:
    return parts / f"chunk-{chunk.index:06d}.npz"


def write_part(parts: Path, chunk: Chunk, key: str, probs: np.ndarray, problems: Mapping[int, Sequence[Problem]]
               ) -> None:
    """One chunk's (n, 6) probabilities and its windows' problems ({window: problems}), atomically."""
    with atomic_path(_part(parts, chunk)) as tmp, open(tmp, "wb") as f:
        np.savez(f, key=np.array(key), probs=probs, notes=np.array(json.dumps(sorted(problems.items()))))


def read_part(parts: Path, chunk: Chunk, key: str) -> tuple[np.ndarray, dict[int, list[Problem]]] | None:
    """A chunk's probabilities and problems if its part is on disk and of this run, else None."""
    path = _part(parts, chunk)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key or z["probs"].shape != (chunk.stop - chunk.start, len(CLASSES)):
                return None
            notes = {int(w): [tuple(p) for p in problems] for w, problems in json.loads(str(z["notes"]))}
            return z["probs"], notes
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # a damaged part is computed again
        return None


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


def pseudo_labels(data_dir: str | Path, table: str | Path, manifest: str | Path | Manifest, out: str | Path,
                  weights_dir: str | Path | None = None, members: str = "*", tta: Sequence[str] | str | None = None,
                  device: str = "auto", precision: str = "auto", batch_size: int | str = "auto",
                  num_workers: int | str = "auto", shard: str | None = None, any_fold: bool = False,
                  strict: bool = False, chunk_rows: int = CHUNK_ROWS, time_limit: float | None = None,
                  progress: bool = True) -> dict:
    """Predict every label row of `table` out of fold and write `out` (pickle), its `.parquet` twin and
    `.issues.json`; return a summary (`rows`, `windows`, `score`, `degraded`, `fallback`, `any_fold_rows`,
    `chunks`, `chunks_on_disk`, `written`, `stopped`, `seconds`).

    `data_dir` holds `train_eegs/` and `train_spectrograms/`; `table` the training table (`eeg_id`, `eeg_sub_id`,
    both offsets, `spectrogram_id`, `label_id`, `fold`, votes). `members` is a glob on member names; `tta`
    overrides the manifest's views. Chunks of about `chunk_rows` windows are written to `<out>.parts/`;
    `time_limit` (seconds) stops after the chunk that passes it (`stopped`; run again to resume).
    """
    t0 = time.perf_counter()
    pkl, parquet, issues_path = outputs(out)
    for path in (pkl, parquet, issues_path):
        check_writable(path)
    if chunk_rows < 1:
        raise HMSInputError(f"--chunk-rows must be a positive integer, got {chunk_rows!r}")
    source = "the manifest"
    if not isinstance(manifest, Manifest):
        source, weights_dir = str(manifest), weights_dir or Path(manifest).parent
        manifest = load_manifest(manifest)
    weights_dir = Path(weights_dir or ".")
    for folder in ("train_eegs", "train_spectrograms"):
        if not (Path(data_dir) / folder).is_dir():
            raise HMSInputError(f"{data_dir}: no {folder}/ folder (--data-dir is the competition folder)")
    labels = read_label_table(table)
    targets = solution_probabilities(labels)  # refuses bad votes before any model runs
    chosen = [m for m in manifest.members if fnmatch(m.name, members)]
    if not chosen:
        raise HMSInputError(f"--members {members!r} matches none of the members of {source}: "
                            f"{[m.name for m in manifest.members]}")
    row_group, groups = fold_groups(labels, chosen, any_fold, source)
    part = Shard.resolve(shard)
    workers = resolve_workers(num_workers)

    needed = sorted({i for idx in groups.values() for i in idx})
    ens = Ensemble.from_manifest(Manifest([chosen[i] for i in needed], manifest.tta, manifest.blend,
                                          fallback=manifest.fallback), weights_dir, device, precision, tta)
    sub = {g: ens.subset(ens.tta, [needed.index(i) for i in idx]) for g, idx in groups.items()}  # models shared
    size = ens.batch_size(batch_size)
    t1 = time.perf_counter()

    windows, window_of, window_group = plan_windows(labels, row_group, list(groups))
    comp = Competition(data_dir, "train", table=windows, table_name=Path(table).name)
    chunks = plan_chunks(window_group, size, chunk_rows)
    key = fingerprint(windows[list(WINDOW_COLUMNS)], window_group,
                      {g: [member_key(chosen[i], weights_dir) for i in idx] for g, idx in groups.items()},
                      ens.tta, ens.blend_mode, ens.precision, size, chunk_rows)
    parts = Path(f"{pkl}.parts")
    on_disk = {c.index for c in chunks if read_part(parts, c, key) is not None}
    todo = [c for c in chunks if c.index % part.count == part.index and c.index not in on_disk]
    computed, stopped = 0, False
    bar = tqdm(total=sum(c.stop - c.start for c in todo), desc="hms_infer pseudo-labels", unit="window",
               disable=not progress)
    try:
        for k, c in enumerate(todo):
            rows = list(range(c.start, c.stop))
            probs, problems = sub[c.group].predict_rows(comp, rows, size, workers, progress=False, strict=strict)
            write_part(parts, c, key, probs, problems)
            computed += len(rows)
            bar.update(len(rows))
            if time_limit is not None and time.perf_counter() - t0 >= time_limit and k + 1 < len(todo):
                stopped = True
                break
    finally:
        bar.close()
    dt = time.perf_counter() - t1
    if part.distributed:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    how = (f"{len(ens.members)} members in {len(groups)} group(s) x {len(ens.tta)} views on "
           f"{','.join(str(d) for d in ens.devices)} {ens.precision}, batch {size}")
    pace = f"{1000 * dt / computed:.1f} s per 1,000 windows; " if computed else ""
    summary = {"rows": len(labels), "windows": len(windows), "chunks": len(chunks), "chunks_on_disk": len(on_disk),
               "computed": computed, "stopped": stopped, "written": False, "seconds": round(dt, 3)}
    merged = None if part.distributed and part.index != 0 else _merge(parts, chunks, key, len(windows))
    if merged is None:
        state = "stopped by --time-limit" if stopped else f"shard {part}" if part.count > 1 else "incomplete"
        print(f"hms_infer pseudo-labels: {state}: {computed} windows computed in {dt:.1f} s ({pace}{how}); "
              f"{len(on_disk)} of {len(chunks)} chunks were on disk before; parts in {parts}"
              + ("; run the same command again to resume" if stopped else ""))
        return summary

    window_probs, window_problems = merged
    problems = {r: window_problems[w] for r, w in enumerate(window_of.tolist()) if w in window_problems}
    probs, issues = finish_run(window_probs[window_of], problems, ens.fallback, labels["eeg_id"].tolist(),
                               Path(table).name)
    probs = probs.astype(np.float32)
    validate_probabilities(probs)
    score = kl_divergence(targets, probs[:, list(SUBMISSION_ORDER)])
    if issues:
        print(announce(issues, len(labels), ens.fallback))
    write_pickle(pkl, {int(i): torch.from_numpy(p) for i, p in zip(labels["label_id"].tolist(), probs)})
    with atomic_path(parquet) as tmp:
        label_frame(labels, probs).to_parquet(tmp, index=False)
    write_report(issues_path, issues, len(labels))
    shutil.rmtree(parts, ignore_errors=True)
    n = status_counts(issues)
    any_rows = sum(g == ALL_MEMBERS for g in row_group)
    summary.update(written=True, score=score, any_fold_rows=any_rows, **n)
    print(f"hms_infer pseudo-labels: {len(labels)} label rows ({len(windows)} distinct windows read and predicted; "
          f"{n['degraded']} degraded, {n['fallback']} fallback"
          + (f"; {any_rows} rows of folds without members predicted by all members (--any-fold)" if any_rows else "")
          + f") in {dt:.1f} s ({pace}models loaded in {t1 - t0:.1f} s; {len(on_disk)} of {len(chunks)} chunks "
          f"were on disk), {how} -> {pkl}, {parquet} (problem rows: {issues_path})")
    print(f"score {score:.6f} (the pseudo labels against the table's votes, Kaggle's KL divergence)")
    return summary


def _merge(parts: Path, chunks: Sequence[Chunk], key: str, n_windows: int
           ) -> tuple[np.ndarray, dict[int, list[Problem]]] | None:
    """Every chunk's part -> (U, 6) probabilities and {window: problems}; None while a chunk is missing."""
    probs = np.zeros((n_windows, len(CLASSES)))
    problems: dict[int, list[Problem]] = {}
    for c in chunks:
        found = read_part(parts, c, key)
        if found is None:
            return None
        probs[c.start:c.stop] = found[0]
        problems.update(found[1])
    return probs, problems
