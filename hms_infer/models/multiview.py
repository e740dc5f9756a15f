"""All brain-flip views of a sample in one pass, computing once what the views share.

Every view's 24 signals are a signed permutation of the `none` montage's, each signal staying in its chain
(`montage.signed_permutation`). So, exactly:
- the spectrogram branch does not see the flips: it runs once per sample;
- an STFT magnitude does not change with the sign of its signal: the 24 spectra are computed once and permuted;
- a chain's WaveNet sees each distinct signed signal once (42 of the 96 for the four views), then its outputs are
  permuted into each view's image.
Only the two 2-D backbones and the heads run per view. `HMSModel.forward` on each view stays the definition.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import torch

from ..constants import HEADS
from ..montage import CHAIN_SIZE, N_CHAINS, signed_permutation
from .hms import HMSModel


@dataclass(frozen=True)
class ViewPlan:
    """Index plan of `views` over the `none` montage's signals.

    channel: (V, 24) the `none` signal behind each view's signal. Per chain c: `inputs[c]` the distinct
    (channel, sign) signals its WaveNet runs on, `gather[c]` (V, 8) which of them each view's chain position takes.
    """

    views: tuple[str, ...]
    channel: tuple[tuple[int, ...], ...]
    inputs: tuple[tuple[tuple[int, int], ...], ...]
    gather: tuple[tuple[tuple[int, ...], ...], ...]
    _on: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The plan as index tensors on `device`, made once per device (no host-to-device copy per batch)."""
        if device not in self._on:
            self._on[device] = {
                "channel": torch.tensor(self.channel, device=device),
                **{f"channel{c}": torch.tensor([ch for ch, _ in self.inputs[c]], device=device)
                   for c in range(N_CHAINS)},
                **{f"sign{c}": torch.tensor([float(s) for _, s in self.inputs[c]], device=device)
                   for c in range(N_CHAINS)},
                **{f"gather{c}": torch.tensor(self.gather[c], device=device) for c in range(N_CHAINS)},
            }
        return self._on[device]


@lru_cache(maxsize=None)
def view_plan(views: tuple[str, ...]) -> ViewPlan:
    perms = [signed_permutation(v) for v in views]
    inputs, gather = [], []
    for c in range(N_CHAINS):
        chain = range(c * CHAIN_SIZE, (c + 1) * CHAIN_SIZE)
        distinct = list(dict.fromkeys(perm[i] for perm in perms for i in chain))
        if any(ch // CHAIN_SIZE != c for ch, _ in distinct):
            raise ValueError(f"views {views}: a flip moves a signal out of chain {c}")
        inputs.append(tuple(distinct))
        gather.append(tuple(tuple(distinct.index(perm[i]) for i in chain) for perm in perms))
    channel = tuple(tuple(ch for ch, _ in perm) for perm in perms)
    return ViewPlan(tuple(views), channel, tuple(inputs), tuple(gather))


def _in_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int | None) -> torch.Tensor:
    return fn(x) if chunk is None else torch.cat([fn(part) for part in x.split(chunk)])


def forward_views(model: HMSModel, eeg: torch.Tensor, spect: torch.Tensor, plan: ViewPlan,
                  chunk: int | None = None, heads: bool = False) -> torch.Tensor:
    """`head_all` logits of every view: eeg (B, 24, T) `none` montage, spect (B, 10, 300, 100) -> (B, V, 6).

    `chunk`: run the two 2-D backbones on at most this many of the B*V images at once (on the CPU, 1: their
    large activations make a batch of two cost ~2.7x one), None: all at once (GPUs).
    `heads`: every head's logits from the same pass, (B, V, 4, 6) in `HEADS` order (`all` first, the same numbers
    as without `heads`).
    """
    b, v = eeg.shape[0], len(plan.views)
    idx = plan.tensors(eeg.device)
    f_spect = model.spect_backbone(spect).repeat_interleave(v, dim=0)  # (B*V, F)

    stft = model.eeg_backbone
    spectra = stft.spectra(eeg)[:, idx["channel"]]  # (B, V, 24, Fq, Tf)
    f_stft = _in_chunks(stft.from_spectra, spectra.flatten(0, 1), chunk)

    wave = model.eeg_backbone_1d
    ys = []
    for c, wavenet in enumerate(wave.backbone_1ds):
        x = eeg[:, idx[f"channel{c}"]] * idx[f"sign{c}"][:, None]  # (B, U, T) distinct signed signals
        y = wavenet(x.reshape(-1, 1, x.shape[-1]))  # (B*U, C, T')
        y = y.reshape(b, x.shape[1], *y.shape[1:]).permute(0, 1, 3, 2)  # (B, U, T', C)
        ys.append(y[:, idx[f"gather{c}"]].flatten(0, 1))  # (B*V, 8, T', C)
    f_wave = _in_chunks(wave.backbone_2d, wave.assemble(ys), chunk)
    logits = model.head_all(torch.cat([f_stft, f_spect, f_wave], dim=1))  # (B*V, 6)
    if heads:
        aux = (model.head_spect(f_spect), model.head_eeg(f_stft), model.head_1d(f_wave))
        return torch.stack([logits, *aux], dim=1).reshape(b, v, len(HEADS), -1)
    return logits.reshape(b, v, -1)
