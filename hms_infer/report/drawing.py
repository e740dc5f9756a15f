"""One row's figure: the signals and images the models saw, and what each member, view and head said.

matplotlib (and Pillow, its dependency, for WebP) is imported here only (the `plot` extra); figures are drawn on
the Agg canvas, without pyplot, so nothing needs a display and no figure is kept alive after it is saved.
"""
from __future__ import annotations

import io
import sys

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from PIL import Image

from ..constants import (
    EEG_FS, EEG_SCALE, EEG_WINDOW, HEADS, LABEL_WINDOW_S, REPORT_DPI, REPORT_FIGSIZE, SPECT_FRAMES, SPECT_REGIONS,
    SUBMISSION_CLASSES,
)
from ..data import Competition
from ..ensemble import Ensemble
from ..montage import BIPOLAR_PAIRS, CHAIN_SIZE, CHAINS
from .analysis import Report, RowInputs, RowReport, analyse, row_inputs

_CHAIN_COLOURS = ("#1f4e9c", "#8a2c0d", "#2d6a2d")
_CHAIN_GAP = 1.5  # extra trace spacings between chains
_WINDOW_S = EEG_WINDOW / EEG_FS
_SPECT_HALF_S = SPECT_FRAMES  # the 10-minute window is 300 frames of 2 s, centred on the labelled window
_ANNOTATE_MAX_CELLS = 240  # heatmaps with more cells than this go without numbers
_NAME_CHARS = 14  # member names are cut to this in the figure (the page's tables give them whole)
_HEAD_LABELS = {"all": "all", "spect": "spect", "eeg_stft": "stft", "eeg_wavenet": "wavenet"}


def short(name: str, n: int = _NAME_CHARS) -> str:
    """`name` cut to n characters, the cut marked: 'hgnetv2_b4.ssld_0' -> 'hgnetv2_b4.ss…' (n = 14)."""
    return name if len(name) <= n else name[:n - 1] + "…"


def nice_step(x: float) -> float:
    """The largest of 1, 2, 5 x 10^k not above x (x > 0): 0.7 -> 0.5, 38 -> 20, 120 -> 100."""
    k = np.floor(np.log10(x))
    for m in (5.0, 2.0, 1.0):
        if m * 10**k <= x:
            return float(m * 10**k)
    return float(10**k)


