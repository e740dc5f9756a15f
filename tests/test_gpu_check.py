"""`gpu_check.sh --dry-run`: both stages of the GPU check on the CPU with tiny models, so that the scripts, their
arguments and their result files are proven before a GPU ever sees them (a lent GPU machine's minutes are few)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "GPU_PY": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(ROOT / "gpu_check.sh"), *args], env=env, capture_output=True, text=True, timeout=900)


def test_dry_run_of_both_stages_writes_every_result_file(tmp_path):
    done = _run(tmp_path, "--dry-run")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tests = json.loads((tmp_path / "gpu_tests.json").read_text())
    outcomes = {name.split("::")[-1]: t["outcome"] for name, t in tests["tests"].items()}
    assert tests["mode"].startswith("dry run") and tests["device"].startswith("cpu")
    ran = {"test_versions_and_kernel_device_choice", "test_whole_wavenet_backends_agree", "test_reference_tiny_model",
           "test_low_precision_against_fp32", "test_end_to_end_padded_batches_and_sync_points"}
    assert {k for k, v in outcomes.items() if v == "passed"} == ran
    assert set(outcomes.values()) == {"passed", "skipped"} and len(outcomes) == 15
    measured = tests["tests"]["tests/gpu/test_gpu.py::test_reference_tiny_model"]["measured"]
    assert measured["fp32"]["all"] < 1e-4  # the measurements travel, not only the outcomes
    pair = json.loads((tmp_path / "bench_cfg1_cfg5.json").read_text())
    eight = json.loads((tmp_path / "bench_8_presets.json").read_text())
    assert pair["members"] == eight["members"] == ["tiny0", "tiny1"] and pair["max_abs_prob_diff"] < 1e-5
    assert "speedup" in pair and "speedup" not in eight
    summary = (tmp_path / "summary.md").read_text()
    assert "5 passed, 0 failed, 10 skipped" in summary
    assert summary.count("| 2 members x 1 views") == 2 and "pseudo-labels on cpu" in summary
    assert "reference tiny model, fp32: max |dlogit|" in summary
    assert not (tmp_path / "bench_cfg1_cfg5_compile.json").exists()  # compile only with HMS_GPU_CHECK_COMPILE=1


def test_unknown_stage_is_refused_with_the_usage(tmp_path):
    done = _run(tmp_path, "benchmarks")
    assert done.returncode == 2 and "Usage: ./gpu_check.sh [tests] [bench] [--dry-run]" in done.stderr
    assert "unknown argument: benchmarks" in done.stderr and not list(tmp_path.iterdir())
