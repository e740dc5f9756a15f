"""Shared fixtures: the reference vectors, a synthetic competition folder, tiny-backbone checkpoints."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from hms_infer.models import create_model
from hms_infer.synthetic import write_competition

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"

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
    if not REFERENCE.is_dir():
        pytest.skip(f"reference vectors not found at {REFERENCE} (they live in ../shared/reference)")
    return REFERENCE


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
    return json.loads((REFERENCE / "tiny_model" / "config.json").read_text())
