"""The visual report: its numbers read back from the HTML against the submission, the votes and a direct eager
forward of each member; its figures (size, not blank, the signals and images the model saw); the page formats (one
row or --full: PNG at full resolution; several rows: WebP, each page under its stated size); row selection errors."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import imread  # noqa: E402
from PIL import Image  # noqa: E402

from hms_infer.cli import main  # noqa: E402
from hms_infer.constants import (  # noqa: E402
    EEG_SCALE, HEADS, REPORT_COMPACT_DPI, REPORT_DPI, REPORT_FIGSIZE, REPORT_PAGE_MAX_BYTES, REPORT_WEBP_QUALITIES,
    SUBMISSION_CLASSES, SUBMISSION_ORDER, VOTE_COLUMNS,
)
from hms_infer.data import Competition, Row  # noqa: E402
from hms_infer.ensemble import Ensemble  # noqa: E402
from hms_infer.preprocess import eeg_electrodes, spectrogram_image  # noqa: E402
from hms_infer.montage import bipolar  # noqa: E402
from hms_infer.report import figure  # noqa: E402
from hms_infer.tasks.report import compact_page, make_report  # noqa: E402
from hms_infer.report import drawing  # noqa: E402
from hms_infer.report.analysis import Report, RowInputs, RowReport  # noqa: E402
from hms_infer.report.drawing import nice_step, trace_offsets  # noqa: E402
from hms_infer.report.pages import index_page, row_page  # noqa: E402
from hms_infer.synthetic import write_competition  # noqa: E402

from .conftest import save_tiny_checkpoint  # noqa: E402

# A smaller tiny arch than conftest's (a 396 x 200 STFT image, 2 WaveNet blocks): the report runs several passes.
SMALL_ARCH = {
    "backbone": "test_efficientnet", "backbone_comp": "test_efficientnet",
    "stft": {"n_fft": 64, "win_length": 64, "hop_length": 100, "fmax": 40.0, "window": "cosine",
             "freq_scale": "linear", "stack_factor": 2},
    "wavenet": {"n_blocks": 2, "out_channels": 4, "ds_factor": 20},
}
SIZE = (int(REPORT_FIGSIZE[1] * REPORT_DPI), int(REPORT_FIGSIZE[0] * REPORT_DPI))  # PNG (height, width)
COMPACT_SIZE = (935, 1360)  # WebP of a several-row report (height, width): REPORT_FIGSIZE at REPORT_COMPACT_DPI


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("report_weights")
    members = []
    for fold in (0, 1):
        save_tiny_checkpoint(d / f"small_{fold}.pt", seed=10 + fold, arch=SMALL_ARCH)
        members.append({"name": f"small{fold}", "checkpoint": f"small_{fold}.pt", "sha256": None, "weight": 1.0 + fold,
                        "fold": fold, "arch": SMALL_ARCH})
    path = d / "weights_manifest.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "tta": ["none", "lr"], "blend": "prob", "members": members}))
    return path


class Tables(HTMLParser):
    """Every <table id=...>'s rows as (tr attributes, {data-col: data-value}); every href and src; span values."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[tuple[dict, dict]]] = {}
        self.links: list[str] = []
        self.sources: list[str] = []
        self.values: dict[str, str] = {}
        self._rows: list | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._rows = self.tables.setdefault(a["id"], [])
        elif tag == "tr" and self._rows is not None:
            self._rows.append((a, {}))
        elif tag == "td" and self._rows and "data-col" in a:
            self._rows[-1][1][a["data-col"]] = a["data-value"]
        elif tag == "span" and "id" in a:
            self.values[a["id"]] = a["data-value"]
        if "href" in a:
            self.links.append(a["href"])
        if "src" in a:
            self.sources.append(a["src"])

    def handle_endtag(self, tag):
        if tag == "table":
            self._rows = None

    def rows(self, table: str) -> list[tuple[dict, dict]]:
        return [(a, cells) for a, cells in self.tables[table] if cells]


def probabilities(cells: dict, columns) -> np.ndarray:
    return np.array([float(cells[c]) for c in columns])


