"""The fused WaveNet level compiled ahead of time for sm_80 and sm_90, with no GPU (`hms_infer.kernels.aot`).

The 8 presets launch 63 distinct levels on 10000-sample signals (7 channel counts; dilations 1 to 16384; the bias
views of odd levels of 4, 12, 20 and 28 channels 8 bytes off 16-byte alignment), which Triton compiles as 27
variants per GPU generation and dtype: 108 kernels for sm_80 and sm_90 in fp16 and bf16 (all 108 compile with
Triton 3.8.0 and 3.6.0: 250 s and 172 s on the loaded 2-core CI machine). The compile tests take a representative
subset with each Triton (the project venv's, and the Kaggle image's 3.6.0 in its venv): every channel count on
every (capability, dtype) pair, and each channel count's every (dilation class, alignment) on one pair or more
(`representative`): 31 kernels, 26-36 s per Triton. `HMS_AOT_ALL=1` compiles all 108 with each.
"""
from __future__ import annotations

import os
import sys

import pytest
import torch

triton = pytest.importorskip("triton")  # a CPU-only torch wheel comes without it

from hms_infer.constants import EEG_WINDOW  # noqa: E402
from hms_infer.kernels import aot  # noqa: E402
from hms_infer.models.config import PRESETS  # noqa: E402

from .kaggle_image import IMAGE_TRITON, kaggle_python_or_skip  # noqa: E402

PAIRS = [(c, d) for c in aot.CAPABILITIES for d in aot.DTYPES]  # (capability, dtype): 4
CHANNELS = (4, 8, 12, 16, 20, 24, 28)  # the WaveNets' widths: linspace(1, C, n_blocks)[1:] for C = 24 (7 blocks), 28


@pytest.fixture(scope="module")
def levels() -> list[aot.Level]:
    return aot.launched_levels([p.wavenet for p in PRESETS.values()], EEG_WINDOW)


def label(level: aot.Level) -> tuple[int, str, bool]:
    """(channels, dilation class, misaligned): what sets a level's variant apart besides capability and dtype."""
    return level.channels, aot.dilation_class(level.dilation), any(level.offsets)


def representative(levels: list[aot.Level]) -> list[aot.Launch]:
    """Per channel count, its distinct labels in turn over the four (capability, dtype) pairs, at least four
    launches: every channel count on every pair, every label at least once."""
    launches = []
    for c in sorted({level.channels for level in levels}):
        kinds = list({label(level): level for level in levels if level.channels == c}.values())
        for i in range(max(len(kinds), len(PAIRS))):
            capability, dtype = PAIRS[(i + c // 4) % len(PAIRS)]
            launches.append(aot.Launch(capability, dtype, kinds[i % len(kinds)]))
    return launches


def launches_to_compile(levels: list[aot.Level]) -> tuple[list[aot.Launch], int]:
    """The launches to compile and the number of distinct variants they make."""
    return (aot.every_launch(levels), 108) if os.environ.get("HMS_AOT_ALL") == "1" else (representative(levels), 31)


def test_the_presets_launch_every_width_and_dilation_class(levels):
    assert sorted({level.channels for level in levels}) == list(CHANNELS)
    classes = {c: {aot.dilation_class(level.dilation) for level in levels if level.channels == c} for c in CHANNELS}
    assert classes == {**{c: {"1", "other", "16n"} for c in CHANNELS[:-1]}, 28: {"1", "other"}}  # 28: 3 levels
    assert max(level.dilation for level in levels) == 2**14  # the first block's 15 levels
    # level k's biases are views at k * 3C and k * C elements: 8 bytes off alignment for odd k where 16 does not
    # divide 6C (gate bias) or 2C (skip bias)
    assert aot.Level(4, 2, 10000, (0, 0, 0, 0, 8, 0, 8)) in levels
    assert aot.Level(8, 2, 10000, (0, 0, 0, 0, 0, 0, 0)) in levels
    assert {c for c in CHANNELS if any(level.offsets[4] for level in levels if level.channels == c)} == {4, 12, 20, 28}
    assert {level.offsets[:4] + level.offsets[5:6] for level in levels} == {(0, 0, 0, 0, 0)}
    assert len({label(level) for level in levels}) == 27


def test_triton_binds_27_variants_per_capability_and_dtype(levels):
    """The JIT's own specialisation of each launch (no compile): 108 distinct kernels for the two generations and
    two dtypes, and the subset covers every label of every channel count and every channel count on every pair."""
    keys = {(launch.capability, aot._bind(launch.level, getattr(torch, launch.dtype), launch.capability)[0])
            for launch in aot.every_launch(levels)}
    assert len(keys) == 108
    subset = representative(levels)
    assert len(subset) == 31
    assert {label(launch.level) for launch in subset} == {label(level) for level in levels}
    assert {(launch.capability, launch.dtype, launch.level.channels) for launch in subset} == {
        (*pair, c) for pair in PAIRS for c in CHANNELS}


def check_variants(variants: list[aot.Variant], launches: list[aot.Launch]) -> None:
    """Every launch compiled (none failed), each within `aot.LIMITS` and without spills."""
    problems = [p for v in variants for p in v.problems()]
    assert not problems, "\n".join(problems)
    assert {(v.capability, v.dtype, v.channels) for v in variants} == {
        (launch.capability, launch.dtype, launch.level.channels) for launch in launches}
    for v in variants:
        assert 32 <= v.registers <= 255 and 0 < v.shared <= 48 * 1024, v.name()
        assert v.block_t == 128 and v.num_warps == (4 if v.channels <= 16 else 8), v.name()  # tile_config, sm_80+


@pytest.mark.slow
def test_every_variant_compiles_within_the_limits_with_the_project_triton(levels, tmp_path):
    launches, count = launches_to_compile(levels)
    version, variants = aot.compile_elsewhere(sys.executable, launches, env={
        "PATH": os.environ["PATH"], "TRITON_CACHE_DIR": str(tmp_path / "cache")})  # a fresh cache: real compiles
    assert version == triton.__version__
    assert len(variants) == count
    check_variants(variants, launches)


@pytest.mark.slow
def test_every_variant_compiles_within_the_limits_with_the_kaggle_image_triton(levels, tmp_path):
    """Triton 3.6.0 as the Kaggle image's torch 2.10 pins it, in that venv (no hms_infer installed there: the
    kernel sources run without the package's __init__, `aot.STANDALONE`)."""
    python = kaggle_python_or_skip()
    launches, count = launches_to_compile(levels)
    version, variants = aot.compile_elsewhere(python, launches, env={
        "PATH": os.environ["PATH"], "TRITON_CACHE_DIR": str(tmp_path / "cache")})
    assert version == IMAGE_TRITON
    assert len(variants) == count
    check_variants(variants, launches)


def test_a_variant_that_does_not_compile_or_fit_is_reported():
    base = aot.Variant((8, 0), "float16", 4, "1", (), 128, 4, 96, 5632, 0, 1.0)
    assert base.problems() == []
    assert base._replace(registers=256).problems() == [f"{base.name()}: registers 256 > 255"]
    assert base._replace(shared=49153).problems() == [f"{base.name()}: shared 49153 > 49152"]
    assert base._replace(spills=3).problems() == [f"{base.name()}: 3 registers spilled"]
    assert base._replace(error="CompilationError: at 1:2").problems() == [f"{base.name()}: CompilationError: at 1:2"]
    assert base.name() == "sm_80 float16 C=4 dilation 1 aligned (BLOCK_T 128, 4 warps)"

