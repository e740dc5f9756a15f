"""The bipolar montage (SPEC §2.1 steps 6-7): 24 node differences in three chains of 8, the brain flips that rename
electrodes (the TTA views), and the views as signed permutations of the `none` montage.

`bipolar` forms the signals of one view from the filtered electrodes in numpy (what the training code fed the
model); `bipolar_views` forms every view's on the device, from one copy of the electrodes.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

from .constants import ELECTRODES
from .errors import HMSInputError

if TYPE_CHECKING:  # the command line reads VIEWS and parse_views without torch (only `bipolar_views` needs it)
    import numpy as np
    import torch

# The 24 bipolar signals `first - second`, in model channel order: three chains of 8.
BIPOLAR_PAIRS: tuple[tuple[str, str], ...] = (
    # chain A (temporal)
    ("O1", "T5"), ("T5", "T3"), ("T3", "F7"), ("F7", "Fp1"),
    ("O2", "T6"), ("T6", "T4"), ("T4", "F8"), ("F8", "Fp2"),
    # chain B (parasagittal)
    ("O1", "P3"), ("P3", "C3"), ("C3", "F3"), ("F3", "Fp1"),
    ("O2", "P4"), ("P4", "C4"), ("C4", "F4"), ("F4", "Fp2"),
    # transverse
    ("Fz", "F7"), ("Fz", "F8"), ("Cz", "T3"), ("Cz", "T4"),
    ("Pz", "T5"), ("Pz", "T6"), ("P3", "P4"), ("F3", "F4"),
)
CHAINS: tuple[str, ...] = ("temporal", "parasagittal", "transverse")
N_CHAINS = len(CHAINS)
CHAIN_SIZE = 8


def _swaps(*pairs: tuple[str, str]) -> dict[str, str]:
    out = {a: b for a, b in pairs}
    out.update({b: a for a, b in pairs})
    return out


LEFT_RIGHT: dict[str, str] = _swaps(
    ("Fp1", "Fp2"), ("F3", "F4"), ("C3", "C4"), ("P3", "P4"),
    ("F7", "F8"), ("T3", "T4"), ("T5", "T6"), ("O1", "O2"),
)
FRONT_BACK: dict[str, str] = _swaps(
    ("Fp1", "O1"), ("Fp2", "O2"), ("F3", "P3"), ("F4", "P4"),
    ("Fz", "Pz"), ("F7", "T5"), ("F8", "T6"),
)
# TTA views: the electrode renamings applied in order (left-right first, then front-back).
FLIPS: dict[str, tuple[dict[str, str], ...]] = {
    "none": (),
    "lr": (LEFT_RIGHT,),
    "fb": (FRONT_BACK,),
    "lrfb": (LEFT_RIGHT, FRONT_BACK),
}
VIEWS: tuple[str, ...] = tuple(FLIPS)


def parse_views(value: str | Sequence[str], source: str) -> tuple[str, ...]:
    """`none,lr` or a sequence of view names -> the views; anything else an error naming `source`."""
    views = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    if not views or any(v not in VIEWS for v in views):
        raise HMSInputError(f"{source}: tta must be a non-empty list of {list(VIEWS)}, got {value!r}")
    return tuple(views)


@lru_cache(maxsize=None)
def montage_index(view: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Indices into `ELECTRODES` of the first and second electrode of each of the 24 pairs, after the flip `view`."""
    if view not in FLIPS:
        raise ValueError(f"unknown flip {view!r}; expected one of {list(FLIPS)}")
    first, second = [], []
    for a, b in BIPOLAR_PAIRS:
        for swap in FLIPS[view]:
            a, b = swap.get(a, a), swap.get(b, b)
        first.append(ELECTRODES.index(a))
        second.append(ELECTRODES.index(b))
    return tuple(first), tuple(second)


@lru_cache(maxsize=None)
def signed_permutation(view: str) -> tuple[tuple[int, int], ...]:
    """Each of the 24 signals of `view` as (channel, sign) of the `none` montage: signal_v[i] = sign * signal[channel].

    A brain flip renames electrodes, so each flipped pair is a montage pair, possibly reversed (sign -1).
    """
    first, second = montage_index("none")
    pairs = list(zip(first, second))
    out = []
    for a, b in zip(*montage_index(view)):
        if (a, b) in pairs:
            out.append((pairs.index((a, b)), 1))
        elif (b, a) in pairs:
            out.append((pairs.index((b, a)), -1))
        else:
            raise ValueError(f"view {view!r}: pair {ELECTRODES[a]}-{ELECTRODES[b]} is not a montage pair")
    return tuple(out)


def bipolar(electrodes: np.ndarray, view: str = "none") -> np.ndarray:
    """(19, T) electrode signals -> (24, T) node differences of the brain-flip `view`."""
    first, second = montage_index(view)
    return electrodes[list(first)] - electrodes[list(second)]


_INDEX: dict[tuple[torch.device, tuple[str, ...]], torch.Tensor] = {}


def bipolar_views(electrodes: torch.Tensor, views: Sequence[str]) -> torch.Tensor:
    """(B, 19, T) electrodes -> (B, V, 24, T) node differences of each brain-flip view (the same numbers as
    `bipolar`)."""
    import torch
    key = (electrodes.device, tuple(views))
    if key not in _INDEX:  # once per device: no host-to-device copy (and stream sync) per batch
        _INDEX[key] = torch.tensor([montage_index(v) for v in views], device=electrodes.device)  # (V, 2, 24)
    index = _INDEX[key]
    return electrodes[:, index[:, 0]] - electrodes[:, index[:, 1]]
