"""Fast WaveNet levels for the same checkpoints: the three gate convs of a level as one conv, or one fused kernel.

`accelerate(model, backend)` swaps each `WaveBlock` for a `FastWaveBlock` that holds the very same parameter
modules (so state-dict keys and strict loading are unchanged) plus, as non-persistent buffers, each level's
three gate convs concatenated into one (3C, C, 3) conv and the skip convs stacked. Backends:
- `merged`: one `conv1d` of 3C outputs per level instead of three (the same products and sums per output);
- `triton`: on CUDA with fp16/bf16 activations, one Triton kernel per level (`kernels.wave_level`); anything
  else (CPU, fp32) runs `merged`.
`WaveBlock.forward` stays the definition both are tested against.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .wavenet import WaveBlock

BACKENDS = ("eager", "merged", "triton")


_MERGED = ("gate_weight", "gate_bias", "skip_weight", "skip_bias")


class FastWaveBlock(nn.Module):
    """A `WaveBlock`'s modules, run level by level with merged gate weights (re-merged after each load).

    `dtype`: the autocast dtype the activations will have; the merged weights are also kept cast to it, so that
    no cast runs per level and call (and a compiled forward sees no cache change).
    """

    def __init__(self, block: WaveBlock, backend: str = "merged", dtype: torch.dtype | None = None):
        super().__init__()
        self.conv1x1, self.skip_convs, self.dil_convs = block.conv1x1, block.skip_convs, block.dil_convs
        self.ds_conv = block.ds_conv
        self.backend = backend
        self.dtype = dtype
        self.merge()
        self.register_load_state_dict_post_hook(lambda module, _keys: module.merge())

    @torch.no_grad()
    def merge(self) -> None:
        """gate_weight (L, 3C, C, 3) = [sigmoid; tanh; mish] convs of each level, gate_bias (L, 3C);
        skip_weight (L, C, C), skip_bias (L, C); each also as `<name>_lp` in `dtype`."""
        levels = range(len(self.skip_convs))
        convs = self.dil_convs
        merged = {
            "gate_weight": torch.stack([torch.cat([convs[3 * k + g].weight for g in range(3)]) for k in levels]),
            "gate_bias": torch.stack([torch.cat([convs[3 * k + g].bias for g in range(3)]) for k in levels]),
            "skip_weight": torch.stack([s.weight[..., 0] for s in self.skip_convs]),
            "skip_bias": torch.stack([s.bias for s in self.skip_convs]),
        }
        for name, value in merged.items():
            self.register_buffer(name, value, persistent=False)
            self.register_buffer(f"{name}_lp", value.to(self.dtype) if self.dtype else None, persistent=False)

    def _weights(self, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """The merged weights in the activations' dtype."""
        if dtype == self.dtype:
            return tuple(getattr(self, f"{name}_lp") for name in _MERGED)
        return tuple(getattr(self, name).to(dtype) for name in _MERGED)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, in, T) -> (N, out, T), or (N, out, T / ds_factor) in the last block."""
        x = self.conv1x1(x)
        res = x
        fused = self.backend == "triton" and x.is_cuda and x.dtype in (torch.float16, torch.bfloat16)
        gw, gb, sw, sb = self._weights(x.dtype)
        for k in range(len(self.skip_convs)):
            d = 2**k
            if fused:
                x = torch.ops.hms_infer.wave_level(x, res, gw[k], gb[k], sw[k], sb[k], d)
                continue
            sig, tanh, mish = F.conv1d(x, gw[k], gb[k], padding=d, dilation=d).chunk(3, dim=1)
            gate = torch.sigmoid(sig) * torch.tanh(tanh) * F.mish(mish)
            x = F.conv1d(gate, sw[k][..., None], sb[k]) + res
        if self.ds_conv is not None:
            x = self.ds_conv(x)
        return x


def accelerate(model: nn.Module, backend: str = "merged", dtype: torch.dtype | None = None) -> nn.Module:
    """Swap every `WaveBlock` of `model` for a `FastWaveBlock` (in place; `eager` leaves the model as it is).

    `dtype`: the autocast dtype the model will run under (None: fp32)."""
    if backend not in BACKENDS:
        raise ValueError(f"WaveNet backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "eager":
        return model
    if backend == "triton":
        from ..kernels import wave_level  # noqa: F401  registers torch.ops.hms_infer.wave_level
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, WaveBlock):
                setattr(module, name, FastWaveBlock(child, backend, dtype))
            elif isinstance(child, FastWaveBlock):
                child.backend, child.dtype = backend, dtype
                child.merge()
    return model