def test_html_probabilities_equal_the_submission_and_every_page_is_linked(manifest, tmp_path, capsys):
    synthetic_dir = write_competition(tmp_path / "data", n_test=2, n_train_eegs=0, seed=3)  # predict runs every row
    out = tmp_path / "report"
    args = ["--manifest", str(manifest), "--device", "cpu", "--num-workers", "0", "--tta", "none"]
    assert main(["report", "--test-dir", str(synthetic_dir), "--rows", "1,0", "--full", "--out", str(out), *args]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.match(r"hms_infer report: 2 rows in [\d.]+ s \([\d.]+ rows/s; forward [\d.]+ s, figures [\d.]+ s; "
                    r"models loaded in [\d.]+ s\), 2 members x 1 views on cpu fp32; pages PNG at 100 dpi, the largest "
                    r"\d+ kB -> .*index\.html$", summary)
    assert main(["--test-dir", str(synthetic_dir), "--out", str(tmp_path / "sub.csv"), *args]) == 0
    sub = pd.read_csv(tmp_path / "sub.csv")

    index = Tables((out / "index.html").read_text())
    rows = index.rows("rows")
    assert [a["data-row"] for a, _ in rows] == ["1", "0"]  # the order asked for
    for attrs, cells in rows:
        i = int(attrs["data-row"])
        assert int(attrs["data-eeg-id"]) == sub.eeg_id[i]
        shown = probabilities(cells, VOTE_COLUMNS)
        np.testing.assert_allclose(shown, sub.loc[i, list(VOTE_COLUMNS)].to_numpy(float), rtol=0, atol=1e-6)
        assert cells["predicted"] == SUBMISSION_CLASSES[int(np.argmax(shown))]
        assert float(cells["confidence"]) == shown.max()
        # the page: linked from the index, links back, its own table says the same, its image is the PNG
        assert attrs["data-page"] in index.links
        page = Tables((out / attrs["data-page"]).read_text())
        assert "index.html" in page.links
        (blend_attrs, blend_cells), = page.rows("blend")
        np.testing.assert_array_equal(probabilities(blend_cells, SUBMISSION_CLASSES), shown)
        png = (out / attrs["data-page"]).with_suffix(".png")
        (src,) = page.sources
        assert src.startswith("data:image/png;base64,") and base64.b64decode(src.split(",", 1)[1]) == png.read_bytes()
        assert not [u for u in page.links + page.sources + index.links if re.match(r"(https?:)?//", u)]
        image = imread(png)
        assert image.shape[:2] == SIZE
        assert image[..., :3].std() > 0.1  # not blank: traces, images and bars
    assert sorted(p.name for p in out.glob("*.png")) == ["row00000_eeg_id_1000.png", "row00001_eeg_id_1017.png"]
    assert "<script>" in (out / "index.html").read_text()  # the sorting, inline


def _image(src: str) -> tuple[str, Image.Image]:
    """A data URI's mime type and its decoded image (RGB)."""
    head, data = src.split(",", 1)
    mime = head.removeprefix("data:").removesuffix(";base64")
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    return mime, image


@pytest.fixture(scope="module")
def demo_reports(synthetic_dir, manifest, tmp_path_factory) -> tuple[Path, Path]:
    """`report --all` and `report --rows 2` on the demo's rows: `make demo` writes `write_competition(n_test=4)`,
    the same 4 test rows as `synthetic_dir`; `--all` into a copy of the one-row report, whose PNG it must remove.
    Returns both report folders."""
    root = tmp_path_factory.mktemp("demo_reports")
    args = ["--test-dir", str(synthetic_dir), "--manifest", str(manifest), "--device", "cpu", "--num-workers", "0",
            "--tta", "none"]
    assert main(["report", "--rows", "2", "--out", str(root / "one"), *args]) == 0
    shutil.copytree(root / "one", root / "all")
    assert main(["report", "--all", "--out", str(root / "all"), *args]) == 0
    return root / "all", root / "one"


def test_report_all_pages_are_webp_under_the_stated_size_and_linked(demo_reports):
    """Several rows: each page embeds a WebP at 1360 x 935 and is at most REPORT_PAGE_MAX_BYTES; no image files
    (an earlier one-row report's PNG removed); the index links every page, in table order, and each page links back."""
    out, _ = demo_reports
    index = Tables((out / "index.html").read_text())
    rows = index.rows("rows")
    assert [a["data-row"] for a, _ in rows] == ["0", "1", "2", "3"]
    assert [a["data-page"] for a, _ in rows] == [h for h in index.links if h.endswith(".html")]
    assert sorted(p.name for p in out.iterdir()) == sorted(["index.html", *(a["data-page"] for a, _ in rows)])
    for attrs, cells in rows:
        path = out / attrs["data-page"]
        assert 100_000 < path.stat().st_size <= REPORT_PAGE_MAX_BYTES  # a figure, not an empty page; under 300 kB
        page = Tables(path.read_text())
        assert "index.html" in page.links
        (src,) = page.sources
        mime, image = _image(src)
        assert (mime, image.format, image.size[::-1]) == ("image/webp", "WEBP", COMPACT_SIZE)
        assert np.asarray(image.convert("RGB"), float).std() > 25  # not blank: traces, images and bars
        (_, blend), = page.rows("blend")
        assert [blend[c] for c in SUBMISSION_CLASSES] == [cells[c] for c in VOTE_COLUMNS]


def test_the_single_row_page_is_unchanged_a_full_resolution_png(demo_reports):
    """One row: the page embeds the PNG written beside it, at REPORT_DPI; its figure is the one the several-row
    report shows compressed (the WebP is the PNG scaled to 85 % and encoded lossily: close, not equal)."""
    out_all, out_one = demo_reports
    (attrs, _), = Tables((out_one / "index.html").read_text()).rows("rows")
    name = attrs["data-page"]
    assert sorted(p.name for p in out_one.iterdir()) == sorted(["index.html", name, name.replace(".html", ".png")])
    (src,) = Tables((out_one / name).read_text()).sources
    png = (out_one / name).with_suffix(".png").read_bytes()
    assert src == "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    mime, full = _image(src)
    assert (mime, full.format, full.size[::-1]) == ("image/png", "PNG", SIZE)

    def blocks(page: Path, image: Image.Image | None = None) -> np.ndarray:
        """The page's figure (or `image`) as 80 x 55 block means (RGB 0-255): the layout, not the pixels."""
        image = image or _image(Tables(page.read_text()).sources[0])[1]
        return np.asarray(image.convert("RGB").resize((80, 55), Image.Resampling.BOX), float)
    single = blocks(out_one / name, full)
    same, other = (np.abs(blocks(out_all / n) - single).mean() for n in (name, "row00001_eeg_id_1017.html"))
    assert same < 2.5 and other > 3 * same  # the same figure; another row's differs


def test_compact_page_steps_down_the_webp_quality_until_the_page_fits(monkeypatch):
    """`compact_page` uses the first of REPORT_WEBP_QUALITIES whose page fits the limit, the last where none does."""
    rng = np.random.default_rng(0)
    r = RowReport(Row(0, "eeg_id", 7, 7, 9, None, None), np.full(6, 1 / 6), rng.dirichlet(np.ones(6), (2, 2)),
                  rng.dirichlet(np.ones(6), (2, 4)))
    report = Report("test", "test.csv", ["m0", "m1"], ["none", "lr"], [r])
    inputs = RowInputs(rng.normal(size=(24, 10_000)).astype(np.float32), rng.normal(size=(4, 300, 100)),
                       rng.normal(size=(396, 200)), "m0")

    def page(quality: int) -> str:
        image = drawing.rendered(drawing.draw(report, r, inputs), REPORT_COMPACT_DPI)
        return row_page(report, r, "t", drawing.webp_bytes(image, quality), "image/webp")
    pages = {q: page(q) for q in REPORT_WEBP_QUALITIES}
    sizes = [len(pages[q].encode()) for q in REPORT_WEBP_QUALITIES]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1] * 1.3  # lower quality, smaller page
    for limit, quality in ((10**7, REPORT_WEBP_QUALITIES[0]), (sizes[1], REPORT_WEBP_QUALITIES[1]),
                           (sizes[1] - 1, REPORT_WEBP_QUALITIES[2]), (1000, REPORT_WEBP_QUALITIES[-1])):
        monkeypatch.setattr("hms_infer.tasks.report.REPORT_PAGE_MAX_BYTES", limit)
        assert compact_page(drawing, report, r, "t", drawing.draw(report, r, inputs)) == pages[quality]


