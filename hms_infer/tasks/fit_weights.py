"""`fit_weights`: blend weights (and temperatures) of member groups fitted on saved out-of-fold logits, honestly.

A group is the manifest members named `NAME` or `NAME/*`; its OOF logits (one per validation row, in either layout
`parity` reads) stand for all of them. The fit uses the rows every group predicted, the votes of those rows in the
training table (normalised per row, as the metric does), and the manifest's blend space. Its honest score is the
same fit cross-validated by the table's `fold` column: fit on the other folds, predict the held-out fold; the KL of
all held-out predictions together (`score_cv`). The fitted manifest is the input manifest with each member's
weight set to its group's weight split equally among the group's members (and, with `temperature`, the group's
temperature); every other field stays as it was.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm.auto import tqdm

from ..blendfit import Fit, cross_validate, fit, score
from ..constants import BLENDS
from ..errors import HMSInputError
from ..files import check_writable, write_text_atomic
from ..manifest import Manifest, manifest_from_dict, read_manifest_yaml
from ..metric import kl_divergence, solution_probabilities, vote_totals
from ..training import read_fold_table, shared_rows

log = logging.getLogger(__name__)

FITTED_HEADER = """\
# hms_infer weights manifest: weights{temps} fitted by `python -m hms_infer fit-weights` on {rows} OOF rows.
# {blend} blend; KL equal weights {score_equal:.6f}, fitted {score_fitted:.6f}, cross-validated {score_cv:.6f}.
# Everything else is as in {source} (without its comments).
"""


def common_rows(table: pd.DataFrame, groups: Mapping[str, Mapping[int, np.ndarray]], table_name: str
                ) -> np.ndarray:
    """The positions (in table order) of the rows whose label_id every group predicted; every OOF label_id must be
    a row."""
    held = {name: np.fromiter(saved, np.int64, len(saved)) for name, saved in groups.items()}
    return shared_rows(table, held, table_name, kind="group")


def group_members(manifest: Manifest, names: list[str], source: str) -> dict[str, list[int]]:
    """{group: indices of the members named `group` or `group/*`}; each member in exactly one group."""
    found = {g: [i for i, m in enumerate(manifest.members) if m.name == g or m.name.startswith(g + "/")]
             for g in names}
    member_names = [m.name for m in manifest.members]
    for g, idx in found.items():
        if not idx:
            raise HMSInputError(f"group {g!r} matches no member of {source} (members: {member_names}); a group "
                                f"is the members named {g!r} or '{g}/...'")
    owner: dict[int, str] = {}
    for g, idx in found.items():
        for i in idx:
            if i in owner:
                raise HMSInputError(f"member {member_names[i]} of {source} is in two groups, {owner[i]!r} and {g!r}")
            owner[i] = g
    left = [member_names[i] for i in range(len(member_names)) if i not in owner]
    if left:
        raise HMSInputError(f"member(s) {left} of {source} are in no group: give their OOF logits as a group, or "
                            f"fit a manifest without them (a fitted blend has a weight for every member)")
    return found


def group_temperatures(manifest: Manifest, members: Mapping[str, list[int]], source: str) -> list[float]:
    """Each group's temperature in the manifest (its members' common one)."""
    temps = []
    for g, idx in members.items():
        values = sorted({manifest.members[i].temperature for i in idx})
        if len(values) != 1:
            raise HMSInputError(f"the members of group {g} in {source} have different temperatures {values}; fit "
                                f"them with --temperature, or make them equal")
        temps.append(values[0])
    return temps


def fitted_manifest(raw: dict, members: Mapping[str, list[int]], weights: np.ndarray,
                    temperatures: np.ndarray | None, blend: str) -> dict:
    """The parsed manifest `raw` with each member's weight (group weight / group size) and, if given, temperature
    (right after `weight`) set, and `blend` (where it differs); every other field and their order as they were."""
    out = dict(raw) if raw.get("blend", "prob") == blend else dict(raw, blend=blend)
    out["members"] = [dict(m) for m in raw["members"]]
    for g, idx in enumerate(members.values()):
        for i in idx:
            m = out["members"][i]
            m["weight"] = float(weights[g]) / len(idx)
            if temperatures is not None:
                if "temperature" not in m:  # a new field goes right after `weight`
                    items, at = list(m.items()), list(m).index("weight") + 1
                    m = out["members"][i] = dict(items[:at] + [("temperature", None)] + items[at:])
                m["temperature"] = float(temperatures[g])
    return out


def _fit_dict(names: list[str], f: Fit) -> dict:
    return {"weights": dict(zip(names, f.weights.tolist())), "temperatures": dict(zip(names, f.temperatures.tolist())),
            "score": f.score}


def fit_weights(*, table: str | Path, groups: Mapping[str, Mapping[int, np.ndarray]], manifest: str | Path,
                out: str | Path, blend: str | None = None, temperature: bool = False,
                report_path: str | Path | None = None, progress: bool = True, min_votes: int | None = None,
                vote_weighted: bool = False) -> dict:
    """Fit the group weights (and temperatures) on the OOF logits `groups` ({group: {label_id: (6,) logits}}),
    cross-validate by the table's folds, write the fitted manifest to `out` (and the report as JSON to
    `report_path`) atomically; return the report (see the module docstring and README).

    Vote-aware (the report then says so, and has `min_votes`, `rows_before_min_votes`, `vote_weighted` and with
    `vote_weighted` `score_cv_vote_weighted`): `min_votes` fits and scores on the rows with at least that many total
    votes; `vote_weighted` minimises the mean of the rows' KL weighted by their total votes. The scores stay the
    competition's unweighted KL, on the rows fitted."""
    t0 = time.perf_counter()
    for path in (out, report_path):
        if path is not None:
            check_writable(path)
    source = str(manifest)
    raw = read_manifest_yaml(manifest)  # the fields as written, to write them back unchanged
    parsed = manifest_from_dict(raw, str(Path(manifest)))  # validated, with clear errors
    how = blend or parsed.blend
    if how not in BLENDS:
        raise HMSInputError(f"--blend must be one of {BLENDS}, got {how!r}")
    names = list(groups)
    members = group_members(parsed, names, source)
    fixed = [1.0] * len(names) if temperature else group_temperatures(parsed, members, source)

    frame = read_fold_table(table)
    positions = common_rows(frame, groups, str(table))
    rows = frame.iloc[positions]
    row_weights, vote_aware = None, {}
    if min_votes is not None or vote_weighted:
        totals = vote_totals(frame, str(table))[positions]
        vote_aware = {"min_votes": min_votes, "rows_before_min_votes": len(rows), "vote_weighted": vote_weighted}
        if min_votes is not None:
            keep = totals >= min_votes
            if not keep.any():
                raise HMSInputError(f"none of the {len(rows)} rows every group predicted has {min_votes} or more votes "
                                    f"in {table} (the most: {int(totals.max())})")
            rows, totals = rows[keep], totals[keep]
        row_weights = totals if vote_weighted else None
    targets = solution_probabilities(rows, str(table))
    folds = rows["fold"].to_numpy()
    fold_ids = sorted(set(folds.tolist()))
    if len(fold_ids) < 2:
        raise HMSInputError(f"the {len(rows)} rows every group predicted are all in fold {fold_ids[0]} of {table}; "
                            f"cross-validation needs rows of at least 2 folds")
    ids = rows["label_id"].tolist()
    logits = torch.from_numpy(np.stack([np.stack([groups[g][i] for i in ids]) for g in names]))[:, :, None]

    bar = tqdm(total=1 + len(fold_ids), desc="fit-weights", unit="fit", disable=not progress)
    try:
        full = fit(logits, targets, how, temperature, fixed, row_weights)
        bar.update(1)
        score_cv, fold_fits, held_out = cross_validate(logits, targets, folds, how, temperature, fixed,
                                                       on_fold=lambda f: bar.update(1), row_weights=row_weights)
    finally:
        bar.close()
    equal = [1.0 / len(names)] * len(names)
    report = {
        "rows": len(rows),
        "blend": how,
        "temperature_fitted": temperature,
        "weights": dict(zip(names, full.weights.tolist())),
        "temperatures": dict(zip(names, full.temperatures.tolist())),
        "score_equal": score(logits, targets, equal, how, fixed),
        "score_single": {g: score(logits[k:k + 1], targets, [1.0], how, fixed[k:k + 1])
                         for k, g in enumerate(names)},
        "score_fitted": full.score,
        "score_cv": score_cv,
        "folds": {str(f): {"rows": int((folds == f).sum()), **_fit_dict(names, fold_fits[f])} for f in fold_ids},
        "groups": {g: {"members": [parsed.members[i].name for i in members[g]], "oof_rows": len(groups[g])}
                   for g in names},
        "manifest": source,
        "out": str(out),
        **vote_aware,
    }
    if vote_weighted:
        report["score_cv_vote_weighted"] = kl_divergence(targets, held_out, weights=row_weights)
    fitted = fitted_manifest(raw, members, full.weights, full.temperatures if temperature else None, how)
    manifest_from_dict(fitted, str(out))  # what we write must load
    header = FITTED_HEADER.format(temps=" and temperatures" if temperature else "", source=source, **report)
    if vote_aware:
        header += f"# Vote-aware: {_vote_aware(report)}.\n"
    write_text_atomic(out, header + yaml.safe_dump(fitted, sort_keys=False))
    dt = time.perf_counter() - t0
    report["seconds"] = round(dt, 3)
    if report_path is not None:
        write_text_atomic(report_path, json.dumps(report, indent=2) + "\n")
    log.info(format_report(report))
    log.info(f"hms_infer fit-weights: {len(rows)} rows, {len(names)} groups, {1 + len(fold_ids)} fits in {dt:.1f} s "
          f"({len(rows) * (1 + len(fold_ids)) / dt:.0f} rows/s fitted) -> {out}")
    return report


