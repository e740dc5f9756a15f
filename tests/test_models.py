"""Checkpoint compatibility: preset state-dict layouts and the reference tiny model's outputs (SPEC §3-4)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hms_infer.checkpoint import load_weights
from hms_infer.models import PRESETS, create_model
from hms_infer.models.backbone import create_backbone

from .conftest import TINY_ARCH, reference_keys, reference_tiny_config, reference_tiny_io


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_state_dict_matches_the_training_code(reference, name):
    with torch.device("meta"):
        model = create_model(name)
    got = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
    assert got == reference_keys(reference, name)


def test_reference_tiny_model_loads_strictly_and_reproduces_all_heads(reference):
    model = create_model(reference_tiny_config())
    load_weights(model, load_file(reference / "tiny_model" / "weights.safetensors"), "tiny", "tiny")
    eeg, spect, logits = reference_tiny_io(reference)
    with torch.inference_mode():
        out = model(torch.from_numpy(eeg), torch.from_numpy(spect))
    for head, key in [("all", "logits_all"), ("spect", "logits_spect"), ("eeg_stft", "logits_eeg_stft"),
                      ("eeg_wavenet", "logits_eeg_wavenet")]:
        np.testing.assert_allclose(out[head].numpy(), logits[key], rtol=0, atol=1e-4, err_msg=head)


def test_non_hgnet_wavenet_backbone_has_stride_1_2_stem():
    model = create_model(TINY_ARCH)
    assert model.eeg_backbone_1d.backbone_2d.conv_stem.stride == (1, 2)
    assert model.eeg_backbone.backbone.conv_stem.stride == (2, 2)
    with torch.device("meta"):
        hg = create_model("cfg_1")
    assert hg.eeg_backbone_1d.backbone_2d.stem.stem1.conv.stride == (2, 2)
    assert isinstance(hg.eeg_backbone.backbone.head.fc, torch.nn.Identity)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="timm cannot build backbone 'no_such_net'"):
        create_backbone("no_such_net")
