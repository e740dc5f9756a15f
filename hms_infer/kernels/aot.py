"""The fused WaveNet level compiled ahead of time, with no GPU and no driver: each variant's registers, shared
memory and spills, so that a kernel that does not compile, or does not fit, is caught before a GPU sees it.

Triton compiles for a named target (`GPUTarget("cuda", 80, 32)`); only a launch needs the driver. `launched_levels`
lists the level launches of WaveNet configurations (channels, dilation, signal length and the byte offsets of the
seven pointers: the weights of level k are views into one stacked buffer); `compile_variants` binds each launch's
arguments as the JIT does at launch (its own binder: dtypes, constexprs, ints equal to 1 or divisible by 16,
pointers 16-byte aligned), with the tile the launch picks for the capability (`tile_config`, `launch_options`),
compiles each distinct variant once, and reads its cubin with the `cuobjdump` shipped in Triton's wheel.

The launch (Triton's driver) takes the compiled `shared` bytes as dynamic shared memory and opts in beyond 48 KB up
to the device's maximum (163 KB on sm_80, 99 KB on sm_86/sm_89, 227 KB on sm_90). `LIMITS` are stricter: every
variant must fit in 48 KB, which needs no opt-in and runs on every GPU of sm_80 or newer, and 255 registers.

Runs in an interpreter without hms_infer's dependencies (Triton and torch suffice, e.g. the Kaggle image's):
`python -c STANDALONE launches.json out.json`, which `compile_elsewhere` does.
"""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, NamedTuple, Sequence

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, make_backend
from triton.runtime.jit import create_function_from_signature

from .wave_level import _wave_level_kernel, launch_options, tile_config

if TYPE_CHECKING:
    from ..models.config import WaveNetConfig

POINTERS = ("x", "res", "y", "gate_weight", "gate_bias", "skip_weight", "skip_bias")  # the kernel's pointer args
CAPABILITIES = ((8, 0), (9, 0))
DTYPES = ("float16", "bfloat16")  # the served precisions; fp32 runs the merged convs
LIMITS = {"registers": 255, "shared": 48 * 1024}  # per thread; per block without opt-in (module docstring)
CUOBJDUMP = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
PACKAGE = Path(__file__).resolve().parents[1]
# hms_infer's kernels without its __init__ (nor nnAudio, timm): an empty package module over the sources.
STANDALONE = (f"import sys, types; p = types.ModuleType('hms_infer'); p.__path__ = [{str(PACKAGE)!r}]; "
              "sys.modules['hms_infer'] = p; from hms_infer.kernels.aot import main; main(sys.argv[1:])")


class Level(NamedTuple):
    """One level launch: `channels`, `dilation`, signal `length`; `offsets`: each pointer's address mod 16 (bytes),
    in `POINTERS` order."""
    channels: int
    dilation: int
    length: int
    offsets: tuple[int, ...]


class Launch(NamedTuple):
    """A level launched on a GPU of `capability` with activations of `dtype` (a torch dtype's name)."""
    capability: tuple[int, int]
    dtype: str
    level: Level


class Variant(NamedTuple):
    """One compiled variant and its resources (`registers` per thread, `shared` bytes per block, `spills` in
    4-byte words of local memory, as Triton counts them), or the `error` that stopped its compile."""
    capability: tuple[int, int]
    dtype: str
    channels: int
    dilation: str  # the class Triton specialises on: "1", "16n" (divisible by 16) or "other"
    misaligned: tuple[str, ...]  # the pointers not 16-byte aligned
    block_t: int
    num_warps: int
    registers: int
    shared: int
    spills: int
    seconds: float
    error: str | None = None

    def problems(self) -> list[str]:
        """What is wrong with this variant: its compile error, or each resource beyond `LIMITS`, or spills."""
        if self.error:
            return [f"{self.name()}: {self.error}"]
        over = [f"{self.name()}: {k} {getattr(self, k)} > {v}" for k, v in LIMITS.items() if getattr(self, k) > v]
        return over + ([f"{self.name()}: {self.spills} registers spilled"] if self.spills else [])

    def name(self) -> str:
        aligned = f"misaligned {'+'.join(self.misaligned)}" if self.misaligned else "aligned"
        return (f"sm_{self.capability[0]}{self.capability[1]} {self.dtype} C={self.channels} dilation "
                f"{self.dilation} {aligned} (BLOCK_T {self.block_t}, {self.num_warps} warps)")


def dilation_class(dilation: int) -> str:
    return "1" if dilation == 1 else "16n" if dilation % 16 == 0 else "other"


def launched_levels(configs: Iterable[WaveNetConfig], length: int) -> list[Level]:
    """Every distinct level launch of WaveNets of `configs` (`WaveNetConfig`s) on signals of `length` samples, the
    pointer offsets taken from the fast blocks' own weight views (`FastWaveBlock.level_weights`, fp16); x, res
    and y are whole tensors (16-byte aligned)."""
    from ..models.wavenet import WaveNet  # the model side: hms_infer's full dependencies
    from ..models.wavenet_fast import FastWaveBlock

    levels = set()
    for cfg in set(configs):
        for block in WaveNet(cfg).wave_blocks:
            fast = FastWaveBlock(block, "triton", torch.float16)
            for k in range(len(fast.skip_convs)):
                views = fast.level_weights(k, torch.float16)
                offsets = (0, 0, 0, *(v.storage_offset() * v.element_size() % 16 for v in views))
                levels.add(Level(fast.conv1x1.out_channels, 2**k, length, offsets))
    return sorted(levels)


