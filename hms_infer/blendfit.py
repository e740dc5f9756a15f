"""Fit blend weights (and temperatures) that minimise the competition's KL on out-of-fold logits; cross-validate.

The objective is `metric.kl_divergence` of `blending.blend`: the very functions `score` and the ensemble use,
run on float64 torch tensors so that autograd gives exact gradients. Weights are a softmax over free parameters
(non-negative, summing to 1 by construction; bounded so that none underflows to 0), temperatures exp of free
log-temperatures; scipy's L-BFGS-B minimises from equal weights (the weights-only problem is convex in the
weights); with temperatures also from the weights-only optimum, and the better end point wins (deterministic).

With the probability blend each group has its own temperature. With the logit blend the temperatures are not
identifiable apart from the weights (member m enters as w_m / T_m), so one temperature shared by all groups is
fitted: the same freedom, stated once.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from scipy.optimize import minimize

from .blending import blend_probs
from .metric import kl_divergence

WEIGHT_LOGIT_BOUND = 20.0  # |free weight parameter| <= 20: the smallest weight is ~e-40 / G, never 0
TEMPERATURE_BOUNDS = (0.05, 20.0)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: the tensors here are small, and on a busy machine OpenMP's threads waiting for each
    other made an evaluation 20x slower (56 ms instead of 2.8 ms for 2 groups x 2000 rows on 2 shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class Fit:
    weights: np.ndarray  # (G,) non-negative, sum 1
    temperatures: np.ndarray  # (G,) positive
    score: float  # KL on the rows it was fitted on


def score(logits: torch.Tensor, targets: np.ndarray, weights: Sequence[float], how: str,
          temperatures: Sequence[float]) -> float:
    """The competition KL of the blend of (G, N, V, 6) logits against (N, 6) targets (`VOTE_COLUMNS` order)."""
    return kl_divergence(targets, blend_probs(logits, weights, how, temperatures).numpy())


def _unpack(x: torch.Tensor, groups: int, how: str, temperature: bool, fixed: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Free parameters -> ((G,) weights, (G,) temperatures)."""
    weights = x[:groups].softmax(0)
    if not temperature:
        return weights, fixed
    log_t = x[groups:] if how == "prob" else x[groups:].expand(groups)
    return weights, log_t.exp()


def fit(logits: torch.Tensor, targets: np.ndarray, how: str = "prob", temperature: bool = False,
        fixed_temperatures: Sequence[float] | None = None, row_weights: np.ndarray | None = None) -> Fit:
    """Weights (and, with `temperature`, temperatures) minimising the KL of the blend of (G, N, V, 6) logits
    against (N, 6) targets; without `temperature` the groups keep `fixed_temperatures` (default 1). `row_weights`
    (N,): minimise the weighted mean of the rows' KL instead (e.g. each row's total votes); `Fit.score` is the
    competition's (unweighted) KL either way."""
    groups = logits.shape[0]
    logits = logits.double()
    fixed = torch.as_tensor(fixed_temperatures if fixed_temperatures is not None else [1.0] * groups,
                            dtype=torch.float64)
    n_t = (groups if how == "prob" else 1) if temperature else 0
    bounds = [(-WEIGHT_LOGIT_BOUND, WEIGHT_LOGIT_BOUND)] * groups + [tuple(np.log(TEMPERATURE_BOUNDS))] * n_t

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        params = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        w, t = _unpack(params, groups, how, temperature, fixed)
        loss = kl_divergence(targets, blend_probs(logits, w, how, t), weights=row_weights)
        loss.backward()
        return loss.item(), params.grad.numpy().copy()

    starts = [np.zeros(groups + n_t)]
    if temperature:  # not convex: also start from the weights-only optimum (a convex problem in the weights)
        alone = fit(logits, targets, how, False, fixed_temperatures=[1.0] * groups, row_weights=row_weights)
        starts.append(np.concatenate([np.log(np.maximum(alone.weights, 1e-300)).clip(*bounds[0]), np.zeros(n_t)]))
    best = None
    with one_thread():
        for start in starts:
            res = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": 1000, "ftol": 1e-13, "gtol": 1e-9})
            if best is None or res.fun < best.fun:
                best = res
    with torch.no_grad():
        w, t = _unpack(torch.from_numpy(best.x), groups, how, temperature, fixed)
    weights = w.numpy() / w.numpy().sum()
    temperatures = t.numpy().copy()
    return Fit(weights, temperatures, score(logits, targets, weights, how, temperatures))


def cross_validate(logits: torch.Tensor, targets: np.ndarray, folds: np.ndarray, how: str = "prob",
                   temperature: bool = False, fixed_temperatures: Sequence[float] | None = None,
                   on_fold: Callable[[int], object] | None = None, row_weights: np.ndarray | None = None
                   ) -> tuple[float, dict[int, Fit], np.ndarray]:
    """Per fold f of (N,) `folds`: fit on the other folds, predict f. Returns the KL of the concatenated held-out
    predictions over all N rows, each fold's fit (its `score`: the KL on its held-out rows) and the (N, 6)
    held-out probabilities. `on_fold(f)` is called after each fold (a progress bar). `row_weights` (N,): each
    fold's fit minimises the weighted KL (`fit`); the scores stay unweighted."""
    held_out = np.zeros(targets.shape)
    fits = {}
    for f in sorted(set(folds.tolist())):
        test = folds == f
        train = torch.from_numpy(~test)
        part = fit(logits[:, train], targets[~test], how, temperature, fixed_temperatures,
                   None if row_weights is None else row_weights[~test])
        probs = blend_probs(logits[:, torch.from_numpy(test)], part.weights, how, part.temperatures).numpy()
        held_out[test] = probs
        fits[f] = Fit(part.weights, part.temperatures, kl_divergence(targets[test], probs))
        if on_fold is not None:
            on_fold(f)
    return kl_divergence(targets, held_out), fits, held_out
