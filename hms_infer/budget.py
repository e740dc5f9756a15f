"""The time budget: a run projects its total time and, if that exceeds the budget, predicts the remaining rows
with fewer TTA views, then fewer members. The tracker here only decides; the caller runs each batch with
`Ensemble.subset(tracker.current.views, tracker.current.members)` (the same loaded models).

Levels (`levels`), from the full ensemble down, each one step smaller than the one before:
- the views in `TTA_DROP_ORDER` (lrfb, then fb, then lr) that the run has, one at a time, never the last view;
- then the members from the manifest's end, one at a time, never the first.
The smallest level is the first member with one view (`none` when the run has it): no row is predicted by nothing.

Projection (`BudgetTracker.batch_done`): the budget clock starts with the run (`spent_s` covers what came before
the first batch: loading the models). A level's first batch carries warm-up (cuDNN benchmark, `torch.compile`), so
its rate is the seconds per row of the batches after it: once there are `BUDGET_STEADY_BATCHES` of them, the
projected total is elapsed + rows left x that rate. Over the budget, the run moves to the first smaller level
whose estimated total fits (rate scaled by `relative_cost`), else the smallest; at the new level it measures again.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from .constants import BUDGET_STEADY_BATCHES, TTA_DROP_ORDER
from .errors import HMSInputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Level:
    """What predicts a row: the views and the indices of the members kept (in the manifest's order)."""

    views: tuple[str, ...]
    members: tuple[int, ...]


def parse_budget(value: float | str | None, what: str = "--time-budget") -> float | None:
    """Seconds (> 0) from a number or a string; None or '' for no budget; else an error naming `what`."""
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise HMSInputError(f"{what} must be a positive number of seconds, got {value!r}")
    return seconds


def check_time_limit(seconds: float | None) -> None:
    """A resumable command's `time_limit` (pseudo-labels, timeline): None, or a finite number of seconds >= 0."""
    if seconds is not None and not 0 <= seconds < float("inf"):
        raise HMSInputError(f"--time-limit must be a non-negative number of seconds, got {seconds!r}")


def levels(views: Sequence[str], n_members: int) -> list[Level]:
    """The levels from all `views` and `n_members` members down to one view and one member (module docstring)."""
    current = Level(tuple(views), tuple(range(n_members)))
    out = [current]
    for view in TTA_DROP_ORDER:
        if view in current.views and len(current.views) > 1:
            current = Level(tuple(v for v in current.views if v != view), current.members)
            out.append(current)
    while len(current.members) > 1:
        current = Level(current.views, current.members[:-1])
        out.append(current)
    return out


def relative_cost(level: Level, member_costs: Sequence[float]) -> float:
    """Estimated cost of a row at `level`: the kept members' costs (e.g. GFLOP) times the number of views."""
    return sum(member_costs[i] for i in level.members) * len(level.views)


def choose_level(ladder: Sequence[Level], current: int, elapsed_s: float, rows_left: int, rate_s: float,
                 budget_s: float, member_costs: Sequence[float]) -> tuple[int, float]:
    """The first level from `current` on whose estimated total, elapsed + rows_left x rate_s scaled by its
    `relative_cost` to the current level's, fits `budget_s` (else the last level), and that estimate."""
    base = relative_cost(ladder[current], member_costs)
    estimate = elapsed_s
    for k in range(current, len(ladder)):
        estimate = elapsed_s + rows_left * rate_s * relative_cost(ladder[k], member_costs) / base
        if estimate <= budget_s:
            return k, estimate
    return len(ladder) - 1, estimate


class BudgetTracker:
    """Follows a run batch by batch against `budget_s` and decides the level of the rows to come.

    `batch_done(rows, first_row)` after each batch; `current` is the level of the next batch (`level` its index);
    `report()` is the JSON section (budget, projections, drops, rows per level), `summary()` its line. `clock` is
    injectable for tests.
    """

    def __init__(self, budget_s: float, n_rows: int, views: Sequence[str], member_names: Sequence[str],
                 member_costs: Sequence[float], spent_s: float = 0.0, clock: Callable[[], float] = time.perf_counter,
                 steady_batches: int = BUDGET_STEADY_BATCHES):
        self.budget_s, self.n_rows, self.spent_s = budget_s, n_rows, spent_s
        self.ladder = levels(views, len(member_names))
        self.names = list(member_names)
        self.costs = list(member_costs)
        self.clock, self.steady_batches = clock, steady_batches
        self.start = clock()
        self.level = 0
        self.rows_done = 0
        self._last = self.start
        self._level_batches: list[tuple[int, float]] = []  # (rows, seconds) of the current level's batches
        self.projections: list[dict] = []
        self.drops: list[dict] = []
        self.rows_at: dict[int, list[int]] = {}  # level -> [rows predicted, first table row]

    @property
    def current(self) -> Level:
        return self.ladder[self.level]

    @property
    def elapsed_s(self) -> float:
        return self.spent_s + self.clock() - self.start

    def describe(self, k: int) -> dict:
        level = self.ladder[k]
        return {"views": list(level.views), "members": [self.names[i] for i in level.members]}

    def batch_done(self, rows: int, first_row: int) -> bool:
        """Record a batch of `rows` rows (the first of them table row `first_row`), predicted at `level`; True when
        the rows to come move to a smaller level."""
        now = self.clock()
        self._level_batches.append((rows, now - self._last))
        self._last = now
        self.rows_done += rows
        self.rows_at.setdefault(self.level, [0, first_row])[0] += rows
        steady = self._level_batches[1:]
        rows_left = self.n_rows - self.rows_done
        if len(steady) < self.steady_batches or rows_left <= 0 or self.level == len(self.ladder) - 1:
            return False
        rate = sum(s for _, s in steady) / sum(r for r, _ in steady)
        elapsed = self.elapsed_s
        projected = elapsed + rows_left * rate
        self.projections.append({"after_rows": self.rows_done, "elapsed_s": round(elapsed, 3),
                                 "s_per_row": round(rate, 6), "projected_total_s": round(projected, 3),
                                 "level": self.level})
        if projected <= self.budget_s:
            return False
        k, estimate = choose_level(self.ladder, self.level, elapsed, rows_left, rate, self.budget_s, self.costs)
        before, after = self.ladder[self.level], self.ladder[k]
        drop = {"after_rows": self.rows_done, "projected_total_s": round(projected, 3),
                "estimated_total_s": round(estimate, 3), "level": k, **self.describe(k),
                "dropped_views": [v for v in TTA_DROP_ORDER if v in before.views and v not in after.views],
                "dropped_members": [self.names[i] for i in before.members if i not in after.members]}
        self.drops.append(drop)
        log.warning("time budget %.0f s: projected %.0f s (%.0f s elapsed, %d rows left at %.3f s/row); the "
                    "remaining rows run with views %s and members %s (estimated %.0f s)%s", self.budget_s,
                    projected, elapsed, rows_left, rate, ",".join(after.views), ",".join(drop["members"]),
                    estimate, "" if estimate <= self.budget_s else ": the smallest level, still over the budget")
        self.level = k
        self._level_batches = []
        return True

    def report(self) -> dict:
        """The run's budget section: the budget, whether the run kept to it, every projection and drop, and the
        rows of each level (count and first table row)."""
        return {"budget_s": self.budget_s, "elapsed_s": round(self.elapsed_s, 3),
                "within_budget": self.elapsed_s <= self.budget_s, "projections": self.projections,
                "drops": self.drops,
                "levels": [{**self.describe(k), "rows": n, "first_row": first}
                           for k, (n, first) in sorted(self.rows_at.items())]}

    def summary(self) -> str:
        """One line: the budget, the time taken, and from which row on which views and members ran."""
        head = f"hms_infer: time budget {self.budget_s:.0f} s, {self.elapsed_s:.1f} s used"
        if not self.drops:
            return f"{head}: nothing dropped"
        steps = "; ".join(f"from row {first} ({n} rows) views {','.join(d['views'])}, members {','.join(d['members'])}"
                          for d, (n, first) in ((self.describe(k), self.rows_at[k]) for k in sorted(self.rows_at) if k))
        return f"{head}: {steps} (projected {self.drops[0]['projected_total_s']:.0f} s with everything)"