def _direct_heads(model: torch.nn.Module, electrodes: np.ndarray, spect: np.ndarray, views) -> np.ndarray:
    """(4, 6) each head's softmax averaged over `views`, from `HMSModel.forward` on each view's montage."""
    outs = []
    with torch.inference_mode():
        for v in views:
            heads = model(torch.from_numpy(bipolar(electrodes, v))[None], torch.from_numpy(spect)[None])
            outs.append(torch.stack([heads[h][0] for h in HEADS]).double().softmax(-1).numpy())
    return np.mean(outs, axis=0)


def test_train_split_votes_kl_and_aux_heads_equal_a_direct_forward(synthetic_dir, manifest, tmp_path):
    comp = Competition(synthetic_dir, "train")
    eeg_id = min(comp.table.eeg_id, key=lambda e: (comp.table.eeg_id == e).sum())  # the one with the fewest rows
    mine = [i for i, r in enumerate(comp.rows) if r.eeg_id == eeg_id]
    index_path = make_report(data_dir=synthetic_dir, out=tmp_path / "r", manifest=manifest, split="train",
                             eeg_ids=[eeg_id], device="cpu", num_workers=0, progress=False)
    rows = Tables(index_path.read_text()).rows("rows")
    assert [int(a["data-row"]) for a, _ in rows] == mine and len(mine) >= 2  # every row of the eeg_id
    ens = Ensemble.from_manifest(manifest, device="cpu")
    for attrs, cells in rows:
        i = int(attrs["data-row"])
        assert int(cells["label_id"]) == comp.table.label_id[i]
        votes = comp.table.loc[i, list(VOTE_COLUMNS)].to_numpy(float)
        y, p = votes / votes.sum(), probabilities(cells, VOTE_COLUMNS)
        kl = sum(a * np.log(a / b) for a, b in zip(y, p) if a > 0)
        assert float(cells["kl"]) == pytest.approx(kl, rel=1e-12)
        assert cells["consensus"] == SUBMISSION_CLASSES[int(np.argmax(votes))]
        page = Tables((index_path.parent / attrs["data-page"]).read_text())
        shown_votes = [c for a, c in page.rows("blend") if a["data-kind"] == "votes"][0]
        np.testing.assert_allclose(probabilities(shown_votes, SUBMISSION_CLASSES), y, rtol=1e-12)
        assert float(page.values["kl"]) == float(cells["kl"])
        if i != mine[0]:
            continue
        # auxiliary heads: a direct eager forward of each member on the same inputs, view by view
        row, raw_eeg, raw_spect = comp[i]
        electrodes, spect = eeg_electrodes(raw_eeg), spectrogram_image(raw_spect)
        heads = page.rows("heads")
        assert [(a["data-member"], a["data-head"]) for a, _ in heads] == [
            (m.name, h) for m in ens.members for h in HEADS]
        for k, member in enumerate(ens.members):
            direct = _direct_heads(member.model, electrodes, spect, ens.views)  # (4, 6) in CLASSES order
            shown = np.stack([probabilities(c, SUBMISSION_CLASSES) for _, c in heads[4 * k:4 * k + 4]])
            np.testing.assert_allclose(shown, direct[:, list(SUBMISSION_ORDER)], rtol=0, atol=2e-6)
            assert np.abs(shown[1:] - shown[0]).max() > 1e-4  # the aux heads say something of their own
        # head `all` averaged over the views is the mean of the member's view rows
        view_rows = [probabilities(c, SUBMISSION_CLASSES) for _, c in page.rows("member_view")]
        np.testing.assert_allclose(np.mean(view_rows[:2], axis=0), probabilities(heads[0][1], SUBMISSION_CLASSES),
                                   atol=1e-12)


