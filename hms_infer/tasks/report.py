"""`report`: the chosen rows' figures and pages and the index, from one batched pass (`hms_infer.report`; needs
matplotlib: `pip install hms_infer[plot]`).

A report of one row, or any report with `full`, gives each row a PNG at full resolution (REPORT_DPI), written
beside its page and embedded in it. A report of several rows embeds a WebP at REPORT_COMPACT_DPI instead, sized
so that each page fits REPORT_PAGE_MAX_BYTES, and writes no separate image file: the page is the row's only file.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Sequence

from tqdm.auto import tqdm

from ..constants import REPORT_COMPACT_DPI, REPORT_DPI, REPORT_PAGE_MAX_BYTES, REPORT_WEBP_QUALITIES
from ..data import Competition
from ..ensemble import Ensemble
from ..errors import HMSInputError
from ..files import atomic_path, check_writable, write_text_atomic
from ..loader import resolve_workers
from ..manifest import Manifest
from ..options import RunOptions
from ..report import drawing_module
from ..report.analysis import Report, RowReport, analyse, row_inputs, select_rows
from ..report.pages import index_page, page_name, row_page

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


def compact_page(drawing: ModuleType, report: Report, r: RowReport, title: str, fig: Figure) -> str:
    """The row's page with `fig` drawn at REPORT_COMPACT_DPI as WebP, at the first of REPORT_WEBP_QUALITIES whose
    page fits REPORT_PAGE_MAX_BYTES (UTF-8); the last quality's page where none fits."""
    image = drawing.rendered(fig, REPORT_COMPACT_DPI)
    for quality in REPORT_WEBP_QUALITIES:
        page = row_page(report, r, title, drawing.webp_bytes(image, quality), "image/webp")
        if len(page.encode()) <= REPORT_PAGE_MAX_BYTES:
            break
    return page


def make_report(*, data_dir: str | Path, out: str | Path, manifest: str | Path | Manifest,
                weights_dir: str | Path | None = None, split: str = "test", rows: Sequence[int] | None = None,
                eeg_ids: Sequence[int] | None = None, full: bool = False, options: RunOptions | None = None,
                **run: Any) -> Path:
    """Write `out/<row page>.html` per chosen row and `out/index.html`; return the index.

    Rows: `rows` (table positions), every row of each of `eeg_ids`, or all. One row, or `full`: each page embeds
    its figure as a full-resolution PNG, also written as `out/<row page>.png`; several rows: a WebP, each page at
    most REPORT_PAGE_MAX_BYTES (a warning names those that are not). The table, the rows and the output folder are
    checked before the models load; every file is written atomically. `options` (or its fields by keyword): how
    the models run.
    """
    drawing = drawing_module("drawing", "the report needs")
    options = RunOptions.of(options, **run)
    progress = options.progress
    t0 = time.perf_counter()
    comp = Competition(data_dir, split)
    chosen = select_rows(comp, rows, eeg_ids)
    full = full or len(chosen) == 1
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
    largest, over = 0, []
    for r in tqdm(report.rows, desc="report", unit="row", disable=not progress):
        fig = drawing.draw(report, r, row_inputs(ens, comp, r.row.index))
        name, title = page_name(r), drawing.row_title(report, r)
        if full:
            png = drawing.png_bytes(fig)
            with atomic_path(out / f"{name}.png") as tmp:
                tmp.write_bytes(png)
            page = row_page(report, r, title, png)
        else:
            page = compact_page(drawing, report, r, title, fig)
            (out / f"{name}.png").unlink(missing_ok=True)  # an earlier full report's, no longer the page's image
        size = len(page.encode())
        largest = max(largest, size)
        over += [f"{name}.html"] if not full and size > REPORT_PAGE_MAX_BYTES else []
        write_text_atomic(out / f"{name}.html", page)
    t3 = time.perf_counter()
    if over:
        log.warning(f"{len(over)} of {len(report.rows)} pages exceed {REPORT_PAGE_MAX_BYTES} bytes even at WebP "
                    f"quality {REPORT_WEBP_QUALITIES[-1]} (largest {largest} bytes, e.g. {out / over[0]})")
    write_text_atomic(index, index_page(report, t3 - t1))
    n = len(report.rows)
    devices = ",".join(str(d) for d in ens.devices)
    log.info(f"hms_infer report: {n} rows in {t3 - t1:.1f} s ({n / (t3 - t1):.2f} rows/s; forward {t2 - t1:.1f} s, "
             f"figures {t3 - t2:.1f} s; models loaded in {t1 - t0:.1f} s), {len(ens.members)} members x "
             f"{len(ens.views)} views on {devices} {ens.precision}; pages "
             f"{'PNG' if full else 'WebP'} at {REPORT_DPI if full else REPORT_COMPACT_DPI} dpi, the largest "
             f"{largest / 1000:.0f} kB -> {index}")
    return index
