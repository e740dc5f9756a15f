"""Device, precision and placement plumbing: where members run, in which dtype, how many rows at once.

Nothing here changes what a model computes (the blend math is `blending.blend`). The choices, each a fix from
GPU-REVIEW.md:
- precision `auto` is fp16 autocast on GPUs (as the training code validated) and fp32 on the CPU; fp16 on the
  CPU is refused (CPU autocast runs pow/log1p in fp16 and the STFT image overflows), bf16 below sm_80 too;
  fp32 on a GPU turns TF32 off, so it means fp32;
- members are placed on GPUs balancing their FLOPs, and each GPU gets its own launching thread;
- the batch size `auto` fits the GPU's memory; a CUDA out-of-memory error halves the batch instead of failing.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Mapping, Sequence, TypeVar

import torch
from torch import nn

from .constants import PRECISIONS
from .errors import HMSInputError
from .models import ArchConfig, HMSModel, create_model
from .models.backbone import is_hgnetv2

log = logging.getLogger(__name__)
T = TypeVar("T")
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = dict(zip(PRECISIONS, (None, torch.float16, torch.bfloat16)))
MAX_AUTO_BATCH = 32
CPU_AUTO_BATCH = 4
# Peak activation memory per view-sample and per column of the (2000, 24*C) WaveNet image, fp16, measured in
# GPU-REVIEW.md (batch 8 x 4 views): hgnetv2 4.1-4.9 GiB, EfficientNet 5.3-6.2 GiB per 32 view-samples.
ACTIVATION_GIB_PER_COLUMN = {"hgnetv2": 2.3e-4, "other": 2.9e-4}
MEMORY_SAFETY = 1.5  # cuDNN workspaces, allocator fragmentation: on a T4, batch 8 fits and 12 does not
CONTEXT_GIB = 0.75  # CUDA context and kernels, outside the allocator


def distributed_world() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) under torchrun (RANK / WORLD_SIZE / LOCAL_RANK), else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def resolve_devices(device: str = "auto") -> list[torch.device]:
    """`auto`: every visible GPU (under torchrun: the process's own, LOCAL_RANK), else the CPU; `cuda`: the
    same, but an error without a GPU; or a comma list like `cuda:0,cuda:1`."""
    if device in ("auto", "cuda"):
        n = torch.cuda.device_count()
        if n:
            world = distributed_world()
            if world is not None:
                return [torch.device("cuda", world[2] % n)]
            return [torch.device("cuda", i) for i in range(n)]
        if device == "cuda":
            raise HMSInputError("--device cuda: no CUDA device is visible")
        return [torch.device("cpu")]
    try:
        devices = [torch.device(d.strip()) for d in device.split(",")]
    except RuntimeError as e:
        raise HMSInputError(f"--device {device!r}: {e}") from None
    cuda = [d for d in devices if d.type == "cuda"]
    if cuda and not torch.cuda.is_available():
        raise HMSInputError(f"--device {device}: no CUDA device is visible")
    devices = list(dict.fromkeys(torch.device("cuda", d.index or 0) if d.type == "cuda" else d for d in devices))
    for d in devices:
        if d.type == "cuda" and d.index >= torch.cuda.device_count():
            raise HMSInputError(f"--device {device}: {d} does not exist ({torch.cuda.device_count()} visible)")
        if d.type not in ("cuda", "cpu"):
            raise HMSInputError(f"--device {device}: only cpu and cuda devices are supported, got {d}")
    return devices


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} (sm_{major}{minor})"
    return f"cpu ({torch.get_num_threads()} threads)"


def resolve_precision(precision: str, devices: Sequence[torch.device]) -> str:
    """`auto`: fp16 autocast when every device is a GPU (the training code validated fp16-mixed), else fp32."""
    if precision == "auto":
        return "fp16" if all(d.type == "cuda" for d in devices) else "fp32"
    if precision not in PRECISIONS:
        raise HMSInputError(f"--precision must be auto or one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and any(d.type != "cuda" for d in devices):
        raise HMSInputError("--precision fp16 runs on GPUs only: CPU autocast keeps pow and log1p in fp16, so the "
                            "STFT image overflows and the logits move by ~0.3; use bf16 or fp32 on the CPU")
    if precision == "bf16":
        for d in devices:
            if d.type == "cuda" and torch.cuda.get_device_capability(d) < (8, 0):
                raise HMSInputError(f"--precision bf16: {device_name(d)} has no bf16 support (sm_80 or newer "
                                    f"needed); use fp16")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    dtype = AUTOCAST_DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def on_device(device: torch.device) -> contextlib.AbstractContextManager:
    """Make `device` current in this thread (Triton launches on the current device)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def set_tf32(enabled: bool) -> None:
    """TF32 for fp32 convs and matmuls on Ampere and newer (all of cuDNN: convs and RNNs alike)."""
    mode = "tf32" if enabled else "ieee"
    if hasattr(torch.backends.cudnn, "fp32_precision"):
        torch.backends.cudnn.fp32_precision = mode
        torch.backends.cuda.matmul.fp32_precision = mode
    else:  # torch < 2.9
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled


def configure_backends(devices: Sequence[torch.device], precision: str) -> None:
    """cuDNN benchmark mode (fixed shapes: every batch is padded to the batch size); TF32 off for fp32."""
    if any(d.type == "cuda" for d in devices):
        torch.backends.cudnn.benchmark = True
        if precision == "fp32":
            set_tf32(False)


@lru_cache(maxsize=None)
def _fp32_class(cls: type) -> type:
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return cls.forward(self, x.float())
    return type(f"Fp32{cls.__name__}", (cls,), {"forward": forward})


def first_convs_in_fp32(model: HMSModel) -> None:
    """Run the first conv of each 2-D backbone in fp32 (for bf16). bf16 keeps 8 bits of mantissa: rounding the
    input images (the z-scored spectrogram above all) moved the reference tiny model's probabilities by 3.3e-3
    of bf16's 5.4e-3; with fp32 first convs bf16 differs from fp32 by 1.8e-3. Parameters and keys unchanged."""
    for backbone in model.backbones():
        conv = next(m for m in backbone.modules() if isinstance(m, nn.Conv2d))
        if not type(conv).__name__.startswith("Fp32"):
            conv.__class__ = _fp32_class(type(conv))


WAVENET_BACKEND_ENV = "HMS_WAVENET_BACKEND"  # auto (default) | merged | triton (also below sm_80)
_logged: set[str] = set()


def log_once(key: str, level: int, message: str) -> None:
    """Log `message` the first time `key` comes up in this process."""
    if key not in _logged:
        _logged.add(key)
        log.log(level, message)


def wave_backend(devices: Sequence[torch.device], precision: str, fast: bool) -> str:
    """The WaveNet levels' backend before each member's check (`prepare`): `eager` for the reference path;
    `triton` on GPUs of sm_80 or newer with fp16/bf16 where Triton imports; else `merged`. Triton no longer
    supports sm_75 (the T4; triton-lang/triton#10918): there `HMS_WAVENET_BACKEND=triton` opts in;
    `HMS_WAVENET_BACKEND=merged` never fuses."""
    if not fast:
        return "eager"
    choice = os.environ.get(WAVENET_BACKEND_ENV, "auto")
    if choice not in ("auto", "merged", "triton"):
        raise HMSInputError(f"{WAVENET_BACKEND_ENV} must be auto, merged or triton, got {choice!r}")
    if AUTOCAST_DTYPES[precision] is None or any(d.type != "cuda" for d in devices) or choice == "merged":
        return "merged"
    old = [d for d in devices if torch.cuda.get_device_capability(d) < (8, 0)]
    if old and choice == "auto":
        log_once("sm80", logging.INFO, f"the fused WaveNet kernel is off on {device_name(old[0])} (Triton "
                 f"supports sm_80 and newer; {WAVENET_BACKEND_ENV}=triton opts in): using the merged gate convs")
        return "merged"
    try:
        from .kernels import wave_level  # noqa: F401
    except Exception as e:  # noqa: BLE001  no Triton, or one that cannot build the kernel
        log_once("triton-import", logging.WARNING, f"the fused WaveNet kernel is unavailable "
                 f"({type(e).__name__}: {e}); using the merged gate convs")
        return "merged"
    return "triton"


def prepare(model: HMSModel, device: torch.device, precision: str, backend: str) -> str | None:
    """Ready a loaded model for its device and precision, in place (parameters and state-dict keys unchanged):
    the WaveNet `backend` (`models.wavenet_fast`), fp32 first convs for bf16, channels-last 2-D convs on GPUs
    (cuDNN's tensor-core convs are NHWC) for the fast path. With `triton`, the fused levels are compiled and
    checked on `device` now, in the calling thread (`wavenet_fast.check_fused`); where they fail the model runs
    the merged convs and the reason is returned (else None)."""
    from .models.wavenet_fast import accelerate, check_fused, set_backend
    accelerate(model, backend, AUTOCAST_DTYPES[precision])
    if precision == "bf16":
        first_convs_in_fp32(model)
    if backend != "eager" and device.type == "cuda" and precision != "fp32":
        model.to(memory_format=torch.channels_last)
    if backend != "triton":
        return None
    with on_device(device):
        problem = check_fused(model, device, AUTOCAST_DTYPES[precision])
    if problem:
        set_backend(model, "merged")
    return problem


# CUDA: "out of memory"; cuBLAS: CUBLAS_STATUS_ALLOC_FAILED; cuDNN 8: CUDNN_STATUS_ALLOC_FAILED; cuDNN 9:
# CUDNN_STATUS_INTERNAL_ERROR_{DEVICE,HOST}_ALLOCATION_FAILED
OUT_OF_MEMORY_TEXTS = ("out of memory", "ALLOC_FAILED", "ALLOCATION_FAILED")


def is_out_of_memory(error: BaseException) -> bool:
    """A CUDA allocation failure: torch's OutOfMemoryError, or a CUDA / cuBLAS / cuDNN error that says so."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(s in str(error) for s in OUT_OF_MEMORY_TEXTS)


def free_memory(devices: Sequence[torch.device]) -> None:
    """Collect what a failed pass left (its frames sit in reference cycles with its exception) and return the
    cached blocks to the GPUs."""
    gc.collect()
    for d in devices:
        if d.type == "cuda":
            with torch.cuda.device(d):
                torch.cuda.empty_cache()


def raise_compile_limits(graphs: int) -> None:
    """Let Dynamo keep `graphs` compiled graphs of one function: the members share `forward_views`' code, and each
    member, view set (time-budget levels) and batch size (out-of-memory halves) is a graph of its own; at the
    default limit (8) Dynamo falls back to eager silently."""
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), graphs))
            break
    for name in ("accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), graphs))
            break


@lru_cache(maxsize=None)
def member_gflops(arch: ArchConfig) -> float:
    """Forward GFLOP of one view-sample, counted on the meta device (no memory, ~1 s per architecture)."""
    from torch.utils.flop_counter import FlopCounterMode
    with torch.device("meta"):
        model = create_model(arch)
        inputs = model.example_inputs(1)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(*inputs)
    return counter.get_total_flops() / 1e9


def place(costs: Sequence[float], devices: Sequence[torch.device]) -> list[torch.device]:
    """Each member's device: largest cost first onto the least-loaded device (ties: the earlier device)."""
    load = {d: 0.0 for d in devices}
    out: list[torch.device | None] = [None] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        d = min(devices, key=lambda d: load[d])
        out[i] = d
        load[d] += costs[i]
    return out  # type: ignore[return-value]


def place_members(archs: Sequence[ArchConfig], devices: Sequence[torch.device]) -> list[torch.device]:
    """Each member's device: FLOP-balanced over several devices (`place`), else the one device."""
    if len(devices) == 1:
        return list(devices) * len(archs)
    return place([member_gflops(a) for a in archs], devices)


def activation_gib(arch: ArchConfig, precision: str) -> float:
    """Estimated peak activation memory of one view-sample of `arch` (GiB)."""
    family = "hgnetv2" if is_hgnetv2(arch.backbone) else "other"
    per = ACTIVATION_GIB_PER_COLUMN[family] * 24 * arch.wavenet.out_channels
    return per * (2 if precision == "fp32" else 1)


def auto_batch_size(members: Sequence[tuple[ArchConfig, nn.Module, torch.device]], n_views: int,
                    precision: str, total_gib: Mapping[torch.device, float] | None = None) -> int:
    """Rows per batch that fit every GPU: weights (+ the autocast copies) plus the largest member's activations
    for batch x views, with a safety factor; at most 32, a multiple of 8 (or a power of 2 below 8). CPU: 4."""
    devices = list(dict.fromkeys(d for _, _, d in members))
    if not any(d.type == "cuda" for d in devices):
        return CPU_AUTO_BATCH
    best = MAX_AUTO_BATCH
    for d in devices:
        if d.type != "cuda":
            continue
        total = (total_gib or {}).get(d) or torch.cuda.get_device_properties(d).total_memory / 2**30
        mine = [(a, m) for a, m, dev in members if dev == d]
        weights = sum(p.numel() * p.element_size() for _, m in mine for p in m.parameters()) / 2**30
        weights *= 1.0 if precision == "fp32" else 1.5
        free = total * 0.92 - weights - CONTEXT_GIB
        per_row = n_views * MEMORY_SAFETY * max(activation_gib(a, precision) for a, _ in mine)
        best = min(best, max(int(free // per_row), 1))
    if best >= 8:
        return best // 8 * 8
    return 1 << (best.bit_length() - 1)


@dataclass
class RunStats:
    """Where a run's wall time went: waiting for input batches vs. the devices computing."""

    rows: int = 0
    batches: int = 0
    wall_s: float = 0.0
    wait_s: float = 0.0  # blocked on the DataLoader (read + preprocess not ready)
    first_batch_s: float = 0.0  # the first batch end to end (cuDNN benchmark, autotune, compile)
    busy_s: dict[str, float] = field(default_factory=dict)  # device -> compute seconds

    def device_idle_fraction(self) -> float:
        if not self.busy_s or self.wall_s <= 0:
            return 0.0
        busy = sum(self.busy_s.values()) / len(self.busy_s)
        return min(max(1.0 - busy / self.wall_s, 0.0), 1.0)


class DeviceTimer:
    """Times work on one device: CUDA events on its stream (no sync), or the host clock on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self._t0: float | torch.cuda.Event = 0.0

    def start(self) -> None:
        if self.device.type == "cuda":
            self._t0 = torch.cuda.Event(enable_timing=True)
            self._t0.record()
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> Callable[[], float]:
        """A callable giving the elapsed seconds (call it after the device work has finished)."""
        if self.device.type == "cuda":
            t0, t1 = self._t0, torch.cuda.Event(enable_timing=True)
            t1.record()
            return lambda: t0.elapsed_time(t1) / 1e3
        dt = time.perf_counter() - self._t0
        return lambda: dt


class DevicePool:
    """One launching thread per GPU, so that members on different GPUs overlap; the CPU runs inline.

    `threads`: force (True) or forbid (False) the threads; default: when there are several GPUs."""

    def __init__(self, devices: Sequence[torch.device], threads: bool | None = None):
        if threads is None:
            threads = len(devices) > 1 and all(d.type == "cuda" for d in devices)
        self._pool = ThreadPoolExecutor(len(devices), thread_name_prefix="hms-gpu") if threads else None

    def map(self, work: Mapping[torch.device, Callable[[], T]]) -> dict[torch.device, T]:
        """Each device's result; when some fail, an error is raised once every device is done (never while another
        device still computes: a retry must not pile work onto a busy GPU): the first that is not a lack of memory,
        else the first."""
        if self._pool is None:
            return {d: fn() for d, fn in work.items()}
        futures = {d: self._pool.submit(fn) for d, fn in work.items()}
        wait(futures.values())
        errors = [f.exception() for f in futures.values() if f.exception() is not None]
        if errors:
            raise next((e for e in errors if not is_out_of_memory(e)), errors[0])
        return {d: f.result() for d, f in futures.items()}