def trace_offsets() -> np.ndarray:
    """(24,) the vertical position of each bipolar signal, top to bottom, chains apart."""
    i = np.arange(len(BIPOLAR_PAIRS))
    return -(i + _CHAIN_GAP * (i // CHAIN_SIZE))


def _traces(ax, signals: np.ndarray) -> None:
    """24 traces in one LineCollection at one amplitude scale, the labelled window shaded, a scale bar."""
    t = np.arange(signals.shape[-1]) / EEG_FS
    spread = float(np.percentile(np.abs(signals), 99))  # preprocessing leaves no NaN
    per_trace = 2 * spread if spread > 0 else 1.0  # model units per trace spacing (a flat row: 1)
    offsets = trace_offsets()
    y = offsets[:, None] + signals / per_trace
    lines = LineCollection(np.stack([np.broadcast_to(t, y.shape), y], axis=-1), linewidths=0.4,
                           colors=[_CHAIN_COLOURS[c // CHAIN_SIZE] for c in range(len(y))])
    ax.add_collection(lines)
    half = LABEL_WINDOW_S / 2
    ax.axvspan(_WINDOW_S / 2 - half, _WINDOW_S / 2 + half, color="#f5c542", alpha=0.25, lw=0)
    bar = nice_step(per_trace * EEG_SCALE)  # µV
    x0 = _WINDOW_S + 0.6
    ax.plot([x0, x0], [offsets[-1] - 1, offsets[-1] - 1 + bar / EEG_SCALE / per_trace], color="k", lw=2,
            clip_on=False)
    ax.text(x0 + 0.4, offsets[-1] - 1, f"{bar:g} µV", fontsize=8, va="bottom", clip_on=False)
    ax.set_xlim(0, _WINDOW_S)
    ax.set_ylim(offsets[-1] - 1.5, 1)
    ax.set_yticks(offsets, [f"{a}-{b}" for a, b in BIPOLAR_PAIRS], fontsize=7)
    for tick, c in zip(ax.get_yticklabels(), range(len(offsets))):
        tick.set_color(_CHAIN_COLOURS[c // CHAIN_SIZE])
    ax.set_xlabel("s (shaded: the labelled central 10 s)")
    ax.set_title("the 24 bipolar signals the model saw (view none, filtered), chains: " + ", ".join(CHAINS),
                 fontsize=10)


def _spectrogram(fig, ax, spect: np.ndarray) -> None:
    """The four regions (log power, normalised as the model's image) stacked, the 50-s window marked."""
    image = np.concatenate([region.T for region in spect], axis=0)  # (4 * 100, 300), LL at the bottom
    shown = ax.imshow(image, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                      extent=(-_SPECT_HALF_S, _SPECT_HALF_S, 0, image.shape[0]))
    ax.axvspan(-_WINDOW_S / 2, _WINDOW_S / 2, fill=False, edgecolor="cyan", lw=1.2)
    n = spect.shape[-1]
    ax.set_yticks([n * (r + 0.5) for r in range(len(SPECT_REGIONS))], SPECT_REGIONS, fontsize=8)
    for r in range(1, len(SPECT_REGIONS)):
        ax.axhline(n * r, color="w", lw=0.6)
    ax.set_xlabel("s from the labelled centre (box: the 50-s EEG window); 0.6-20 Hz per region", fontsize=8)
    ax.set_title("spectrogram, 10 min (model's image: log power)", fontsize=10)
    fig.colorbar(shown, ax=ax, fraction=0.04, pad=0.01)


def _stft(fig, ax, inputs: RowInputs) -> None:
    shown = ax.imshow(inputs.stft, aspect="auto", cmap="viridis", interpolation="nearest")
    h, w = inputs.stft.shape
    ax.set_xlabel("image column (time, folded)")
    ax.set_ylabel("image row (24 signals x frequency)")
    ax.set_title(f"STFT image of {short(inputs.stft_member)} ({h} x {w})", fontsize=10)
    fig.colorbar(shown, ax=ax, fraction=0.04, pad=0.01)


def _bars(ax, r: RowReport) -> None:
    y = np.arange(len(SUBMISSION_CLASSES))
    h = 0.4 if r.votes is not None else 0.7
    shift = h / 2 if r.votes is not None else 0  # the prediction's bar above the votes' one
    ax.barh(y - shift, r.probs, height=h, color="#1f77b4", label="prediction")
    if r.votes is not None:
        ax.barh(y + h / 2, r.votes, height=h, color="#aaaaaa", label="expert votes")
        ax.legend(fontsize=7, loc="lower right")
    for yi, p in zip(y, r.probs):
        ax.text(min(p, 1) + 0.01, yi - shift, f"{p:.3f}", va="center", fontsize=7)
    ax.set_yticks(y, SUBMISSION_CLASSES, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15)
    top = int(np.argmax(r.probs)) if np.isfinite(r.probs).all() else None
    title = "blend" if top is None else f"blend: {SUBMISSION_CLASSES[top]} {r.probs[top]:.2f}"
    ax.set_title(title + ("" if r.kl is None else f", KL {r.kl:.3f}"), fontsize=10)


def _heatmap(ax, values: np.ndarray, labels: list[str], title: str) -> None:
    """values (N, 6) probabilities, one row per label, class columns."""
    ax.imshow(values, aspect="auto", cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(len(SUBMISSION_CLASSES)), SUBMISSION_CLASSES, fontsize=7)
    ax.xaxis.tick_top()
    size = 7 if len(labels) <= 16 else 5
    ax.set_yticks(range(len(labels)), labels, fontsize=size)
    if values.size <= _ANNOTATE_MAX_CELLS:
        for (i, j), p in np.ndenumerate(values):
            ax.text(j, i, f"{p:.2f}", ha="center", va="center", fontsize=size, color="w" if p > 0.6 else "k")
    ax.set_title(title, fontsize=9, pad=14)


def png_bytes(fig: Figure) -> bytes:
    """The figure as a PNG file's bytes (at its own dpi)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def rendered(fig: Figure, dpi: float) -> Image.Image:
    """The figure drawn at `dpi` (its size in inches kept; text and lines scale with it): an RGB image of
    (width, height) = figure inches x dpi pixels, ready to encode at any quality without drawing again."""
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])


def webp_bytes(image: Image.Image, quality: int) -> bytes:
    """`image` as a lossy WebP file's bytes (quality 0-100, Pillow's encoder, a dependency of matplotlib)."""
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=quality)
    return buffer.getvalue()


def row_title(report: Report, r: RowReport) -> str:
    row = r.row
    what = f"{report.table_name} row {row.index} · eeg_id {row.eeg_id} · spectrogram_id {row.spectrogram_id}"
    if row.key_name != "eeg_id":
        what += f" · {row.key_name} {row.key}"
    if row.eeg_offset_s is not None:
        what += f" · offsets {row.eeg_offset_s:g} s / {row.spectrogram_offset_s:g} s"
    return what + (f" · {r.status.upper()}" if r.status else "")


def draw(report: Report, r: RowReport, inputs: RowInputs) -> Figure:
    """The figure of one row of `report` (REPORT_FIGSIZE at REPORT_DPI) on an Agg canvas."""
    fig = Figure(figsize=REPORT_FIGSIZE, dpi=REPORT_DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(3, 3, width_ratios=(1.15, 1.15, 1), height_ratios=(1.25, 1.25, 1), hspace=0.45,
                            wspace=0.42, left=0.06, right=0.97, top=0.93, bottom=0.06)
    _traces(fig.add_subplot(grid[:2, :2]), inputs.signals)
    _spectrogram(fig, fig.add_subplot(grid[2, 0]), inputs.spect)
    _stft(fig, fig.add_subplot(grid[2, 1]), inputs)
    _bars(fig.add_subplot(grid[0, 2]), r)
    pairs = [(m, v) for m in report.members for v in report.views]
    _heatmap(fig.add_subplot(grid[1, 2]), r.member_view.reshape(-1, r.member_view.shape[-1]),
             [f"{short(m)} · {v}" for m, v in pairs], "each member and view (head `all`)")
    _heatmap(fig.add_subplot(grid[2, 2]), r.heads.reshape(-1, r.heads.shape[-1]),
             [f"{short(m)} · {_HEAD_LABELS[h]}" for m in report.members for h in HEADS],
             "each member's heads (mean over views)")
    fig.suptitle(row_title(report, r), fontsize=12)
    return fig


def show_inline_in_ipython() -> None:
    """Under IPython (Jupyter) where no figure display is registered yet (pyplot never imported, so the inline
    backend never loaded), register the PNG display of Figures, as `%matplotlib inline` does."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    if shell is None:
        return
    formatters = shell.display_formatter.formatters
    for mime in ("image/png", "image/svg+xml", "image/jpeg", "application/pdf"):
        try:
            formatters[mime].lookup_by_type(Figure)
            return  # the user's choice (retina, svg...) stays
        except KeyError:
            pass
    from IPython.core.pylabtools import select_figure_formats
    select_figure_formats(shell, {"png"})


def figure(ensemble: Ensemble, competition: Competition, row: int, batch_size: int | str = "auto",
           num_workers: int | str = 0) -> Figure:
    """The report figure of table position `row` of `competition`; a notebook cell returning it shows it inline."""
    report = analyse(ensemble, competition, [row], batch_size, num_workers, progress=False)
    show_inline_in_ipython()
    return draw(report, report.rows[0], row_inputs(ensemble, competition, row))
