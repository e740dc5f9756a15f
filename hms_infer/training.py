"""The training code's tables and saved predictions: the training table with folds and votes, and the out-of-fold
logits it wrote (SPEC §5), in either layout; read by parity, fit-weights and pseudo-labels.

The validation row of an `eeg_id` is its row with the smallest `eeg_sub_id` among the rows of its fold.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .constants import CLASSES, VOTE_COLUMNS
from .data import read_csv, read_table
from .errors import HMSInputError
from .messages import row_number, shown, table_row

TABLE_COLUMNS = ("eeg_id", "eeg_sub_id", "eeg_label_offset_seconds", "spectrogram_id",
                 "spectrogram_label_offset_seconds", "label_id", "fold", *VOTE_COLUMNS)
LOGIT_COLUMNS = tuple(f"logit_{c}" for c in CLASSES)
OOF = dict[int, np.ndarray]  # label_id -> (6,) logits in `CLASSES` order


def integer_column(df: pd.DataFrame, col: str, path: str | Path) -> pd.Series:
    """Column `col` as int64; an error naming the first row that is not an integer."""
    num = pd.to_numeric(df[col], errors="coerce")
    bad = (num.isna() | (num % 1 != 0)).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise HMSInputError(f"{table_row(path, row_number(df, i))}: {col} {shown(df[col].iloc[i])} is not an "
                            f"integer")
    return num.astype(np.int64)


def unique_label_ids(df: pd.DataFrame, path: str | Path, why: str) -> None:
    """An error naming the first row whose `label_id` an earlier row has."""
    twice = df["label_id"].duplicated().to_numpy()
    if twice.any():
        i = int(np.flatnonzero(twice)[0])
        raise HMSInputError(f"{table_row(path, row_number(df, i))}: label_id {shown(df['label_id'].iloc[i])} "
                            f"appears more than once ({why})")


def read_train_table(path: str | Path) -> pd.DataFrame:
    """The training table with `fold` (parity, pseudo-labels): every `TABLE_COLUMNS`, ids and offsets validated,
    `eeg_sub_id` and `fold` integers."""
    df = read_table(Path(path), "train")
    missing = [c for c in TABLE_COLUMNS if c not in df.columns]
    if missing:
        raise HMSInputError(f"{path}: missing column(s) {missing} (the training table needs {list(TABLE_COLUMNS)})")
    for col in ("eeg_sub_id", "fold"):
        df[col] = integer_column(df, col, path)
    return df


def read_label_table(path: str | Path) -> pd.DataFrame:
    """`read_train_table` with unique `label_id`s (pseudo-labels are keyed by them)."""
    table = read_train_table(path)
    unique_label_ids(table, path, "the pseudo labels are keyed by label_id")
    return table


def read_vote_table(path: str | Path) -> pd.DataFrame:
    """The training table against which predictions are judged (fit-weights, evaluate): ids validated, unique
    `label_id`, the six vote columns, an integer `fold` where there is one."""
    df = read_table(Path(path), "train")
    missing = [c for c in VOTE_COLUMNS if c not in df.columns]
    if missing:
        raise HMSInputError(f"{path}: no vote column(s) {missing}: predictions are judged against the experts' vote "
                            f"counts (the training table's {list(VOTE_COLUMNS)})")
    unique_label_ids(df, path, "a row per label")
    if "fold" in df.columns:
        df["fold"] = integer_column(df, "fold", path)
    return df


def read_fold_table(path: str | Path) -> pd.DataFrame:
    """`read_vote_table` with a `fold` column (fit-weights cross-validates by it)."""
    df = read_vote_table(path)
    if "fold" not in df.columns:
        raise HMSInputError(f"{path}: no 'fold' column: fit-weights cross-validates by the folds the OOF logits "
                            f"were predicted in; add each row's validation fold (as for parity)")
    return df


def shared_rows(table: pd.DataFrame, label_ids: Mapping[str, np.ndarray], table_name: str, kind: str = "set",
                sources: Mapping[str, str] | None = None) -> np.ndarray:
    """The table positions (table order) of the label_ids that every named source of `label_ids` ({name: (n,)}) holds.
    A source's label_id that is not a row of the table is an error naming it (its file from `sources`); so is no
    shared row."""
    ids = table["label_id"].to_numpy(dtype=np.int64)
    for name, held in label_ids.items():
        unknown = held[~np.isin(held, ids)]
        if len(unknown):
            where = f"{sources[name]}: " if sources else ""
            raise HMSInputError(f"{where}{kind} {name}: {len(unknown)} of its {len(held)} label_ids are not rows of "
                                f"{table_name} (first: label_id {unknown[0]}); the predictions and the table must come "
                                f"from the same training table")
    shared = np.logical_and.reduce([np.isin(ids, held) for held in label_ids.values()])
    if not shared.any():
        counts = ", ".join(f"{name} {len(held)}" for name, held in label_ids.items())
        raise HMSInputError(f"no row of {table_name} that every {kind} predicted (rows per {kind}: {counts})")
    return np.flatnonzero(shared)


def validation_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Per (fold, eeg_id), the row with the smallest `eeg_sub_id`; ordered by fold, then table order."""
    first = table.sort_values(["fold", "eeg_id", "eeg_sub_id"], kind="stable").drop_duplicates(["fold", "eeg_id"])
    return first.sort_index().sort_values("fold", kind="stable")


