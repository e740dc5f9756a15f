"""Self-contained HTML: one page per row (its figure as a data URI, its numbers as tables) and a sortable index.

Every number a page shows is also in its cell's `data-value` at full precision (Python's `repr` of the float),
and every cell names its column in `data-col`, so the tables read back exactly. No network resources.
"""
from __future__ import annotations

import base64
import html
from typing import Iterable, Sequence

import numpy as np

from ..constants import HEADS, SUBMISSION_CLASSES, VOTE_COLUMNS
from .analysis import Report, RowReport

_STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#eee;cursor:pointer}
td.text,th.text{text-align:left}img{max-width:100%}caption{text-align:left;font-weight:bold;padding:4px 0}"""
# Click a column header to sort by it (numbers as numbers), again to reverse.
_SORT = """document.querySelectorAll("table.sortable th").forEach((th, col) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], rows = Array.from(body.rows);
  const dir = th.dataset.dir = th.dataset.dir === "asc" ? "desc" : "asc";
  const key = r => { const v = r.cells[col].dataset.value ?? r.cells[col].textContent, n = Number(v);
                     return v !== "" && !isNaN(n) ? n : v; };
  const sign = dir === "asc" ? 1 : -1;
  rows.sort((a, b) => { const x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * sign; });
  rows.forEach(r => body.appendChild(r));
}));"""


def page_name(r: RowReport) -> str:
    """The file stem of a row's PNG and page: table position and key, unique within a table."""
    return f"row{r.row.index:05d}_{r.row.key_name}_{r.row.key}"


def predicted(r: RowReport) -> tuple[str, float]:
    """(class, probability) of the row's most probable class; ('-', nan) without finite probabilities."""
    if not np.isfinite(r.probs).all():
        return "-", float("nan")
    k = int(np.argmax(r.probs))
    return SUBMISSION_CLASSES[k], float(r.probs[k])


def _cell(col: str, value: object, text: str | None = None) -> str:
    if isinstance(value, (float, np.floating)):
        shown = f"{value:.4f}" if text is None else text
        return f'<td data-col="{col}" data-value="{float(value)!r}">{html.escape(shown)}</td>'
    shown = str(value) if text is None else text
    return f'<td class="text" data-col="{col}" data-value="{html.escape(str(value))}">{html.escape(shown)}</td>'