def test_every_head_comes_from_the_same_pass_and_the_default_path_is_unchanged(synthetic_dir, manifest, monkeypatch):
    """`member_logits(heads=True)` is one pass giving (M, B, V, 4, 6); its `all` head is bit-identical to the
    default path's (M, B, V, 6) logits; the reference path (`fast=False`) gives the same heads."""
    ens = Ensemble.from_manifest(manifest, device="cpu", views="none,lr")
    _, raw_eeg, raw_spect = Competition(synthetic_dir, "test")[1]
    el = torch.from_numpy(eeg_electrodes(raw_eeg))[None]
    sp = torch.from_numpy(spectrogram_image(raw_spect))[None]
    every = ens.member_logits(el, sp, heads=True)
    assert every.shape == (2, 1, 2, len(HEADS), 6)
    assert torch.equal(every[..., 0, :], ens.member_logits(el, sp))  # `all`: the very numbers of predict
    # (each head against `HMSModel.forward`: test_train_split_votes_kl_and_aux_heads_equal_a_direct_forward)
    reference = Ensemble.from_manifest(manifest, device="cpu", views="none", fast=False)  # one forward per view
    torch.testing.assert_close(reference.member_logits(el, sp, heads=True), every[:, :, :1], rtol=0, atol=1e-5)

    def out_of_memory(eeg, s):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
    monkeypatch.setattr(ens, "_member_forward", lambda *args, **kwargs: out_of_memory)
    lost = ens.member_logits(el, sp, heads=True)  # one row still out of memory: NaN, so that it falls back
    assert lost.shape == every.shape and lost.isnan().all()


