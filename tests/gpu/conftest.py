"""GPU tests (`make gpu-check`): skipped where no CUDA device is visible. Measured numbers go to a JSON report
(`$HMS_GPU_CHECK_OUT/gpu_tests.json`, default gpu_check_out/) as well as to the test output."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

REPORT: dict[str, object] = {}


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device: the GPU tests run in `make gpu-check` on a GPU machine")
    for item in items:
        if "tests/gpu" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def report():
    """A dict the tests fill with what they measured; written as JSON when the session ends."""
    yield REPORT
    if REPORT:
        out = Path(os.environ.get("HMS_GPU_CHECK_OUT", "gpu_check_out"))
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_tests.json").write_text(json.dumps(REPORT, indent=2, default=str) + "\n")


@pytest.fixture(scope="session")
def gpu() -> torch.device:
    return torch.device("cuda", 0)
