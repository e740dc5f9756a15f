"""`parity`: recompute saved out-of-fold logits (SPEC §5) fold by fold and compare.

The training code saved, for its validation fold, `preds/<label_id>/pred_<seed>.npy` = the 6 `head_all` logits
(`CLASSES` order, fp32) from fp16-mixed inference without TTA (`training.read_preds_dir`, `training.read_oof`).
Each fold is recomputed with the manifest member whose `fold` is that fold, view `none` only, and compared logit by
logit; the KL score (metric.py) of both against the expert votes shows what a difference would cost.
"""
from __future__ import annotations

import json
import logging
import time
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy.special import softmax

from ..constants import CLASSES, PARITY_TOLERANCE, SUBMISSION_ORDER
from ..data import Competition, check_folders
from ..ensemble import Ensemble
from ..errors import HMSInputError
from ..files import check_writable, write_text_atomic
from ..manifest import Manifest, Member, resolve_manifest
from ..metric import kl_divergence, solution_probabilities
from ..options import RunOptions
from ..sharding import Parts, Shard, fingerprint, member_key
from ..training import read_train_table, validation_rows

log = logging.getLogger(__name__)


def _fold_member(manifest: Manifest, fold: int, source: str, pattern: str) -> Member:
    """The one member of `fold` whose name matches the glob `pattern`."""
    found = [m for m in manifest.members if m.fold == fold and fnmatch(m.name, pattern)]
    if len(found) != 1:
        have = {m.name: m.fold for m in manifest.members}
        raise HMSInputError(f"fold {fold}: {source} has {len(found)} members with fold {fold} matching "
                            f"{pattern!r} (member folds: {have}); parity needs exactly one checkpoint per fold being "
                            f"compared (select one configuration with --members)")
    return found[0]