def test_notebook_figure_shows_the_signals_and_images_the_model_saw(synthetic_dir, manifest):
    ens = Ensemble.from_manifest(manifest, device="cpu", views="none")
    comp = Competition(synthetic_dir, "test")
    fig = figure(ens, comp, 3)
    assert isinstance(fig, Figure)
    assert tuple(fig.get_size_inches() * fig.dpi) == (SIZE[1], SIZE[0])
    _, raw_eeg, raw_spect = comp[3]
    signals = bipolar(eeg_electrodes(raw_eeg), "none")
    traces = fig.axes[0]
    (lines,) = [c for c in traces.collections if isinstance(c, LineCollection)]
    segments = lines.get_segments()
    assert len(segments) == 24
    drawn = np.stack([s[:, 1] for s in segments]) - trace_offsets()[:, None]
    scale = (drawn * signals).sum() / (signals**2).sum()  # one amplitude scale for all 24 traces
    np.testing.assert_allclose(drawn, signals * scale, rtol=1e-5, atol=1e-6)
    bar = [t.get_text() for t in traces.texts if t.get_text().endswith("µV")]
    assert bar == [f"{nice_step(EEG_SCALE / scale):g} µV"]
    spect_shown = fig.axes[1].images[0].get_array()
    image = spectrogram_image(raw_spect)
    np.testing.assert_array_equal(spect_shown[:100], image[0].T)  # LL at the bottom, frequency up
    np.testing.assert_array_equal(spect_shown[300:], image[3].T)
    stft = ens.members[0].model.eeg_backbone
    with torch.inference_mode():
        spectra = stft.spectra(torch.from_numpy(signals)[None])[0]  # (24, Fq, Tf)
    stft_shown = np.asarray(fig.axes[3].images[0].get_array())
    fq, tf = spectra.shape[1:]
    assert stft_shown.shape == (24 * fq // 2, 2 * tf)  # stacked along frequency, folded by stack_factor 2
    np.testing.assert_array_equal(stft_shown.reshape(24 * fq, tf), spectra.reshape(24 * fq, tf).numpy())


@pytest.mark.parametrize("pick, message", [
    (["--eeg-id", "1000", "424242"], r"--eeg-id 424242: no row of .*test\.csv has this eeg_id"),
    (["--rows", "0,9"], r"--rows 9: .*test\.csv has rows 0\.\.3"),
    (["--rows", "a,b"], r"--rows must be comma-separated row numbers"),
])
def test_unknown_rows_are_a_clear_error_before_any_work(synthetic_dir, manifest, tmp_path, capsys, pick, message):
    out = tmp_path / "report"
    code = main(["report", "--test-dir", str(synthetic_dir), *pick, "--manifest", str(manifest), "--device", "cpu",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and re.search(message, err) and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


_DOM_STUB = """
const table = JSON.parse(process.argv[1]);  // {script, rows: [[cell data-value, ...], ...]}
const body = {rows: table.rows.map(r => ({cells: r.map(v => ({dataset: {value: v}, textContent: v})), values: r})),
              appendChild(row) { this.rows.splice(this.rows.indexOf(row), 1); this.rows.push(row); }};
const ths = table.rows[0].map(() => ({dataset: {}, closest: () => ({tBodies: [body]}),
                                      addEventListener(type, f) { this.click = f; }}));
const document = {querySelectorAll: () => ths};
eval(table.script);
const order = [];
for (const col of table.clicks) { ths[col].click(); order.push(body.rows.map(r => r.values[0])); }
console.log(JSON.stringify(order));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's script")
def test_index_sorts_by_a_clicked_column(tmp_path):
    """The index's inline script, run by node on its own table: numbers sort as numbers, a second click reverses."""
    probs = np.array([[0.1, 0.5, 0.1, 0.1, 0.1, 0.1], [0.05, 0.05, 0.05, 0.05, 0.05, 0.75],
                      [0.3, 0.2, 0.2, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1, 0.58, 0.02]])
    rows = [RowReport(Row(i, "eeg_id", 7 + i, 7 + i, 9, None, None), p, np.zeros((1, 1, 6)), np.zeros((1, 4, 6)))
            for i, p in enumerate(probs)]
    text = index_page(Report("test", "test.csv", ["m"], ["none"], rows), 1.0)
    parsed = Tables(text)
    header = list(parsed.rows("rows")[0][1])
    table = [list(cells.values()) for _, cells in parsed.rows("rows")]
    script = re.search(r"<script>(.*)</script>", text, re.S).group(1)
    clicks = [header.index("confidence"), header.index("confidence"), header.index("predicted")]
    run = subprocess.run(["node", "-e", _DOM_STUB, json.dumps({"script": script, "rows": table, "clicks": clicks})],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    by_confidence, reversed_, by_class = json.loads(run.stdout)
    assert by_confidence == ["2", "0", "3", "1"]  # 0.3 < 0.5 < 0.58 < 0.75
    assert reversed_ == ["1", "3", "0", "2"]
    assert by_class == ["3", "0", "1", "2"]  # grda, lpd, other, seizure


def test_nothing_but_the_report_imports_matplotlib():
    """`predict`, the CLI and kernel.py's imports run without the `plot` extra."""
    package = Path(__file__).resolve().parents[1] / "hms_infer"
    names = sorted(".".join(("hms_infer", *p.relative_to(package).with_suffix("").parts)).removesuffix(".__init__")
                   for p in package.rglob("*.py") if "report" not in p.parts and p.stem not in ("__main__", "report"))
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n    importlib.import_module(name)\n"
            "print(len(sys.modules), 'matplotlib' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[1] == "False" and "hms_infer.cli" in names and "hms_infer.ensemble" in names


def test_a_returned_figure_shows_inline_in_ipython():
    """In a kernel where pyplot was never imported, Figures get IPython's PNG display (what Jupyter shows)."""
    pytest.importorskip("IPython")
    code = """
from IPython.core.interactiveshell import InteractiveShell
from matplotlib.figure import Figure
from hms_infer.report.drawing import show_inline_in_ipython
shell = InteractiveShell.instance()
fig = Figure()
fig.add_subplot().plot([0, 1])
before = set(shell.display_formatter.format(fig)[0])
show_inline_in_ipython()
after = shell.display_formatter.format(fig)[0]
print(sorted(before), sorted(after), after["image/png"][:8])
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["['text/plain']", "['image/png',", "'text/plain']", "iVBORw0K"]  # base64 PNG
