"""One WaveNet level as one Triton kernel: dilated conv -> sigmoid*tanh*mish gate -> 1x1 conv -> + residual.

The eager level (`models.wavenet.WaveBlock`) reads and writes the (N, C, T) activations about ten times: three
dilated convs, three activations, two products, the skip conv and the add. Here each program takes one signal
and a tile of BLOCK_T steps, loads the tile at its three taps (t - d, t, t + d: the dilation halo, zeros outside
the signal), computes the 3C gate pre-activations as three (C x C) @ (C x BLOCK_T) products per tap with fp32
accumulation, applies the gate in fp32, casts it to the activations' dtype for the (C x C) skip product and adds
the bias and the residual: one read of x and of the residual, one write of the output. The grid runs the tiles of
one signal next to each other (axis 0: tiles, axis 1: signals), so the halo a tile re-reads is still in L2.

Tiles are fixed per channel block, dtype and GPU generation (`tile_config`), not autotuned: Triton's autotuner
keeps a call's arguments on the shared kernel object, so two launching threads (one per GPU) that meet an
untuned key crash each other (triton-lang/triton#11494), and tuning cost seconds in every process's first batch.
`Ensemble` compiles every variant on each device in the main thread before any launching thread starts
(`models.wavenet_fast.check_fused`); a launch of a variant not seen before holds a lock (the JIT's caches are
shared by the threads). A compile or launch failure is a `FusedKernelError` (its member falls back).

`torch.ops.hms_infer.wave_level` is a custom op, so `torch.compile` treats it as one opaque call. With
`TRITON_INTERPRET=1` set before import, the kernel runs on CPU tensors (for tests; fp32 and fp16 only: the
interpreter's bf16 dot is wrong).
"""
from __future__ import annotations

import contextlib
import os
import threading
from functools import lru_cache
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from ..errors import FusedKernelError

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
_LAUNCH = threading.Lock()
_LAUNCHED: set[tuple] = set()  # the variants launched once (compiled and cached): no lock for them


class TileConfig(NamedTuple):
    block_t: int
    num_warps: int


# Candidates a GPU session sweeps (tests/gpu: the fused level's speed) to confirm or update `tile_config`.
CANDIDATES = (TileConfig(64, 4), TileConfig(128, 4), TileConfig(128, 8), TileConfig(256, 8))


def block_channels(channels: int) -> int:
    """The channel block: a power of two, at least 16 (`tl.dot` needs M, K >= 16)."""
    return max(16, triton.next_power_of_2(channels))


def tile_config(channels: int, dtype: torch.dtype, capability: tuple[int, int] = (8, 0)) -> TileConfig:
    """The tile of a level of `channels` channels in `dtype` on a GPU of compute `capability`.

    Three fp32 (BLOCK_C x BLOCK_T) accumulators per program: 128 steps keep them in registers with 4 warps at
    BLOCK_C 16 and 8 warps at 32; pre-Ampere GPUs (64 KB of shared memory, smaller register files) take 64 steps.
    fp32 operands use FMA dots (checks only, not a served precision): small tiles compile fast."""
    if INTERPRET:
        return TileConfig(32, 1)
    if dtype == torch.float32 or capability < (8, 0):
        return TileConfig(64, 4)
    return TileConfig(128, 4 if block_channels(channels) <= 16 else 8)


def launch_options(channels: int, dtype: torch.dtype, config: TileConfig) -> dict:
    """The constexprs and options of a launch of `channels` channels in `dtype` with tile `config`: the launch's
    and the ahead-of-time compile's (`kernels.aot`)."""
    return {"C": channels, "BLOCK_C": block_channels(channels), "BLOCK_T": config.block_t,
            "PRECISION": "ieee" if dtype == torch.float32 else "tf32", "num_warps": config.num_warps}


@triton.jit
def _tanh(x):
    e = tl.exp(-2.0 * tl.abs(x))
    th = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -th, th)


@triton.jit
def _mish(x):
    # x * tanh(softplus(x)) with u = e^x: tanh(log(1 + u)) = (u^2 + 2u) / (u^2 + 2u + 2); ~x beyond 20
    u = tl.exp(tl.minimum(x, 20.0))
    n = u * (u + 2.0)
    return tl.where(x > 20.0, x, x * n / (n + 2.0))


