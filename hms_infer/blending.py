"""The blend of the members' and views' logits into one probability per class (SPEC's ensemble: equal weights,
probability blend; a manifest may say otherwise). Pure torch, differentiable: `blendfit` minimises through it."""
from __future__ import annotations

from typing import Sequence

import torch

from .constants import HEADS, SUBMISSION_ORDER


def blend(logits: torch.Tensor, weights: Sequence[float] | torch.Tensor, how: str = "prob",
          temperatures: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """(M, B, V, 6) member x view logits -> (B, 6) probabilities.

    prob:  sum_m w_m * mean_v softmax(logits)        logit: softmax(sum_m w_m * mean_v logits)
    Weights are normalised to sum to 1. `temperatures` (M,): each member's logits are divided by its own first
    (None: unchanged). Differentiable in float64 tensor weights and temperatures (`fit` minimises through it).
    """
    w = torch.as_tensor(weights, dtype=torch.float64)
    w = (w / w.sum()).view(-1, 1, 1)
    logits = logits.double()
    if temperatures is not None:
        logits = logits / torch.as_tensor(temperatures, dtype=torch.float64).view(-1, 1, 1, 1)
    if how == "prob":
        return (w * logits.softmax(-1).mean(2)).sum(0)
    if how == "logit":
        return (w * logits.mean(2)).sum(0).softmax(-1)
    raise ValueError(f"blend must be 'prob' or 'logit', got {how!r}")


def blend_probs(logits: torch.Tensor, weights: Sequence[float] | torch.Tensor, how: str = "prob",
                temperatures: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """`blend` of (G, N, V, 6) logits in `CLASSES` order -> (N, 6) probabilities in `VOTE_COLUMNS` order (the
    training table's and a submission's)."""
    return blend(logits, weights, how, temperatures)[:, list(SUBMISSION_ORDER)]


def eeg_heads(logits: torch.Tensor) -> torch.Tensor:
    """(..., 4, 6) logits of every head in `HEADS` order -> (..., 6) log-probabilities of the EEG-only prediction:
    the mean of the probabilities of `head_eeg` (the STFT image) and `head_1d` (the WaveNet image).

    Both heads were trained on the same vote distributions with the same KL loss (weights 0.06 and 0.09 in the
    training code, which set how hard each pulled on its backbone, not how good it is), so each is a probability
    estimate of its own; their equal mixture is the ensemble's own rule (the `prob` blend) applied to two heads. As
    log-probabilities, the result goes through `blend` like `head_all`'s logits (softmax gives the mixture back).
    """
    stft, wave = (logits[..., HEADS.index(h), :].double().softmax(-1) for h in ("eeg_stft", "eeg_wavenet"))
    return ((stft + wave) / 2).log()
