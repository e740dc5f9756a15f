"""Shared fixtures: the reference vectors, a synthetic competition folder, tiny-backbone checkpoints.

The reference vectors are `../shared/reference` where it exists (the full set), else the compact subset in
`tests/data/reference` (made by `tests/data/make_reference_subset.py`), so the fidelity tests run from a plain clone;
`HMS_TEST_REFERENCE=tests/data/reference` picks the compact set where both exist.

Threads: the tests keep torch's default intra-op thread count. One thread was measured on the 2-core CI machine and
made the whole suite slower (747 s against 612 s; the full-size forwards lose most), so the conftest does not set it;
tests that start two processes at once give them one thread each. Tests that compare rows computed in different
batches compare with a tolerance, since oneDNN picks kernels per batch shape and thread count.
"""
from __future__ import annotations

import copy
import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hms_infer.models import create_model
from hms_infer.synthetic import write_competition

FULL_REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
COMPACT_REFERENCE = Path(__file__).resolve().parent / "data" / "reference"
REFERENCE = Path(os.environ.get("HMS_TEST_REFERENCE") or (FULL_REFERENCE if FULL_REFERENCE.is_dir()
                                                            else COMPACT_REFERENCE))

# The reference tiny model's architecture: any timm backbone works through an arch mapping.
TINY_ARCH = {
    "backbone": "test_efficientnet",
    "backbone_comp": "test_efficientnet",
    "stft": {"n_fft": 110, "win_length": 64, "hop_length": 23, "fmax": 40.0, "window": "cosine",
             "freq_scale": "linear", "stack_factor": 2},
    "wavenet": {"n_blocks": 3, "out_channels": 8, "ds_factor": 5},
}


@pytest.fixture(scope="session")
def reference() -> Path:
    assert REFERENCE.is_dir(), f"no reference vectors: neither {FULL_REFERENCE} nor {COMPACT_REFERENCE}"
    return REFERENCE


def reference_keys(reference: Path, preset: str) -> list[tuple[str, tuple[int, ...], str]]:
    """`state_dict_keys/<preset>.tsv` (or `.tsv.gz` in the compact set) as (key, shape, dtype) rows."""
    path = reference / "state_dict_keys" / f"{preset}.tsv"
    text = path.read_text() if path.is_file() else gzip.decompress(path.with_suffix(".tsv.gz").read_bytes()).decode()
    rows = []
    for line in text.splitlines():
        key, shape, dtype = line.split("\t")
        rows.append((key, tuple(int(x) for x in shape.strip("()").split(",") if x.strip()), dtype))
    return rows


def reference_strides(reference: Path) -> tuple[int, int]:
    """(EEG sample stride, spectrogram stride) of the expected arrays: (1, 1) for the full set."""
    path = reference / "subset.json"
    if not path.is_file():
        return 1, 1
    d = json.loads(path.read_text())
    return d["eeg_stride"], d["spect_stride"]


def reference_tiny_io(reference: Path) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The tiny model's inputs (B, 24, T), (B, 10, 300, 100) and logits {head key: (B, 6)}. The compact set keeps
    the logits only: its inputs are the `none` montage and image of those eeg_ids' rows in hms_sample."""
    io = np.load(reference / "tiny_model" / "io.npz")
    logits = {k: io[k] for k in io.files if k.startswith("logits_")}
    if "input_eeg_raw" in io.files:
        return io["input_eeg_raw"], io["input_comp_spectrogram"], logits
    from hms_infer.data import Competition
    from hms_infer.preprocess import eeg_electrodes, spectrogram_image
    from hms_infer.montage import bipolar
    comp = Competition(reference / "hms_sample", "test")
    rows = {r.eeg_id: i for i, r in enumerate(comp.rows)}
    items = [comp[rows[int(e)]] for e in io["eeg_ids"]]
    return (np.stack([bipolar(eeg_electrodes(e), "none") for _, e, _ in items]),
            np.stack([spectrogram_image(s) for _, _, s in items]), logits)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """A synthetic competition folder (test and train splits); treat it as read-only."""
    return write_competition(tmp_path_factory.mktemp("hms") / "data", n_test=4, n_train_eegs=3, seed=0)


def save_tiny_checkpoint(path: Path, seed: int, arch: dict | None = None) -> Path:
    """A random-init tiny model saved as the training code saves it: `torch.save(model.state_dict(), path)`."""
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(create_model(arch or TINY_ARCH).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Folder with `test_efficientnet_<fold>_0.pt` for folds 0 and 1 (different random weights)."""
    d = tmp_path_factory.mktemp("weights")
    for fold in (0, 1):
        save_tiny_checkpoint(d / f"test_efficientnet_{fold}_0.pt", seed=fold)
    return d


def tiny_manifest(weights_dir: Path, tta=("none", "lr", "fb", "lrfb"), blend: str = "prob", folds=(0, 1)) -> dict:
    """A manifest mapping for the tiny checkpoints of `tiny_weights`."""
    return {"version": 1, "tta": list(tta), "blend": blend, "members": [
        {"name": f"tiny{f}", "checkpoint": f"test_efficientnet_{f}_0.pt", "sha256": None, "weight": 1.0,
         "fold": f, "arch": copy.deepcopy(TINY_ARCH)} for f in folds]}


def reference_tiny_config() -> dict:
    """The tiny model's architecture (`tiny_model/config.json`)."""
    return json.loads((REFERENCE / "tiny_model" / "config.json").read_text())
