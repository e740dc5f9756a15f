"""One WaveNet level as one Triton kernel: dilated conv -> sigmoid*tanh*mish gate -> 1x1 conv -> + residual.

The eager level (`models.wavenet.WaveBlock`) reads and writes the (N, C, T) activations about ten times: three
dilated convs, three activations, two products, the skip conv and the add. Here each program takes one signal
and a tile of BLOCK_T steps, loads the tile at its three taps (t - d, t, t + d: the dilation halo, zeros outside
the signal), computes the 3C gate pre-activations as three (C x C) @ (C x BLOCK_T) products per tap with fp32
accumulation, applies the gate in fp32, casts it to the activations' dtype for the (C x C) skip product and adds
the bias and the residual: one read of x and of the residual, one write of the output.

`torch.ops.hms_infer.wave_level` is a custom op, so `torch.compile` treats it as one opaque call. With
`TRITON_INTERPRET=1` set before import, the kernel runs on CPU tensors (for tests; fp32 and fp16 only: the
interpreter's bf16 dot is wrong).
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
CONFIGS = ([triton.Config({"BLOCK_T": 32})] if INTERPRET else
           [triton.Config({"BLOCK_T": bt}, num_warps=w) for bt in (64, 128, 256) for w in (4, 8)])


def _bench(kernel_call, quantiles):
    """Autotuning per channel count: short timings (a few ms per config) keep the first batch quick."""
    return triton.testing.do_bench(kernel_call, warmup=2, rep=10, quantiles=quantiles)


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


@triton.autotune(configs=CONFIGS, key=["C", "T"], do_bench=_bench)
@triton.jit
def _wave_level_kernel(x_ptr, res_ptr, y_ptr, gw_ptr, gb_ptr, sw_ptr, sb_ptr, T, dilation,
                       C: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr, PRECISION: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
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


@torch.library.custom_op("hms_infer::wave_level", mutates_args=())
def wave_level(x: torch.Tensor, res: torch.Tensor, gate_weight: torch.Tensor, gate_bias: torch.Tensor,
               skip_weight: torch.Tensor, skip_bias: torch.Tensor, dilation: int) -> torch.Tensor:
    """One level: x, res (N, C, T); gate_weight (3C, C, 3), gate_bias (3C,), skip_weight (C, C), skip_bias (C,),
    all one dtype -> (N, C, T) = skip(sigmoid(g_s) * tanh(g_t) * mish(g_m)) + res, g = dilated conv of x."""
    x, res = x.contiguous(), res.contiguous()
    n, c, t = x.shape
    y = torch.empty_like(x)
    grid = lambda meta: (n, triton.cdiv(t, meta["BLOCK_T"]))  # noqa: E731
    _wave_level_kernel[grid](x, res, y, gate_weight.contiguous(), gate_bias.contiguous(), skip_weight.contiguous(),
                             skip_bias.contiguous(), t, dilation, C=c, BLOCK_C=max(16, triton.next_power_of_2(c)),
                             PRECISION="ieee" if x.dtype == torch.float32 else "tf32")
    return y


@wave_level.register_fake
def _(x, res, gate_weight, gate_bias, skip_weight, skip_bias, dilation):
    return torch.empty_like(x)
