"""See what the models saw, and judge them: the numbers, figures and pages of the visual report and of `evaluate`
(drawing needs matplotlib: `pip install hms_infer[plot]`).

    from hms_infer.report import figure
    figure(ensemble, competition, row)               # a matplotlib Figure: shown inline in Jupyter
    timeline_figure(ensemble, competition, eeg_id)   # a whole recording's predictions along time

`analysis` computes a report's numbers (one batched pass, every head), `drawing` draws, `pages` writes the HTML; the
`report` command (`hms_infer.tasks.report.make_report`) puts them together. `evaluation_page` and
`evaluation_figures` are the `evaluate` command's page and figures; `timeline` draws and pages whole recordings.
Nothing else in the library imports this package, so `predict` and kernel.py never need matplotlib; the names below
are imported on first use, so the modules that do not draw (`pages`, `evaluation_page`) work without it.
"""
from importlib import import_module
from types import ModuleType

from ..errors import HMSInputError

_SOURCES = {"Report": "analysis", "RowInputs": "analysis", "RowReport": "analysis", "analyse": "analysis",
            "row_inputs": "analysis", "select_rows": "analysis", "draw": "drawing", "figure": "drawing",
            "timeline_figure": "timeline"}
__all__ = list(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_SOURCES[name]}", __name__), name)


def drawing_module(name: str, needs: str) -> ModuleType:
    """`hms_infer.report.<name>`, a module that draws; where matplotlib is missing an `HMSInputError`: "<needs>
    matplotlib" and how to install it (the commands check this before any work)."""
    try:
        return import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] != "matplotlib":
            raise
        raise HMSInputError(f"{needs} matplotlib: pip install 'hms_infer[plot]'") from None
