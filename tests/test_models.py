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


def test_spread_head_makes_a_random_member_answer_its_inputs():
    """At init a member gives every input the same logits (the demo's rows all read ~1/6 once); `spread_head` (the
    demo's members) redraws `head_all` so that the logits on its rows spread by ~`spread` across rows and classes."""
    torch.manual_seed(0)
    eeg, spect = 50 * torch.randn(4, 24, 10000), torch.rand(4, 10, 300, 100)
    model = create_model(TINY_ARCH)
    with torch.inference_mode():
        before = model(eeg, spect)
    assert before["all"].std(dim=0).max() < 1e-3
    for seed in (0, 1):
        model.spread_head(eeg, spect, spread=2.0, seed=seed)
        with torch.inference_mode():
            after = model(eeg, spect)
        rows = (after["all"] - after["all"].mean(dim=0)).square().mean().sqrt()  # across rows, per class
        assert 1.0 < rows < 3.0 and 0.5 < after["all"].mean(dim=0).std() < 4.0  # and the classes' offsets
        assert after["all"].softmax(dim=1).std(dim=0).max() > 0.1
        for head in ("spect", "eeg_stft", "eeg_wavenet"):  # only head_all changes
            torch.testing.assert_close(after[head], before[head], rtol=0, atol=0)
    again = create_model(TINY_ARCH)
    again.load_state_dict(model.state_dict(), strict=True)
    again.spread_head(eeg, spect, spread=2.0, seed=1)  # the same rows and seed: the same head
    torch.testing.assert_close(again.head_all.weight, model.head_all.weight, rtol=0, atol=0)
    with pytest.raises(ValueError, match="1 rows"):
        model.spread_head(eeg[:1], spect[:1], spread=2.0)


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