def _table(caption: str, header: Sequence[str], rows: Iterable[tuple[dict[str, str], list[str]]],
           table_id: str, sortable: bool = False) -> str:
    """rows: (attributes of the <tr>, its <td> cells)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "\n".join("<tr" + "".join(f' {k}="{html.escape(v)}"' for k, v in attrs.items()) + ">" + "".join(cells)
                     + "</tr>" for attrs, cells in rows)
    cls = ' class="sortable"' if sortable else ""
    return (f'<table id="{table_id}"{cls}><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>\n{body}\n</tbody></table>")


def _document(title: str, body: str, script: str = "") -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>\n{body}\n"
            + (f"<script>{script}</script>" if script else "") + "</body></html>\n")


def _probability_rows(names: Sequence[tuple[dict[str, str], list[str]]], values: np.ndarray
                      ) -> list[tuple[dict[str, str], list[str]]]:
    """names: per row its <tr> attributes and leading cells; values (N, 6) -> the rows with one cell per class."""
    return [(attrs, lead + [_cell(c, float(p)) for c, p in zip(SUBMISSION_CLASSES, v)])
            for (attrs, lead), v in zip(names, values)]


def row_page(report: Report, r: RowReport, title: str, image: bytes, mime: str = "image/png") -> str:
    """The page of one row: its figure (`image`, a file's bytes of type `mime`) and its numbers (blend, votes and
    KL; each member and view; each head)."""
    parts = [f'<p><a href="index.html">all rows</a></p><h1>{html.escape(title)}</h1>']
    return _document(title, "\n".join(parts + row_sections(report, r, title, image, mime)))


def row_sections(report: Report, r: RowReport, title: str, image: bytes, mime: str = "image/png") -> list[str]:
    """A row's problems, its tables (`blend`, `member_view`, `heads`; the KL in `<span id="kl">`) and its figure
    (`image` of type `mime`, as a data URI)."""
    parts = []
    if r.problems:
        items = "".join(f"<li>{html.escape(i)}: {html.escape(f)}: {html.escape(why)}</li>" for i, f, why in r.problems)
        parts.append(f"<p>{html.escape(str(r.status))}: {len(r.problems)} problem(s)</p><ul>{items}</ul>")
    blend = [({"data-kind": "blend"}, [_cell("kind", "prediction")])]
    values = [r.probs]
    if r.votes is not None:
        blend.append(({"data-kind": "votes"}, [_cell("kind", "expert votes")]))
        values.append(r.votes)
    parts.append(_table("blended probabilities" + ("" if r.kl is None else f" (KL divergence {r.kl:.6f})"),
                        ["", *SUBMISSION_CLASSES], _probability_rows(blend, np.stack(values)), "blend"))
    if r.kl is not None:
        parts.append(f'<p>KL divergence of the prediction from the votes: <span id="kl" data-value="{r.kl!r}">'
                     f"{r.kl:.6f}</span></p>")
    pairs = [({"data-member": m, "data-view": v}, [_cell("member", m), _cell("view", v)])
             for m in report.members for v in report.views]
    parts.append(_table("each member and view: head `all` probabilities", ["member", "view", *SUBMISSION_CLASSES],
                        _probability_rows(pairs, r.member_view.reshape(-1, 6)), "member_view"))
    heads = [({"data-member": m, "data-head": h}, [_cell("member", m), _cell("head", h)])
             for m in report.members for h in HEADS]
    parts.append(_table("each member's heads: softmax averaged over the views (`all` the prediction; `spect`, "
                        "`eeg_stft`, `eeg_wavenet` one modality each)", ["member", "head", *SUBMISSION_CLASSES],
                        _probability_rows(heads, r.heads.reshape(-1, 6)), "heads"))
    b64 = base64.b64encode(image).decode("ascii")
    parts.append(f'<img alt="{html.escape(title)}" src="data:{mime};base64,{b64}">')
    return parts


def index_page(report: Report, seconds: float) -> str:
    """Every reported row: predicted class and confidence, the six probabilities (the submission's columns),
    status, with votes the consensus and KL; sortable by any column; each row links to its page."""
    votes = any(r.votes is not None for r in report.rows)
    keys = [k for k in dict.fromkeys(r.row.key_name for r in report.rows) if k != "eeg_id"]  # train: label_id
    header = ["row", "eeg_id", *keys, "spectrogram_id", "predicted", "confidence", *VOTE_COLUMNS, "status"]
    header += ["votes: consensus", "KL"] if votes else []
    rows = []
    for r in report.rows:
        cls, conf = predicted(r)
        link = f'<td data-col="row" data-value="{r.row.index}"><a href="{page_name(r)}.html">{r.row.index}</a></td>'
        cells = [link, _cell("eeg_id", str(r.row.eeg_id)), *(_cell(k, str(r.row.key)) for k in keys),
                 _cell("spectrogram_id", str(r.row.spectrogram_id)), _cell("predicted", cls),
                 _cell("confidence", conf), *(_cell(c, float(p)) for c, p in zip(VOTE_COLUMNS, r.probs)),
                 _cell("status", r.status or "ok")]
        if votes:
            consensus = "-" if r.votes is None else SUBMISSION_CLASSES[int(np.argmax(r.votes))]
            cells += [_cell("consensus", consensus), _cell("kl", float("nan") if r.kl is None else r.kl)]
        rows.append(({"data-row": str(r.row.index), "data-eeg-id": str(r.row.eeg_id),
                      "data-page": f"{page_name(r)}.html"}, cells))
    title = f"hms_infer report: {report.table_name}, {len(report.rows)} rows"
    body = (f"<h1>{html.escape(title)}</h1><p>{len(report.members)} members ({html.escape(', '.join(report.members))})"
            f" x {len(report.views)} views ({html.escape(', '.join(report.views))}); {seconds:.1f} s. Click a column "
            f"header to sort; a row number opens its page.</p>\n"
            + _table("rows", header, rows, "rows", sortable=True))
    return _document(title, body, _SORT)