@triton.jit
def _wave_level_kernel(x_ptr, res_ptr, y_ptr, gw_ptr, gb_ptr, sw_ptr, sb_ptr, T, dilation,
                       C: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr, PRECISION: tl.constexpr):
    n = tl.program_id(1).to(tl.int64)
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    ch = tl.arange(0, BLOCK_C)
    cmask = ch < C
    wmask = cmask[:, None] & cmask[None, :]
    base = n * C * T
    acc_s = tl.zeros((BLOCK_C, BLOCK_T), dtype=tl.float32)
    acc_t = tl.zeros((BLOCK_C, BLOCK_T), dtype=tl.float32)
    acc_m = tl.zeros((BLOCK_C, BLOCK_T), dtype=tl.float32)
    for j in tl.static_range(3):
        tt = t + (j - 1) * dilation
        xmask = cmask[:, None] & ((tt >= 0) & (tt < T))[None, :]
        xj = tl.load(x_ptr + base + ch[:, None] * T + tt[None, :], mask=xmask, other=0.0)
        w = (ch[:, None] * C + ch[None, :]) * 3 + j  # gate_weight[g * C + out, in, j]
        w_s = tl.load(gw_ptr + w, mask=wmask, other=0.0)
        w_t = tl.load(gw_ptr + 3 * C * C + w, mask=wmask, other=0.0)
        w_m = tl.load(gw_ptr + 6 * C * C + w, mask=wmask, other=0.0)
        acc_s = tl.dot(w_s, xj, acc_s, input_precision=PRECISION)
        acc_t = tl.dot(w_t, xj, acc_t, input_precision=PRECISION)
        acc_m = tl.dot(w_m, xj, acc_m, input_precision=PRECISION)
    b_s = tl.load(gb_ptr + ch, mask=cmask, other=0.0).to(tl.float32)
    b_t = tl.load(gb_ptr + C + ch, mask=cmask, other=0.0).to(tl.float32)
    b_m = tl.load(gb_ptr + 2 * C + ch, mask=cmask, other=0.0).to(tl.float32)
    gate = tl.sigmoid(acc_s + b_s[:, None]) * _tanh(acc_t + b_t[:, None]) * _mish(acc_m + b_m[:, None])

    w_skip = tl.load(sw_ptr + ch[:, None] * C + ch[None, :], mask=wmask, other=0.0)
    out = tl.dot(w_skip, gate.to(w_skip.dtype), input_precision=PRECISION)
    out += tl.load(sb_ptr + ch, mask=cmask, other=0.0).to(tl.float32)[:, None]
    omask = cmask[:, None] & (t < T)[None, :]
    offs = base + ch[:, None] * T + t[None, :]
    out += tl.load(res_ptr + offs, mask=omask, other=0.0).to(tl.float32)
    tl.store(y_ptr + offs, out.to(y_ptr.dtype.element_ty), mask=omask)


def check_level_args(x: torch.Tensor, res: torch.Tensor, gate_weight: torch.Tensor, gate_bias: torch.Tensor,
                     skip_weight: torch.Tensor, skip_bias: torch.Tensor) -> None:
    """Shapes (see `wave_level`), one dtype and one device for all six; a ValueError naming the first mismatch."""
    if x.dim() != 3:
        raise ValueError(f"wave_level: x must be (N, C, T), got {tuple(x.shape)}")
    n, c, t = x.shape
    args = {"res": res, "gate_weight": gate_weight, "gate_bias": gate_bias, "skip_weight": skip_weight,
            "skip_bias": skip_bias}
    shapes = {"res": (n, c, t), "gate_weight": (3 * c, c, 3), "gate_bias": (3 * c,), "skip_weight": (c, c),
              "skip_bias": (c,)}
    for name, a in args.items():
        if tuple(a.shape) != shapes[name]:
            raise ValueError(f"wave_level: {name} must be {shapes[name]} for x {tuple(x.shape)}, got {tuple(a.shape)}")
        if a.dtype != x.dtype or a.device != x.device:
            raise ValueError(f"wave_level: {name} is {a.dtype} on {a.device}, x is {x.dtype} on {x.device}")


@lru_cache(maxsize=None)
def _capability(device: torch.device) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device) if device.type == "cuda" else (8, 0)


def _on(device: torch.device) -> contextlib.AbstractContextManager:
    """Triton launches on the current device: make it x's."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def launch(x: torch.Tensor, res: torch.Tensor, gate_weight: torch.Tensor, gate_bias: torch.Tensor,
           skip_weight: torch.Tensor, skip_bias: torch.Tensor, dilation: int, config: TileConfig | None = None
           ) -> torch.Tensor:
    """`wave_level` with an explicit tile (`config`, default `tile_config`): the op's body, and the GPU sweep's."""
    check_level_args(x, res, gate_weight, gate_bias, skip_weight, skip_bias)
    n, c, t = x.shape
    args = (x.contiguous(), res.contiguous(), x.new_empty(x.shape), gate_weight.contiguous(), gate_bias.contiguous(),
            skip_weight.contiguous(), skip_bias.contiguous())
    config = config or tile_config(c, x.dtype, _capability(x.device))
    # what Triton specialises a compile on: constexprs, dtype, ints equal to 1 or divisible by 16, 16-byte alignment
    variant = (x.device, c, x.dtype, *config, t % 16, dilation == 1, dilation % 16,
               *(a.data_ptr() % 16 for a in args))
    try:
        with (contextlib.nullcontext() if variant in _LAUNCHED else _LAUNCH), _on(x.device):
            _wave_level_kernel[(triton.cdiv(t, config.block_t), n)](*args, t, dilation,
                                                                     **launch_options(c, x.dtype, config))
    except Exception as e:  # noqa: BLE001  a compile or launch failure, as the caller's one kind of error
        if "out of memory" in str(e):
            raise
        raise FusedKernelError(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    _LAUNCHED.add(variant)
    return args[2]


@torch.library.custom_op("hms_infer::wave_level", mutates_args=())
def wave_level(x: torch.Tensor, res: torch.Tensor, gate_weight: torch.Tensor, gate_bias: torch.Tensor,
               skip_weight: torch.Tensor, skip_bias: torch.Tensor, dilation: int) -> torch.Tensor:
    """One level: x, res (N, C, T); gate_weight (3C, C, 3), gate_bias (3C,), skip_weight (C, C), skip_bias (C,),
    all one dtype -> (N, C, T) contiguous = skip(sigmoid(g_s) * tanh(g_t) * mish(g_m)) + res, g = dilated conv
    of x."""
    return launch(x, res, gate_weight, gate_bias, skip_weight, skip_bias, dilation)


@wave_level.register_fake
def _(x, res, gate_weight, gate_bias, skip_weight, skip_bias, dilation):
    check_level_args(x, res, gate_weight, gate_bias, skip_weight, skip_bias)
    return x.new_empty(x.shape)  # contiguous, as the real op's output