def parity(*, data_dir: str | Path, table: str | Path, manifest: str | Path | Manifest,
           saved: Mapping[int, np.ndarray], weights_dir: str | Path | None = None, options: RunOptions | None = None,
           tolerance: float = PARITY_TOLERANCE, report_path: str | Path | None = None, members: str = "*",
           **run: Any) -> dict:
    """Recompute the saved OOF logits `saved` ({label_id: (6,)}) fold by fold and compare; return the report.

    `weights_dir` defaults to the manifest file's folder (the current folder for a `Manifest`). `members` is a glob
    on member names that picks one configuration of a multi-configuration manifest (e.g. `cfg_1/*`). The report (also
    written as JSON to `report_path`) holds `rows`, `max_abs_logit_diff`, `mean_abs_logit_diff`, `kl_saved`,
    `kl_recomputed`, `passed`, per-fold and per-class details. With `options.shard` (or under torchrun) each process
    recomputes every n-th batch and the merging one (`sharding`) writes the report; the others return
    `{"merged": False, ...}`. The views are always `none` (the training code's validation).
    """
    options = RunOptions.of(options, **run)
    t0 = time.perf_counter()
    if report_path is not None:
        check_writable(report_path)
    manifest, weights_dir, source = resolve_manifest(manifest, weights_dir)
    check_folders(data_dir, "train")
    rows = validation_rows(read_train_table(table))
    has_pred = rows["label_id"].isin(list(saved)).to_numpy()
    if not has_pred.any():
        raise HMSInputError(f"no row to compare: none of the {len(rows)} validation rows of {table} (folds "
                            f"{sorted(rows['fold'].unique().tolist())}) has one of the {len(saved)} saved predictions "
                            f"(check the table, the preds folder and --seed)")
    without = int((~has_pred).sum())
    rows = rows[has_pred]  # index: row numbers in the table, for error messages
    targets = solution_probabilities(rows, str(table))  # refuses bad votes before any model runs
    folds = sorted(rows["fold"].unique().tolist())
    chosen = {f: _fold_member(manifest, f, source, members) for f in folds}

    saved_logits = np.stack([saved[i] for i in rows["label_id"]])
    part = Shard.resolve(options.shard)
    mine, values = [], []
    load_s, first_batch = 0.0, 0
    for fold in folds:
        t = time.perf_counter()
        ens = Ensemble.from_manifest(Manifest([chosen[fold]], source=manifest.source), weights_dir, options=options,
                                     views=("none",))
        load_s += time.perf_counter() - t
        where = np.flatnonzero(rows["fold"].to_numpy() == fold)
        comp = Competition(data_dir, "train", table=rows.iloc[where], table_name=Path(table).name)
        size = ens.batch_size(options.batch_size)
        fold_rows = part.rows(len(where), size, first_batch)
        first_batch += -(-len(where) // size)
        for index, logits, _ in ens.batch_logits(comp, fold_rows, size, options.num_workers, options.progress,
                                                 strict=True):
            mine.extend(where[index].tolist())
            values.append(logits[0, :, 0].numpy())
    values = np.concatenate(values) if values else np.zeros((0, len(CLASSES)), dtype=np.float32)
    folder = f"{report_path or 'hms_parity'}.parts"
    key = fingerprint(rows, sorted(saved), [member_key(chosen[f], weights_dir) for f in folds], str(ens.precision),
                      size, part.count)
    merged = part.gather(Parts(folder, key), mine, values, len(rows))
    dt = time.perf_counter() - t0
    if merged is None:
        log.info(f"hms_infer parity: shard {part}: {len(mine)} rows in {dt:.1f} s; part written to {folder}")
        return {"shard": str(part), "rows": len(mine), "merged": False, "passed": True}
    recomputed = merged[0].astype(np.float64)

    report = compare(rows, saved_logits, recomputed, targets, tolerance)
    for f in folds:
        report["folds"][str(f)]["member"] = chosen[f].name
    report.update({"rows_without_prediction": without, "device": ",".join(str(d) for d in ens.devices),
                   "precision": ens.precision, "seconds": round(dt, 3)})
    log.info(f"hms_infer parity: {len(rows)} rows in {dt:.1f} s ({len(rows) / dt:.2f} rows/s; models loaded in "
          f"{load_s:.1f} s), {len(folds)} fold(s) on {report['device']} {ens.precision}")
    if report_path is not None:
        write_text_atomic(report_path, json.dumps(report, indent=2) + "\n")
    log.info(format_report(report))
    return report


def compare(rows: pd.DataFrame, saved: np.ndarray, recomputed: np.ndarray, targets: np.ndarray,
            tolerance: float) -> dict:
    """Differences of (N, 6) saved vs recomputed logits of `rows`, and the KL of each against (N, 6) targets.

    Targets are in `VOTE_COLUMNS` order, logits in `CLASSES` order; p99 is over all N*6 logits.
    """
    diff = np.abs(recomputed - saved)
    fold_of = rows["fold"].to_numpy()
    p_saved, p_new = softmax(saved, axis=1), softmax(recomputed, axis=1)
    dprob = np.abs(p_new - p_saved)
    order = list(SUBMISSION_ORDER)
    kl_saved = kl_divergence(targets, p_saved[:, order])
    kl_new = kl_divergence(targets, p_new[:, order])
    worst = int(diff.max(axis=1).argmax())
    return {
        "rows": len(rows),
        "max_abs_logit_diff": float(diff.max()),
        "mean_abs_logit_diff": float(diff.mean()),
        "p99_abs_logit_diff": float(np.percentile(diff, 99)),
        "max_abs_prob_diff": float(dprob.max()),
        "worst_label_id": int(rows["label_id"].iloc[worst]),
        "kl_saved": kl_saved,
        "kl_recomputed": kl_new,
        "kl_diff": kl_new - kl_saved,
        "mean_abs_prob_diff": dict(zip(CLASSES, dprob.mean(axis=0).tolist())),
        "folds": {str(f): {"rows": int((fold_of == f).sum()), "max_abs_logit_diff": float(diff[fold_of == f].max())}
                  for f in sorted(set(fold_of.tolist()))},
        "tolerance": tolerance,
        "passed": bool(diff.max() <= tolerance),
    }


def format_report(report: dict) -> str:
    """The report as a readable table; the last line says PASSED or FAILED."""
    lines = [
        f"rows compared            {report['rows']} ({report['rows_without_prediction']} validation rows "
        f"had no saved prediction)",
        *(f"  fold {f:<21}{v['rows']} rows, member {v['member']}, max |dlogit| {v['max_abs_logit_diff']:.3e}"
          for f, v in report["folds"].items()),
        f"max |dlogit|             {report['max_abs_logit_diff']:.3e} (label_id {report['worst_label_id']})",
        f"mean |dlogit|            {report['mean_abs_logit_diff']:.3e}",
        f"p99 |dlogit|             {report['p99_abs_logit_diff']:.3e}",
        f"max |dprob|              {report['max_abs_prob_diff']:.3e}",
        f"KL saved vs labels       {report['kl_saved']:.6f}",
        f"KL recomputed vs labels  {report['kl_recomputed']:.6f}",
        f"KL difference            {report['kl_diff']:+.3e}",
        "mean |dprob| per class   " + "  ".join(f"{c} {v:.3e}" for c, v in report["mean_abs_prob_diff"].items()),
    ]
    verdict = "PASSED" if report["passed"] else "FAILED"
    sign = "<=" if report["passed"] else ">"
    lines.append(f"{verdict}: max |dlogit| {report['max_abs_logit_diff']:.3e} {sign} tolerance {report['tolerance']}")
    return "\n".join(lines)
