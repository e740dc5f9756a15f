"""The main command: run the ensemble of a manifest on a test folder and write the submission."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..budget import BudgetTracker, parse_budget
from ..constants import MANIFEST_NAME
from ..data import Competition
from ..ensemble import Ensemble
from ..errors import HMSInputError
from ..fallback import announce, finish_run, status_counts, write_report
from ..files import check_writable
from ..loader import resolve_workers
from ..manifest import Manifest, resolve_manifest
from ..options import RunOptions
from ..runtime import member_gflops
from ..sharding import Parts, Shard, fingerprint, member_key
from ..submission import to_submission, write_submission

log = logging.getLogger(__name__)


def predict(test_dir: str | Path, *, out: str | Path | None = None, manifest: str | Path | Manifest = MANIFEST_NAME,
            weights_dir: str | Path | None = None, options: RunOptions | None = None, strict: bool = False,
            time_budget: float | str | None = None, **run: Any) -> pd.DataFrame:
    """Run the ensemble of `manifest` on a test folder; write the submission atomically to `out` if given.

    `options` (or its fields by keyword: `device="cuda"`, `views=("none", "lr")`, ...) says how the models run.
    Every fault that does not depend on a row (table, options, output path, manifest, checkpoints) is an error
    before any inference. Rows without usable input follow the policy in `fallback` (degraded / fallback rows are
    logged as a table and written as JSON beside `out`, `<out>.issues.json`); with `strict` the first is an error.
    `options.shard` (`i/n`, or torchrun's RANK / WORLD_SIZE) predicts every n-th batch from the i-th and writes it as
    a part beside `out`; the process that completes the set of parts (rank 0 under torchrun) writes `out`, the same
    bytes as one process would. A shard that does not merge returns its own rows only.
    `time_budget` (seconds, counted from this call; per process): past its projection, the remaining rows run with
    fewer views, then fewer members (`budget`); what was dropped is logged and written to `<out>.issues.json`.
    """
    options = RunOptions.of(options, **run)
    t0 = time.perf_counter()
    budget_s = parse_budget(time_budget)
    comp = Competition(test_dir, "test")
    part = Shard.resolve(options.shard)
    if part.count > 1 and out is None:
        raise HMSInputError("sharding needs an output path: the parts are written beside it")
    if out is not None:
        check_writable(out)
    workers = resolve_workers(options.num_workers)
    ens = Ensemble.from_manifest(manifest, weights_dir, options=options)
    size = ens.batch_size(options.batch_size)
    rows = part.rows(len(comp), size)
    t1 = time.perf_counter()
    tracker = None if budget_s is None else BudgetTracker(
        budget_s, len(rows), ens.views, [m.name for m in ens.members], [member_gflops(m.arch) for m in ens.members],
        spent_s=t1 - t0)
    probs, problems = ens.predict_rows(
        comp, rows, size, workers, options.progress, strict=strict,
        route=None if tracker is None else lambda first: ens.subset(tracker.current.views, tracker.current.members),
        after_batch=None if tracker is None else tracker.batch_done)
    merged = (probs, problems)
    if part.count > 1:
        spec, checkpoints, _ = resolve_manifest(manifest, weights_dir)
        key = fingerprint(comp.table, spec.to_dict(), [member_key(m, checkpoints) for m in spec.members], ens.views,
                          ens.blend_mode, ens.precision, size, part.count)
        merged = part.gather(Parts(f"{out}.parts", key), rows, probs, len(comp), problems)
    dt = time.perf_counter() - t1
    how = (f"{len(ens.members)} members x {len(ens.views)} views on {','.join(map(str, ens.devices))} "
           f"{ens.precision}, batch {size}, WaveNet {ens.wave_backend}")
    ids = [r.eeg_id for r in comp.rows]
    if tracker is not None:
        log.info(tracker.summary())
    if merged is None:
        log.info(f"hms_infer: shard {part}: {len(rows)} rows in {dt:.1f} s ({len(rows) / dt:.2f} rows/s), {how}; "
                 f"part written to {out}.parts")
        return to_submission([ids[r] for r in rows], np.nan_to_num(probs))
    probs, issues = finish_run(*merged, ens.fallback, ids, comp.table_name)
    frame = to_submission(ids, probs)
    if issues:
        log.info(announce(issues, len(comp), ens.fallback))
    if out is not None:
        write_submission(frame, out)
        report = Path(out).with_suffix(".issues.json")
        write_report(report, issues, len(comp), None if tracker is None else tracker.report())
    n = status_counts(issues)
    log.info(f"hms_infer: {len(frame)} rows ({n['degraded']} degraded, {n['fallback']} fallback) in {dt:.1f} s "
             f"({len(frame) / dt:.2f} rows/s; models loaded in {t1 - t0:.1f} s), {how}"
             + (f" -> {out} (problem rows: {report})" if out is not None else ""))
    return frame
