"""Fast WaveNet levels for the same checkpoints: the three gate convs of a level as one conv, or one fused kernel.

`accelerate(model, backend)` swaps each `WaveBlock` for a `FastWaveBlock` that holds the very same parameter
modules (so state-dict keys and strict loading are unchanged) plus, as non-persistent buffers, each level's
three gate convs concatenated into one (3C, C, 3) conv and the skip convs stacked. Backends:
- `merged`: one `conv1d` of 3C outputs per level instead of three (the same products and sums per output);
- `triton`: on CUDA with fp16/bf16 activations, one Triton kernel per level (`kernels.wave_level`); anything
  else (CPU, fp32) runs `merged`.
`WaveBlock.forward` stays the definition both are tested against. `check_fused` compiles and checks the fused
levels of a model on its device (in the main thread, before any launching thread runs them); `set_backend`
switches a model's blocks (a member whose fused levels fail falls back to `merged`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..constants import EEG_WINDOW
from .wavenet import WaveBlock

BACKENDS = ("eager", "merged", "triton")
FUSED_RTOL = 1e-2  # a fused level against the merged convs, relative to the largest output (fp16: ~1e-3)


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
        """gate_weight (L, 3C, 3C) = each level's [sigmoid; tanh; mish] conv weights (3C, C, 3), flattened to
        3-D so that `model.to(memory_format=torch.channels_last)` leaves them contiguous; gate_bias (L, 3C);
        skip_weight (L, C, C), skip_bias (L, C); each also as `<name>_lp` in `dtype`."""
        levels = range(len(self.skip_convs))
        convs = self.dil_convs
        merged = {
            "gate_weight": torch.stack([torch.cat([convs[3 * k + g].weight for g in range(3)]).flatten(1)
                                        for k in levels]),
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

    def level_weights(self, k: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """Level k's merged weights in `dtype`: gate weight (3C, C, 3), gate bias (3C,), skip weight (C, C), skip
        bias (C,); each a contiguous view."""
        gw, gb, sw, sb = self._weights(dtype)
        return gw[k].view(gw.shape[1], -1, 3), gb[k], sw[k], sb[k]

    def fused(self, x: torch.Tensor) -> bool:
        """Whether the levels run the fused kernel for activations `x` (CUDA, fp16 or bf16)."""
        return self.backend == "triton" and x.is_cuda and x.dtype in (torch.float16, torch.bfloat16)

    def level(self, x: torch.Tensor, res: torch.Tensor, k: int, fused: bool) -> torch.Tensor:
        """Level k: x, res (N, C, T) -> (N, C, T), with the fused kernel or the merged convs."""
        gw, gb, sw, sb = self.level_weights(k, x.dtype)
        d = 2**k
        if fused:
            return torch.ops.hms_infer.wave_level(x, res, gw, gb, sw, sb, d)
        sig, tanh, mish = F.conv1d(x, gw, gb, padding=d, dilation=d).chunk(3, dim=1)
        gate = torch.sigmoid(sig) * torch.tanh(tanh) * F.mish(mish)
        return F.conv1d(gate, sw[..., None], sb) + res

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, in, T) -> (N, out, T), or (N, out, T / ds_factor) in the last block."""
        x = self.conv1x1(x)
        res = x
        fused = self.fused(x)
        for k in range(len(self.skip_convs)):
            x = self.level(x, res, k, fused)
        if self.ds_conv is not None:
            x = self.ds_conv(x)
        return x

    def fused_errors(self, x: torch.Tensor) -> tuple[list[float], torch.Tensor]:
        """Each fused level's error against the merged convs, relative to the largest merged output (inf where the
        fused output is not finite), each level fed the merged path's input; and the merged block output.
        x: (N, in, T) under the autocast the model runs with."""
        res = x = self.conv1x1(x)
        errors = []
        for k in range(len(self.skip_convs)):
            want = self.level(x, res, k, fused=False).float()
            got = self.level(x, res, k, fused=True).float()
            finite = bool(got.isfinite().all())
            errors.append(((got - want).abs().max() / want.abs().max()).item() if finite else float("inf"))
            x = want.to(x.dtype)
        return errors, x if self.ds_conv is None else self.ds_conv(x)


def fast_blocks(model: nn.Module) -> list[FastWaveBlock]:
    return [m for m in model.modules() if isinstance(m, FastWaveBlock)]


def set_backend(model: nn.Module, backend: str) -> None:
    """Run every `FastWaveBlock` of `model` with `backend` (`merged` or `triton`); weights stay as merged."""
    for block in fast_blocks(model):
        block.backend = backend


@torch.inference_mode()
def check_fused(model: nn.Module, device: torch.device, dtype: torch.dtype, length: int = EEG_WINDOW
                ) -> str | None:
    """Compile and check the fused levels of every WaveNet of `model` on one signal of the model's `length`, on
    `device` under `dtype` autocast (the caller makes `device` current): every channel count, dilation and weight
    slice the model will launch, so that no compilation is left for the launching threads. None when every level
    matches the merged convs within `FUSED_RTOL`, else why not (a compile or launch error, or the error found)."""
    wavenets = [m for m in model.modules() if any(isinstance(c, FastWaveBlock) for c in m.children())]
    x = torch.randn(1, 1, length, generator=torch.Generator().manual_seed(0)) * 2
    try:
        with torch.autocast(device.type, dtype=dtype):
            for wavenet in wavenets:
                signal = x.to(device)
                for block in wavenet.children():
                    errors, signal = block.fused_errors(signal)
                    bad = [e for e in errors if not e < FUSED_RTOL]  # NaN too
                    if bad:
                        return f"fused levels differ from the merged convs by {bad[0]:.3g} (relative)"
    except Exception as e:  # noqa: BLE001  any compile or launch failure means: use the merged convs
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


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
