"""`timeline --recording` streams: peak memory of a 1-h and an 8-h EDF within 1.3x of each other (slow).

Each run is its own subprocess (a fresh interpreter: `ru_maxrss` is per process), with one tiny member
(`test_timeline_heads.spread_model`), one view, batch 4 and a 1200-s stride, so the prediction is quick and what is
measured is the reading: every 60-s block of the file is read, 8 h of it in the long file (8 h of 19 float32
channels at 200 Hz is 438 MB; float64 twice that). `--num-workers 0` reads in the main process; `--num-workers 1`
in a DataLoader worker, a child process whose peak is `RUSAGE_CHILDREN`'s (counted from the fork, so it includes
the parent's pages at that time). The EDF files are written one minute at a time (`write_long_edf`), never whole.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

pytest.importorskip("matplotlib")
pytest.importorskip("mne")

from hms_infer.constants import ELECTRODES  # noqa: E402

from .test_timeline import ARCH  # noqa: E402
from .test_timeline_heads import spread_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STRIDE_S, HOURS = 1200, (1, 8)
MAX_RATIO = 1.3
WRAPPER = """import json, resource, sys
from hms_infer.cli import main
rc = main(sys.argv[2:])
usage = {w: resource.getrusage(getattr(resource, w)).ru_maxrss / 1024 for w in ("RUSAGE_SELF", "RUSAGE_CHILDREN")}
json.dump({"rc": rc, "self_mb": usage["RUSAGE_SELF"], "children_mb": usage["RUSAGE_CHILDREN"]}, open(sys.argv[1], "w"))
"""


def _field(value: object, width: int) -> bytes:
    text = str(value).encode("latin-1")[:width]
    return text + b" " * (width - len(text))


def write_long_edf(path: Path, seconds: int, fs: int = 200, seed: int = 0, block_s: int = 60,
                   physical: tuple[float, float] = (-3200.0, 3200.0),
                   start: datetime = datetime(2024, 1, 1, 0, 0, 0)) -> Path:
    """A plain continuous EDF of the 19 `ELECTRODES` (µV, 16-bit, 1-s records, `seconds` of them), written one
    `block_s` block at a time: a fixed random `block_s` pattern (a random walk made continuous at the block's
    edges, plus noise) repeated, plus a 300-µV sine of period 1 h (a phase per channel)."""
    c = len(ELECTRODES)
    head = (_field("0", 8) + _field("X X X X", 80) + _field(f"Startdate {start:%d-%b-%Y} X X X".upper(), 80)
            + _field(f"{start:%d.%m.%y}", 8) + _field(f"{start:%H.%M.%S}", 8) + _field(256 * (c + 1), 8)
            + _field("", 44) + _field(seconds, 8) + _field(1, 8) + _field(c, 4))
    for values, width in ((ELECTRODES, 16), ([""] * c, 80), (["uV"] * c, 8), ([f"{physical[0]:g}"] * c, 8),
                          ([f"{physical[1]:g}"] * c, 8), ([-32768] * c, 8), ([32767] * c, 8), ([""] * c, 80),
                          ([fs] * c, 8), ([""] * c, 32)):
        head += b"".join(_field(v, width) for v in values)
    assert len(head) == 256 * (c + 1)
    rng = np.random.default_rng(seed)
    n = block_s * fs
    pattern = np.cumsum(rng.normal(0, 8, size=(n, c)), axis=0)
    pattern -= np.linspace(pattern[0], pattern[-1], n)
    pattern += rng.normal(0, 15, size=(n, c))
    step = (physical[1] - physical[0]) / 65535
    with open(path, "wb") as f:
        f.write(head)
        for b in range(0, seconds, block_s):
            k = min(block_s, seconds - b)
            t = (b + np.arange(k * fs) / fs)[:, None]
            uv = pattern[:k * fs] + 300 * np.sin(2 * np.pi * t / 3600 + np.arange(c))
            digital = np.clip(np.round((uv - physical[0]) / step - 32768), -32768, 32767).astype("<i2")
            f.write(digital.reshape(k, fs, c).transpose(0, 2, 1).tobytes())  # record: channel after channel
    return path


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("memory")
    torch.save(spread_model(60).state_dict(), root / "m0.pt")
    manifest = root / "weights_manifest.yaml"
    manifest.write_text(yaml.safe_dump({"version": 1, "tta": ["none"], "blend": "prob", "members": [
        {"name": "m0", "checkpoint": "m0.pt", "arch": copy.deepcopy(ARCH), "weight": 1.0}]}))
    files = {h: write_long_edf(root / f"rec{h}h.edf", h * 3600) for h in HOURS}
    return {"root": root, "manifest": manifest, "files": files}


def peak(case: dict, hours: int, workers: int) -> dict:
    """The timeline of the `hours` file in a subprocess: its return code and peak RSS (MB) of itself and of its
    children (the DataLoader worker)."""
    out = case["root"] / f"out{hours}-{workers}"
    result = case["root"] / f"rss{hours}-{workers}.json"
    subprocess.run([sys.executable, "-c", WRAPPER, str(result), "timeline", "--recording", str(case["files"][hours]),
                    "--manifest", str(case["manifest"]), "--out", str(out), "--stride", str(STRIDE_S), "--device",
                    "cpu", "--num-workers", str(workers), "--batch-size", "4"], cwd=REPO, check=True, timeout=600)
    return json.loads(result.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1])  # the worker reads; the main process's peak is its imports and models
def test_peak_memory_does_not_grow_with_length(case, workers):
    """Peak RSS of the 8-h file within 1.3x of the 1-h file's (main process; with a worker, the worker too); the
    8-h file's extra 7 h of float32 signal alone would add 383 MB."""
    short, long_ = (peak(case, h, workers) for h in HOURS)
    assert short["rc"] == long_["rc"] == 0
    print(f"workers {workers}: 1 h {short}, 8 h {long_}")
    assert long_["self_mb"] <= MAX_RATIO * short["self_mb"], (short, long_)
    if workers:
        assert long_["children_mb"] <= MAX_RATIO * short["children_mb"], (short, long_)
    frame = pd.read_parquet(case["root"] / f"out8-{workers}" / "timeline.parquet")
    n = (8 * 3600 * 200 - 10000) // (STRIDE_S * 200) + 1  # 24: every window of the 8 h was computed
    assert frame["offset_s"].tolist() == [float(k * STRIDE_S) for k in range(n)]
