"""How messages name what is at fault: a table row as `row N (line L, ...)` (N the 0-based data row, as `--rows` and
the issues JSON count it; L its line in the CSV file, the header being line 1) and a cell's value as the file holds it
(`7000039`, `nan`, `'7x'`), never numpy's repr (`np.int64(7000039)`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def shown(value: object) -> str:
    """A table cell as a message shows it: numbers plainly (`7000039`, `1.5`, `nan`, not numpy's `np.int64(...)`),
    text quoted (`'7x'`)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def table_row(name: str | Path, row: int, *about: str) -> str:
    """`<name> row N (line L, <about>...)`: N the 0-based data row, L = N + 2 its line in the file (the header is
    line 1)."""
    return f"{name} row {row} (line {', '.join((str(row + 2), *about))})"


def row_number(frame: pd.DataFrame, i: int) -> int:
    """The table row number of position i: its index label where the frame keeps the table's row numbers (a
    subset of a table's rows), else i."""
    label = frame.index[i]
    return int(label) if isinstance(label, (int, np.integer)) else i