def _logits(values: np.ndarray, where: str) -> np.ndarray:
    """Anything holding 6 finite numbers -> (6,) float64."""
    values = np.asarray(values, dtype=np.float64)
    if values.size != len(CLASSES) or not np.isfinite(values).all():
        raise HMSInputError(f"{where}: expected {len(CLASSES)} finite logits, got shape {values.shape}: "
                            f"{values.ravel()[:8].tolist()}")
    return values.reshape(len(CLASSES))


def read_preds_dir(preds_dir: str | Path, seed: int) -> OOF:
    """The training layout `DIR/<label_id>/pred_<seed>.npy` -> {label_id: (6,) logits in `CLASSES` order}."""
    preds_dir = Path(preds_dir)
    if not preds_dir.is_dir():
        raise HMSInputError(f"{preds_dir}: preds folder not found")
    saved = {}
    for path in sorted(preds_dir.glob(f"*/pred_{seed}.npy")):
        if not path.parent.name.isdigit():
            continue
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise HMSInputError(f"{path}: not a readable .npy array ({e})") from None
        saved[int(path.parent.name)] = _logits(values, str(path))
    return saved


def read_oof(path: str | Path) -> OOF:
    """An OOF CSV (`label_id` + `logit_<class>` columns) -> {label_id: (6,) logits in `CLASSES` order}."""
    df = read_csv(path)
    missing = [c for c in ("label_id", *LOGIT_COLUMNS) if c not in df.columns]
    if missing:
        raise HMSInputError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    ids = pd.to_numeric(df["label_id"], errors="coerce")
    values = df[list(LOGIT_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = (ids.isna() | (ids % 1 != 0)).to_numpy() | ~np.isfinite(values).all(axis=1) | df["label_id"].duplicated()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise HMSInputError(f"{table_row(path, row_number(df, i))}: label_id {shown(df['label_id'].iloc[i])} is "
                            f"not a unique integer id with 6 finite logits: {values[i].tolist()}")
    return dict(zip(ids.astype(np.int64).tolist(), values))


def parse_group(spec: str, option: str) -> tuple[str, str]:
    """`NAME=PATH` -> (NAME, PATH)."""
    name, sep, path = spec.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise HMSInputError(f"{option} {spec!r}: expected NAME=PATH (NAME: a member group of the manifest)")
    return name.strip(), path.strip()


def read_groups(specs: Sequence[tuple[str, str, str]], seed: int | None) -> dict[str, OOF]:
    """(layout `preds` or `oof`, NAME, PATH) in command-line order -> {NAME: {label_id: (6,) logits}}."""
    groups: dict[str, OOF] = {}
    for layout, name, path in specs:
        if name in groups:
            raise HMSInputError(f"group {name!r} is given twice")
        if layout == "preds" and seed is None:
            raise HMSInputError(f"--preds {name}={path} needs --seed (the files are DIR/<label_id>/pred_<seed>.npy)")
        saved = read_preds_dir(path, seed) if layout == "preds" else read_oof(path)
        if not saved:
            what = f"no <label_id>/pred_{seed}.npy file (check the folder and --seed)" if layout == "preds" else \
                "no rows"
            raise HMSInputError(f"{path}: {what}; group {name} has no OOF logits")
        groups[name] = saved
    if not groups:
        raise HMSInputError("no group: give each group's OOF logits with --preds NAME=DIR or --oof NAME=CSV")
    return groups
