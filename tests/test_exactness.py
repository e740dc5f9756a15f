"""The main command's CPU fp32 path against the eager definition on the reference vectors: <= 1e-6 in probability.

The fast path (merged gate convs, all views in one pass, the 2-D backbones one image at a time) and the reference
path (`HMSModel.forward` once per view on a batch of rows) do the same products and sums; only the batch and conv shapes
differ, and oneDNN picks its fp32 conv kernels per shape, so the two differ by rounding alone: 2.7e-8 on the full
reference sample's four rows x four views, 3e-8 here.
"""
from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import load_file

from hms_infer.checkpoint import load_weights
from hms_infer.data import Competition
from hms_infer.ensemble import Ensemble
from hms_infer.members import LoadedMember, copy_members
from hms_infer.models import create_model
from hms_infer.models.wavenet_fast import fast_blocks
from hms_infer.montage import VIEWS
from hms_infer.preprocess import eeg_electrodes, spectrogram_image

from .conftest import reference_tiny_config

CPU_FP32_PROB_ATOL = 1e-6


def _reference_rows(reference, n_test: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Electrodes (B, 19, T) and spectrogram images (B, 10, 300, 100) of the reference sample's first test rows and
    its first training row (B >= 2 in the compact set too, so that batch shapes differ between the paths)."""
    sample = reference / "hms_sample"
    items = [*list(Competition(sample, "test"))[:n_test], Competition(sample, "train")[0]]
    return (torch.from_numpy(np.stack([eeg_electrodes(eeg) for _, eeg, _ in items])),
            torch.from_numpy(np.stack([spectrogram_image(spect) for _, _, spect in items])))


def test_cpu_fp32_fast_path_equals_the_eager_reference_on_the_reference_vectors(reference):
    model = load_weights(create_model(reference_tiny_config()),
                         load_file(reference / "tiny_model" / "weights.safetensors"), "tiny", "tiny")
    member = LoadedMember("tiny", model, 1.0, torch.device("cpu"))
    fast = Ensemble([member], VIEWS, precision="fp32")  # what `python -m hms_infer` runs on the CPU
    eager = Ensemble(copy_members([member]), VIEWS, precision="fp32", fast=False)
    assert fast.wave_backend == "merged" and fast_blocks(fast.members[0].model)  # the fast path is the one tested
    assert eager.wave_backend == "eager" and not fast_blocks(eager.members[0].model)
    electrodes, spect = _reference_rows(reference)
    got, want = fast.member_logits(electrodes, spect), eager.member_logits(electrodes, spect)
    assert got.shape == want.shape == (1, len(spect), len(VIEWS), 6)
    assert want.std() > 0.3  # the reference model's logits spread (random heads' ~0.1 would hide a difference)
    dprob = np.abs(fast.blend(got) - eager.blend(want)).max()
    assert dprob <= CPU_FP32_PROB_ATOL, f"CPU fp32 fast path differs from the eager reference by {dprob:.3g}"
