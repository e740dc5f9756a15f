"""See what the models saw: the numbers and figures of the per-EEG visual report (needs matplotlib:
`pip install hms_infer[plot]`).

    from hms_infer.report import figure
    figure(ensemble, competition, row)   # a matplotlib Figure: shown inline in Jupyter

`analysis` computes the numbers (one batched pass, every head), `drawing` draws, `pages` writes the HTML; the
`report` command (`hms_infer.tasks.report.make_report`) puts them together. Nothing else in the library imports this
package, so `predict` and kernel.py never need matplotlib.
"""
from .analysis import Report, RowInputs, RowReport, analyse, row_inputs, select_rows
from .drawing import draw, figure

__all__ = ["Report", "RowInputs", "RowReport", "analyse", "row_inputs", "select_rows", "draw", "figure"]
