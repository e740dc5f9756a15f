"""Checkpoint reading, strict loading, preset detection, sha256 and the manifest (SPEC §3-4)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from hms_infer.checkpoint import load_weights, read_state_dict
from hms_infer.models import detect_preset
from hms_infer.cli import main
from hms_infer.ensemble import Ensemble
from hms_infer.errors import HMSInputError
from hms_infer.manifest import load_manifest, manifest_from_dict, save_manifest
from hms_infer.models import PRESETS, create_model

from .conftest import TINY_ARCH, tiny_manifest


@pytest.fixture(scope="module")
def preset_state_dicts() -> dict[str, dict[str, torch.Tensor]]:
    out = {}
    for i, name in enumerate(PRESETS):
        torch.manual_seed(i)
        out[name] = create_model(name).state_dict()
    return out


def test_every_preset_is_recognised_from_its_tensors(preset_state_dicts):
    for name, sd in preset_state_dicts.items():
        assert detect_preset(sd) == name
    half = {k: v.half() if v.is_floating_point() else v for k, v in preset_state_dicts["cfg_3"].items()}
    assert detect_preset(half) == "cfg_3"  # `convert --half` checkpoints


def test_window_mask_decides_between_same_shaped_layouts(preset_state_dicts):
    sd = dict(preset_state_dicts["cfg_1"])
    key = "eeg_backbone.stft_layer.spec_layer.window_mask"
    sd[key] = torch.hann_window(110, periodic=False).view(1, 110, 1)  # shapes of cfg_1, window not cosine
    with pytest.raises(HMSInputError, match="unknown layout.*STFT n_fft=110"):
        detect_preset(sd, "x.pt")


def test_unknown_layout_says_what_it_found():
    with pytest.raises(HMSInputError, match=r"tiny\.pt: unknown layout.*EfficientNet-style.*WaveNet blocks=3 C=8"):
        detect_preset(create_model(TINY_ARCH).state_dict(), "tiny.pt")


def test_checkpoint_formats_all_load_the_same_tensors(tmp_path):
    sd = create_model(TINY_ARCH).state_dict()
    torch.save(sd, tmp_path / "plain.pt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 3}, tmp_path / "lightning.pt")
    torch.save({"model": sd}, tmp_path / "wrapped.pt")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    for name in ("plain.pt", "lightning.pt", "wrapped.pt", "w.safetensors"):
        got = read_state_dict(tmp_path / name)
        assert sorted(got) == sorted(sd), name
        assert all(torch.equal(got[k], sd[k]) for k in sd), name


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"state_dict": create_model(TINY_ARCH).state_dict(), "cfg": object()}, tmp_path / "evil.pt")
    with pytest.raises(HMSInputError, match="evil.pt: not a readable weights-only checkpoint"):
        read_state_dict(tmp_path / "evil.pt")
    with pytest.raises(HMSInputError, match="checkpoint not found"):
        read_state_dict(tmp_path / "absent.pt")


def test_wrong_architecture_lists_mismatched_keys_and_the_arch(preset_state_dicts):
    with torch.device("meta"):
        model = create_model("cfg_3")
    with pytest.raises(HMSInputError) as e:
        load_weights(model, preset_state_dicts["cfg_1"], "cfg1.pt", "cfg_3")
    msg = str(e.value)
    assert msg.startswith("cfg1.pt: checkpoint does not fit arch cfg_3")
    assert "mis-shaped" in msg and "spec_layer.wsin (56, 1, 110) != (96, 1, 190)" in msg
    with pytest.raises(HMSInputError, match=r"missing \(.*wave_blocks\.7.*unexpected|unexpected"):
        load_weights(create_model(TINY_ARCH), preset_state_dicts["cfg_2"], "cfg2.pt", "tiny")


def test_manifest_command_round_trip(preset_state_dicts, tmp_path):
    paths = []
    for fold, name in enumerate(("cfg_1", "cfg_5")):
        path = tmp_path / "w" / f"{PRESETS[name].backbone}_{fold}_42.pt"
        path.parent.mkdir(exist_ok=True)
        torch.save(preset_state_dicts[name], path)
        paths.append(str(path))
    out = tmp_path / "w" / "weights_manifest.yaml"
    assert main(["manifest", *paths, "-o", str(out)]) == 0
    m = load_manifest(out)
    assert [(x.arch, x.fold, x.checkpoint) for x in m.members] == [
        ("cfg_1", 0, "hgnetv2_b4.ssld_stage2_ft_in1k_0_42.pt"),
        ("cfg_5", 1, "tf_efficientnetv2_s.in21k_ft_in1k_1_42.pt")]
    assert all(len(x.sha256) == 64 for x in m.members) and m.views == ("none", "lr", "fb", "lrfb")
    save_manifest(m, tmp_path / "again.yaml")
    assert load_manifest(tmp_path / "again.yaml") == m


def test_sha256_mismatch_is_refused(tiny_weights, tmp_path):
    d = tiny_manifest(tiny_weights, folds=(0,))
    d["members"][0]["sha256"] = "0" * 64
    path = tiny_weights / "bad_sha.yaml"
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(HMSInputError, match="sha256 .* does not match the manifest's 0000"):
        Ensemble.from_manifest(path, device="cpu")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(blend="median"), "blend must be one of"),
    (lambda d: d.update(tta=["none", "ud"]), "tta must be a non-empty list"),
    (lambda d: d["members"][0].update(arch="cfg_9"), "member 0 \\(tiny0\\): unknown preset 'cfg_9'"),
    (lambda d: d["members"][0].update(weight=-1), "weight must be a positive finite number"),
    (lambda d: d["members"][0].update(checkpt="x"), "unknown field\\(s\\) \\['checkpt'\\]"),
    (lambda d: d["members"][0]["arch"].update(stft={"nfft": 3}), "unknown StftConfig field"),
    (lambda d: d.update(members=[]), "'members' must be a non-empty list"),
])
def test_manifest_validation_names_the_problem(tmp_path, change, message):
    d = tiny_manifest(tmp_path)
    change(d)
    with pytest.raises(HMSInputError, match=message):
        manifest_from_dict(d, "m.yaml")


ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = ("; SEED in its name is a placeholder: replace it in {m} with the seed of your training run (the "
               "training code saves <backbone>_<fold>_<seed>.pt), or write the manifest from your checkpoints: "
               "python -m hms_infer manifest CKPT... -o {m}")


def test_the_repository_manifest_names_itself_its_folder_and_the_seed_placeholder(synthetic_dir, tmp_path,
                                                                                   monkeypatch, capsys):
    """A new user's first run in a fresh clone (0.4.0: `cfg_1/..._SEED.pt: checkpoint not found`, nothing more); then
    the same manifest against a --weights-dir and against one that does not exist."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "submission.csv"
    first = "cfg_1/hgnetv2_b4.ssld_stage2_ft_in1k_0_SEED.pt"
    assert main(["--test-dir", str(synthetic_dir), "--out", str(out), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (
        f"hms_infer: error: {first}: checkpoint not found: member cfg1 of weights_manifest.yaml, 8 of its 8 "
        f"checkpoints missing in {ROOT} (the manifest's folder, unless --weights-dir names another)"
        f"{PLACEHOLDER.format(m='weights_manifest.yaml')}\n")
    manifest = ROOT / "weights_manifest.yaml"
    for weights, why in ((tmp_path, "--weights-dir"), (tmp_path / "no", "--weights-dir, a folder that does not exist")):
        assert main(["--test-dir", str(synthetic_dir), "--out", str(out), "--device", "cpu", "--weights-dir",
                     str(weights), "--manifest", str(manifest)]) == 2
        assert capsys.readouterr().err == (
            f"hms_infer: error: {weights / first}: checkpoint not found: member cfg1 of {manifest}, 8 of its 8 "
            f"checkpoints missing in {weights} ({why}){PLACEHOLDER.format(m=manifest)}\n")
    assert not out.exists()


def test_a_missing_checkpoint_without_the_placeholder_is_named_with_its_manifest(tiny_weights, tmp_path):
    d = tiny_manifest(tiny_weights)
    d["members"][1]["checkpoint"] = "nope_1_0.pt"
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(d))
    message = (f"{tiny_weights / 'nope_1_0.pt'}: checkpoint not found: member tiny1 of {path}, 1 of its 2 checkpoints "
               f"missing in {tiny_weights} (--weights-dir)")
    with pytest.raises(HMSInputError) as e:
        Ensemble.from_manifest(path, tiny_weights, device="cpu")
    assert str(e.value) == message
    with pytest.raises(HMSInputError) as e:  # built in code: no file to name
        Ensemble.from_manifest(manifest_from_dict(d), tiny_weights, device="cpu")
    assert str(e.value) == message.replace(f"of {path}, 1 of its", "of the manifest, 1 of its").replace(
        "(--weights-dir)", "(the weights_dir given, else the current folder)")
