"""`report`: the chosen rows' figures and pages and the index, from one batched pass (`hms_infer.report`; needs
matplotlib: `pip install hms_infer[plot]`)."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from ..data import Competition
from ..ensemble import Ensemble
from ..errors import HMSInputError
from ..files import atomic_path, check_writable, write_text_atomic
from ..loader import resolve_workers
from ..manifest import Manifest
from ..options import RunOptions
from ..report import drawing_module
from ..report.analysis import analyse, row_inputs, select_rows
from ..report.pages import index_page, page_name, row_page

log = logging.getLogger(__name__)


def parse_rows(text: str) -> list[int]:
    """`0,5,9` -> [0, 5, 9]; anything else is an `HMSInputError` naming `--rows`."""
    try:
        rows = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        rows = []
    if not rows:
        raise HMSInputError(f"--rows must be comma-separated row numbers (0-based), got {text!r}")
    return rows


def make_report(*, data_dir: str | Path, out: str | Path, manifest: str | Path | Manifest,
                weights_dir: str | Path | None = None, split: str = "test", rows: Sequence[int] | None = None,
                eeg_ids: Sequence[int] | None = None, options: RunOptions | None = None, **run: Any) -> Path:
    """Write `out/<row page>.png`, `out/<row page>.html` per chosen row and `out/index.html`; return the index.

    Rows: `rows` (table positions), every row of each of `eeg_ids`, or all. The table, the rows and the output
    folder are checked before the models load; every file is written atomically. `options` (or its fields by
    keyword): how the models run.
    """
    drawing = drawing_module("drawing", "the report needs")
    options = RunOptions.of(options, **run)
    progress = options.progress
    t0 = time.perf_counter()
    comp = Competition(data_dir, split)
    chosen = select_rows(comp, rows, eeg_ids)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise HMSInputError(f"{out}: is a file; --out is the report's folder")
    index = out / "index.html"
    check_writable(index)
    workers = resolve_workers(options.num_workers)
    ens = Ensemble.from_manifest(manifest, weights_dir, options=options)
    t1 = time.perf_counter()
    report = analyse(ens, comp, chosen, ens.batch_size(options.batch_size), workers, progress)
    t2 = time.perf_counter()
    for r in tqdm(report.rows, desc="report", unit="row", disable=not progress):
        png = drawing.png_bytes(drawing.draw(report, r, row_inputs(ens, comp, r.row.index)))
        name = page_name(r)
        with atomic_path(out / f"{name}.png") as tmp:
            tmp.write_bytes(png)
        write_text_atomic(out / f"{name}.html", row_page(report, r, drawing.row_title(report, r), png))
    t3 = time.perf_counter()
    write_text_atomic(index, index_page(report, t3 - t1))
    n = len(report.rows)
    devices = ",".join(str(d) for d in ens.devices)
    log.info(f"hms_infer report: {n} rows in {t3 - t1:.1f} s ({n / (t3 - t1):.2f} rows/s; forward {t2 - t1:.1f} s, "
             f"figures {t3 - t2:.1f} s; models loaded in {t1 - t0:.1f} s), {len(ens.members)} members x "
             f"{len(ens.views)} views on {devices} {ens.precision} -> {index}")
    return index