def format_report(report: dict) -> str:
    """The report as a table: per group its weight, temperature and score alone, then the four scores."""
    names = list(report["weights"])
    width = max(12, *(len(g) + 2 for g in names))
    lines = [
        f"rows                      {report['rows']} (every group's; OOF rows per group: "
        + ", ".join(f"{g} {v['oof_rows']}" for g, v in report["groups"].items()) + ")",
        f"blend                     {report['blend']}"
        + (", temperatures fitted" if report["temperature_fitted"] else ", temperatures as in the manifest"),
        f"{'group':<{width}}{'members':>8}{'weight':>11}{'temperature':>13}{'KL alone':>11}",
        *(f"{g:<{width}}{len(report['groups'][g]['members']):>8}{report['weights'][g]:>11.6f}"
          f"{report['temperatures'][g]:>13.6f}{report['score_single'][g]:>11.6f}" for g in names),
        f"KL equal weights          {report['score_equal']:.6f}",
        f"KL fitted, in-sample      {report['score_fitted']:.6f}",
        f"KL fitted, cross-validated {report['score_cv']:.6f} ({len(report['folds'])} folds: fit on the others, "
        f"score the held-out rows)",
        *(f"  fold {f:<6}{v['rows']:>7} rows, KL {v['score']:.6f}, weights "
          + " ".join(f"{g} {w:.4f}" for g, w in v["weights"].items()) for f, v in report["folds"].items()),
    ]
    if "vote_weighted" in report:
        lines.insert(2, f"vote-aware                {_vote_aware(report)}")
    if "score_cv_vote_weighted" in report:
        lines.append(f"KL cross-validated, vote-weighted {report['score_cv_vote_weighted']:.6f} (each row weighted "
                     f"by its total votes)")
    return "\n".join(lines)


def _vote_aware(report: dict) -> str:
    """What a vote-aware fit did, in words."""
    parts = []
    if report["min_votes"] is not None:
        parts.append(f"the {report['rows']} of {report['rows_before_min_votes']} rows with >= {report['min_votes']} "
                     f"votes")
    if report["vote_weighted"]:
        parts.append("objective weighted by each row's total votes (scores unweighted)")
    return "; ".join(parts)
