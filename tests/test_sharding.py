"""Sharding: whole batches per shard, parts merged into the same bytes as one process (manual and torchrun)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from hms_infer import predict
from hms_infer.errors import HMSInputError
from hms_infer.sharding import Parts, Shard

from .conftest import save_tiny_checkpoint, tiny_manifest


@pytest.mark.parametrize("n_rows,size,count", [(1, 4, 2), (7, 2, 3), (16, 4, 2), (17, 8, 3), (5, 1, 5)])
def test_shards_take_whole_batches_and_cover_every_row_once(n_rows, size, count):
    parts = [Shard(i, count).rows(n_rows, size) for i in range(count)]
    assert sorted(sum(parts, [])) == list(range(n_rows))
    batches = [list(range(k, min(k + size, n_rows))) for k in range(0, n_rows, size)]
    for i, rows in enumerate(parts):
        assert rows == sum(batches[i::count], [])


def test_shard_option_is_validated(monkeypatch):
    assert Shard.resolve(None) == Shard(0, 1) and Shard.resolve("1/3") == Shard(1, 3)
    for bad in ("3/3", "-1/2", "a/b", "1"):
        with pytest.raises(HMSInputError, match="--shard must be i/n"):
            Shard.resolve(bad)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(HMSInputError, match="exclude each other"):
        Shard.resolve("0/2")


@pytest.fixture(scope="module")
def case(synthetic_dir, tiny_weights, tmp_path_factory):
    """7 test rows (a duplicate among them), the tiny manifest, and the single-process submission's bytes."""
    root = tmp_path_factory.mktemp("shard")
    data = root / "data"
    shutil.copytree(synthetic_dir, data)
    table = pd.read_csv(data / "test.csv")
    pd.concat([table, table, table.iloc[[2]]], ignore_index=True).iloc[:7].to_csv(data / "test.csv", index=False)
    manifest = root / "m.yaml"
    m = tiny_manifest(tiny_weights, tta=("none", "lr"))
    for member in m["members"]:
        member["checkpoint"] = str(tiny_weights / member["checkpoint"])
    manifest.write_text(yaml.safe_dump(m))
    single = root / "single.csv"
    args = ["--test-dir", str(data), "--manifest", str(manifest), "--device", "cpu", "--batch-size", "2",
            "--num-workers", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as torchrun sets it for its processes
    done = subprocess.run([sys.executable, "-m", "hms_infer", *args, "--out", str(single)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return {"root": root, "args": args, "single": single.read_bytes(), "env": env, "manifest": manifest}


def _run(case, *args):
    done = subprocess.run([sys.executable, "-m", "hms_infer", *args], env=case["env"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_manual_shards_merge_into_the_single_process_bytes(case):
    out = case["root"] / "manual.csv"
    assert "shard 1/3: 2 rows" in _run(case, *case["args"], "--out", str(out), "--shard", "1/3")
    assert not out.exists()
    assert "shard 0/3: 3 rows" in _run(case, *case["args"], "--out", str(out), "--shard", "0/3")
    assert not out.exists()
    # a part of another run (other views) does not complete this one
    stale = case["root"] / "stale.yaml"
    m = yaml.safe_load(case["manifest"].read_text())
    m["tta"] = ["none"]
    stale.write_text(yaml.safe_dump(m))
    stale_args = [str(stale) if a == str(case["manifest"]) else a for a in case["args"]]
    _run(case, *stale_args, "--out", str(out), "--shard", "2/3")
    assert not out.exists()
    merged = _run(case, *case["args"], "--out", str(out), "--shard", "2/3")
    assert "hms_infer: 7 rows (0 degraded, 0 fallback) in" in merged
    assert out.read_bytes() == case["single"]


def test_torchrun_two_processes_write_the_single_process_bytes(case):
    out = case["root"] / "torchrun.csv"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "hms_infer", *case["args"], "--out", str(out)]
    done = subprocess.run(cmd, env=case["env"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.read_bytes() == case["single"]
    assert not (case["root"] / "torchrun.csv.parts").exists()
    assert "hms_infer: 7 rows (0 degraded, 0 fallback) in" in done.stdout and "shard 1/2: 3 rows" in done.stdout


def test_parts_carry_each_rows_problems(tmp_path):
    import numpy as np
    first = Shard(0, 2).gather(Parts(tmp_path, "run"), [0, 1, 4], np.ones((3, 6)), 5,
                               {1: [("eeg", "a.parquet", "gone")]})
    assert first is None  # shard 1's part is not there yet
    probs, notes = Shard(1, 2).gather(Parts(tmp_path, "run"), [2, 3], np.zeros((2, 6)), 5,
                                      {3: [("spectrogram", "b.parquet", "no rows")]})
    assert probs[:, 0].tolist() == [1, 1, 0, 0, 1]
    assert notes == {1: [("eeg", "a.parquet", "gone")], 3: [("spectrogram", "b.parquet", "no rows")]}


def test_parts_of_other_checkpoints_under_the_same_manifest_do_not_merge(synthetic_dir, tmp_path):
    """The fingerprint holds each checkpoint's identity (sha256, else size and time), not the manifest's text only:
    a part predicted with replaced weights does not complete a run."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    pd.read_csv(data / "test.csv").iloc[:2].to_csv(data / "test.csv", index=False)
    weights = tmp_path / "weights"
    for fold in (0, 1):
        save_tiny_checkpoint(weights / f"test_efficientnet_{fold}_0.pt", seed=fold)
    manifest = weights / "m.yaml"
    manifest.write_text(yaml.safe_dump(tiny_manifest(weights, tta=("none",))))
    out = tmp_path / "sub.csv"
    run = dict(out=out, manifest=manifest, device="cpu", batch_size=1, num_workers=0, progress=False)
    assert len(predict(data, shard="0/2", **run)) == 1 and not out.exists()
    save_tiny_checkpoint(weights / "test_efficientnet_0_0.pt", seed=7)  # other weights, same manifest
    assert len(predict(data, shard="1/2", **run)) == 1 and not out.exists()
    assert len(predict(data, shard="0/2", **run)) == 2 and out.exists()
    single = predict(data, **{**run, "out": None})
    pd.testing.assert_frame_equal(pd.read_csv(out), single, check_exact=False, atol=1e-6, rtol=0)
