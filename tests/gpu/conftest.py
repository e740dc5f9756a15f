"""GPU tests (`gpu_check.sh tests`): skipped where no CUDA device is visible, unless `HMS_GPU_CHECK_DRY_RUN=1`, where
they run on the CPU with tiny models (those that only a GPU can run skip), so that CI proves the tests and their
result file before a GPU ever sees them.

Each test's outcome, time and measurements go to `$HMS_GPU_CHECK_OUT/gpu_tests.json` (default gpu_check_out/) as
the test ends, so a run that is stopped keeps what it measured; each test has `HMS_GPU_TEST_TIMEOUT` seconds
(default 150).
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch

from hms_infer.files import write_text_atomic
from hms_infer.runtime import set_tf32

DRY_RUN = os.environ.get("HMS_GPU_CHECK_DRY_RUN") == "1"
OUT = Path(os.environ.get("HMS_GPU_CHECK_OUT", "gpu_check_out"))
TIMEOUT_S = int(os.environ.get("HMS_GPU_TEST_TIMEOUT", "150"))
needs_gpu = pytest.mark.skipif(DRY_RUN, reason="dry run on the CPU: this test needs a CUDA GPU")

_RESULTS: dict = {"mode": "dry run: CPU, tiny models" if DRY_RUN else "gpu", "tests": {}}
_MEASURED: dict[str, dict] = {}


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available() or DRY_RUN:
        return
    skip = pytest.mark.skip(reason="no CUDA device: the GPU tests run in `gpu_check.sh tests` on a GPU machine")
    for item in items:
        if "tests/gpu" in str(item.fspath):
            item.add_marker(skip)


def pytest_runtest_logreport(report):
    """Write this test's outcome and measurements now (not at the end of the session)."""
    if "tests/gpu" not in report.nodeid or not (report.when == "call" or report.outcome != "passed"):
        return
    if report.when == "teardown" and report.nodeid in _RESULTS["tests"]:
        return
    entry = {"outcome": report.outcome, "seconds": round(report.duration, 3),
             "measured": _MEASURED.get(report.nodeid, {})}
    if report.failed:
        entry["error"] = str(getattr(report.longrepr, "reprcrash", None) or report.longrepr).splitlines()[-1][:800]
    if report.skipped and isinstance(report.longrepr, tuple):
        entry["reason"] = report.longrepr[2]
    _RESULTS["tests"][report.nodeid] = entry
    write_text_atomic(OUT / "gpu_tests.json", json.dumps(_RESULTS, indent=2, default=str) + "\n")


@pytest.fixture
def report(request) -> dict:
    """What this test measured: written to gpu_tests.json with its outcome, failed or not."""
    return _MEASURED.setdefault(request.node.nodeid, {})


@pytest.fixture(scope="session")
def session_report() -> dict:
    """The run's own facts (device, versions), at the top of gpu_tests.json."""
    return _RESULTS


class TestTimeout(BaseException):
    """Not an Exception: the code under test (a fallback's `except Exception`) cannot swallow it."""


@pytest.fixture(autouse=True)
def per_test_timeout(request) -> Iterator[None]:
    """A test running past TIMEOUT_S fails (the others still run); what a failed test held on the GPU is freed
    before the next one (memory-capped tests count it)."""
    if "tests/gpu" not in str(request.node.fspath):
        yield
        return

    def expire(signum, frame):
        raise TestTimeout(f"over HMS_GPU_TEST_TIMEOUT={TIMEOUT_S} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TIMEOUT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        sys.last_type = sys.last_value = sys.last_traceback = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


@pytest.fixture(scope="session")
def gpu() -> torch.device:
    """cuda:0; the CPU in a dry run."""
    return torch.device("cpu") if DRY_RUN else torch.device("cuda", 0)


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 for fp32 convs and matmuls on or off (on Ampere and newer it is on by default: ~1e-3 off fp32), the
    previous setting restored after."""
    saved = (torch.backends.cudnn.fp32_precision, torch.backends.cuda.matmul.fp32_precision) \
        if hasattr(torch.backends.cudnn, "fp32_precision") else None
    set_tf32(enabled)
    try:
        yield
    finally:
        if saved is None:
            set_tf32(True)
        else:
            torch.backends.cudnn.fp32_precision, torch.backends.cuda.matmul.fp32_precision = saved


def fp32_reference() -> contextlib.AbstractContextManager:
    """Around every fp32 reference: TF32 off."""
    return tf32(False)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """`precision` autocast on `device` (`fp32`: none)."""
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def median_seconds(fn, repeat: int = 10, calls: int = 1) -> float:
    """Median seconds of one call of `fn` after two warm-up calls: each sample times `calls` calls back to back (so
    a short kernel's host launch cost overlaps the GPU's work), by CUDA events (the host clock on the CPU)."""
    fn(), fn()
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available() and not DRY_RUN:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3 / calls)
        else:
            t = time.perf_counter()
            for _ in range(calls):
                fn()
            times.append((time.perf_counter() - t) / calls)
    return sorted(times)[len(times) // 2]