def every_launch(levels: Sequence[Level], capabilities: Sequence[tuple[int, int]] = CAPABILITIES,
                 dtypes: Sequence[str] = DTYPES) -> list[Launch]:
    """`levels` on GPUs of each of `capabilities` in each of `dtypes`."""
    return [Launch(c, d, level) for c in capabilities for d in dtypes for level in levels]


def _target(capability: tuple[int, int]) -> GPUTarget:
    return GPUTarget("cuda", capability[0] * 10 + capability[1], 32)


class _Pointer:
    """What the JIT's binder reads off a tensor argument: its dtype and address."""

    def __init__(self, dtype: torch.dtype, address: int):
        self.dtype, self.address = dtype, address

    def data_ptr(self) -> int:
        return self.address


def _bind(level: Level, dtype: torch.dtype, capability: tuple[int, int]) -> tuple[tuple, ASTSource, dict]:
    """(the specialisation key, the source, the options) of `level`'s launch, as `JITFunction.run` binds them."""
    kernel = _wave_level_kernel
    backend = make_backend(_target(capability))
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    pointers = [_Pointer(dtype, 1024 + offset) for offset in level.offsets]  # an aligned base + the offset
    kwargs = launch_options(level.channels, dtype, tile_config(level.channels, dtype, capability))
    bound, specialization, options = binder(*pointers, level.length, level.dilation, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    key = (tuple(map(str, specialization)), str(sorted(options.__dict__.items())))
    return key, ASTSource(kernel, signature, constexprs, attrs), options.__dict__


def resource_usage(cubin: bytes) -> dict[str, int]:
    """REG, SHARED (static), LOCAL and STACK of the one kernel in `cubin`, read by `cuobjdump -res-usage`."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([str(CUOBJDUMP), "-res-usage", f.name], capture_output=True, text=True, check=True)
    fields = dict(re.findall(r"\b(REG|SHARED|LOCAL|STACK):(\d+)", out.stdout))
    if set(fields) != {"REG", "SHARED", "LOCAL", "STACK"}:
        raise RuntimeError(f"cuobjdump -res-usage: unexpected output {out.stdout!r}")
    return {k: int(v) for k, v in fields.items()}


def compile_variants(launches: Sequence[Launch]) -> list[Variant]:
    """Each distinct variant that `launches` compile, compiled once, in their order."""
    variants, seen = [], set()
    for capability, name, level in launches:
        dtype = getattr(torch, name)
        key, source, options = _bind(level, dtype, capability)
        if (capability, key) in seen:
            continue
        seen.add((capability, key))
        misaligned = tuple(p for p, o in zip(POINTERS, level.offsets) if o)
        head = (capability, name, level.channels, dilation_class(level.dilation), misaligned,
                *tile_config(level.channels, dtype, capability))
        start = time.perf_counter()
        try:
            compiled = triton.compile(source, target=_target(capability), options=options)
            usage = resource_usage(compiled.asm["cubin"])
        except Exception as e:  # noqa: BLE001  a compile failure is this variant's result
            lines = str(e).strip().splitlines() or [""]  # Triton's: where, the source, then why
            why = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
            variants.append(Variant(*head, 0, 0, 0, time.perf_counter() - start, f"{type(e).__name__}: {why}"))
            continue
        variants.append(Variant(*head, usage["REG"], compiled.metadata.shared + usage["SHARED"], usage["LOCAL"] // 4,
                                time.perf_counter() - start))
    return variants


def compile_elsewhere(python: str | Path, launches: Sequence[Launch], env: dict[str, str] | None = None,
                      timeout: float = 600) -> tuple[str, list[Variant]]:
    """(its Triton's version, `compile_variants`) run by another interpreter with these sources (`STANDALONE`);
    `env`: its environment."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "launches.json", Path(tmp) / "variants.json"
        src.write_text(json.dumps(launches))
        done = subprocess.run([str(python), "-c", STANDALONE, str(src), str(out)], capture_output=True, text=True,
                              env=env, timeout=timeout, cwd=tmp)
        if done.returncode != 0:
            raise RuntimeError(f"{python}: compile_variants failed: {done.stderr.strip()[-2000:]}")
        result = json.loads(out.read_text())
        return result["triton"], [_variant(v) for v in result["variants"]]


def _variant(fields: list) -> Variant:
    capability, dtype, channels, dilation, misaligned, *rest = fields
    return Variant(tuple(capability), dtype, channels, dilation, tuple(misaligned), *rest)


def main(argv: Sequence[str]) -> None:
    """LAUNCHES.json OUT.json: the variants of LAUNCHES (`Launch` lists) compiled with this interpreter's Triton,
    written to OUT as JSON: {"triton": its version, "variants": `Variant` lists}."""
    src, out = argv
    launches = [Launch(tuple(capability), dtype, Level(*level[:3], tuple(level[3])))
                for capability, dtype, level in json.loads(Path(src).read_text())]
    variants = compile_variants(launches)
    Path(out).write_text(json.dumps({"triton": triton.__version__, "variants": [list(v) for v in variants]}))
