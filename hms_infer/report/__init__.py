"""See what the models saw: a per-EEG visual report (needs matplotlib: `pip install hms_infer[plot]`).

    from hms_infer.report import figure
    figure(ensemble, competition, row)          # a matplotlib Figure: shown inline in Jupyter
    make_report(data_dir, "report/", manifest)  # python -m hms_infer report: PNG + page per row, index.html
    timeline_figure(ensemble, competition, eeg_id)  # a whole recording's predictions along time (`timeline`)

`analysis` computes the numbers (one batched pass, every head), `drawing` draws, `pages` writes the HTML, `build`
puts them together; `timeline` draws and pages whole recordings (`python -m hms_infer timeline`). Nothing else in
hms_infer imports this package (the timeline task only inside its function), so `predict` and kernel.py never need
matplotlib.
"""
from .analysis import Report, RowInputs, RowReport, analyse, row_inputs, select_rows
from .build import make_report, parse_rows
from .drawing import draw, figure
from .timeline import timeline_figure

__all__ = ["Report", "RowInputs", "RowReport", "analyse", "row_inputs", "select_rows", "make_report", "parse_rows",
           "draw", "figure", "timeline_figure"]
