"""The Kaggle offline bundle: build_wheels.sh, kernel.py in a Kaggle-like virtualenv, and `convert`."""
from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import hms_infer
from hms_infer.bundle import FORBIDDEN, bundle_weights, bundled_path, check_wheels, read_pins
from hms_infer.checkpoint import load_weights, read_state_dict, sha256
from hms_infer.cli import main
from hms_infer.constants import SUBMISSION_HEADER
from hms_infer.convert import convert_checkpoint, convert_checkpoints
from hms_infer.ensemble import Ensemble
from hms_infer.errors import HMSInputError
from hms_infer.manifest import load_manifest, manifest_from_dict
from hms_infer.models import create_model

from .conftest import TINY_ARCH, tiny_manifest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "build_wheels.sh"
PINS = read_pins(ROOT / "kaggle" / "bundle-requirements.txt")
# What the Kaggle image has and the bundle must not bring; no timm, nnAudio or hms_infer.
KAGGLE_IMAGE = ("torch==2.14.1", "torchvision==0.29.1", "numpy", "pandas", "scipy", "pyarrow", "pyyaml",
                "huggingface_hub", "safetensors", "tqdm")
IMAGE_VENV = ROOT / ".venv-kaggle-image"  # cached between runs, keyed by KAGGLE_IMAGE and the Python version
NO_NETWORK = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}  # any download fails


def build(out: Path, cache: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "--out", str(out), "--cache", str(cache), *args],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHON": sys.executable, **(env or {})})


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory) -> Path:
    """Shared by every build of the session: the pinned wheels are downloaded once."""
    return tmp_path_factory.mktemp("wheel_cache")


@pytest.fixture(scope="session")
def weights_dir(tiny_weights, tmp_path_factory) -> Path:
    """Fold 0 as the training code's .pt, fold 1 converted to fp16 .safetensors in a subfolder; their manifest
    (TTA none)."""
    d = tmp_path_factory.mktemp("bundle_weights")
    shutil.copy(tiny_weights / "test_efficientnet_0_0.pt", d)
    convert_checkpoint(tiny_weights / "test_efficientnet_1_0.pt", d / "fp16", half=True)
    manifest = tiny_manifest(d, tta=("none",))
    manifest["members"][1]["checkpoint"] = "fp16/test_efficientnet_1_0.safetensors"
    (d / "weights_manifest.yaml").write_text(yaml.safe_dump(manifest))
    return d


@pytest.fixture(scope="session")
def bundle(weights_dir, wheel_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist") / "kaggle_dataset"
    done = build(out, wheel_cache, "--weights-dir", str(weights_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.mark.slow
def test_bundle_holds_pure_wheels_kernel_and_verified_checkpoints(bundle, weights_dir):
    assert {p.name for p in bundle.iterdir()} == {"wheels", "weights", "kernel.py", "weights_manifest.yaml",
                                                   "dataset-metadata.json"}
    wheels = sorted((bundle / "wheels").iterdir())
    assert sorted(w.name for w in wheels) == sorted(
        [f"{name}-{version}-py3-none-any.whl" for name, version in PINS.items()]
        + [f"hms_infer-{hms_infer.__version__}-py3-none-any.whl"])
    assert {"timm", "nnaudio"} <= set(PINS)
    for wheel in wheels:
        assert wheel.name.split("-")[0].lower() not in FORBIDDEN
        names = zipfile.ZipFile(wheel).namelist()
        assert not [n for n in names if n.endswith((".so", ".pyd", ".dylib"))], wheel.name
    own = zipfile.ZipFile(bundle / "wheels" / f"hms_infer-{hms_infer.__version__}-py3-none-any.whl").namelist()
    assert {"hms_infer/ensemble.py", "hms_infer/bundle.py", "hms_infer/convert.py"} <= set(own)
    assert not [n for n in own if "__pycache__" in n or n.startswith("tests/")]

    assert (bundle / "kernel.py").read_bytes() == (ROOT / "kernel.py").read_bytes()
    metadata = json.loads((bundle / "dataset-metadata.json").read_text())
    assert metadata["id"].endswith("/hms-infer-bundle") and metadata["licenses"] == [{"name": "CC0-1.0"}]

    manifest = load_manifest(bundle / "weights_manifest.yaml")
    assert [m.checkpoint for m in manifest.members] == ["weights/test_efficientnet_0_0.pt",
                                                        "weights/fp16/test_efficientnet_1_0.safetensors"]
    assert sorted(str(p.relative_to(bundle)) for p in (bundle / "weights").rglob("*") if p.is_file()) == sorted(
        m.checkpoint for m in manifest.members)
    for m in manifest.members:
        source = weights_dir / m.checkpoint[len("weights/"):]
        assert m.sha256 == sha256(bundle / m.checkpoint) == sha256(source)
    assert manifest.tta == ["none"]
    ens = Ensemble.from_manifest(bundle / "weights_manifest.yaml", device="cpu")  # strict loads, sha256 checked
    assert [m.name for m in ens.members] == ["tiny0", "tiny1"]


@pytest.mark.slow
def test_rebuild_gives_the_same_folder_and_removes_stale_files(bundle, weights_dir, wheel_cache):
    before = snapshot(bundle)
    (bundle / "stale.txt").write_text("old")
    (bundle / "wheels" / "torch-2.0.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"old")
    (bundle / "weights" / "old.pt").write_bytes(b"old")
    (bundle / "weights" / "fp16" / "old.pt").write_bytes(b"old")
    (bundle / "weights" / "old" / "fold").mkdir(parents=True)
    (bundle / "weights" / "test_efficientnet_0_0.pt").write_bytes(b"corrupt")
    done = build(bundle, wheel_cache, "--weights-dir", str(weights_dir), env=NO_NETWORK)  # the cache suffices
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot(bundle) == before
    assert not (bundle / "weights" / "old").exists()


@pytest.mark.slow
def test_build_without_weights_dir_and_with_a_missing_checkpoint(tmp_path, weights_dir, wheel_cache):
    out = tmp_path / "bundle"
    done = build(out, wheel_cache, "--manifest", str(weights_dir / "weights_manifest.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (out / "weights").exists() and "holds no checkpoints" in done.stdout
    assert [m.checkpoint for m in load_manifest(out / "weights_manifest.yaml").members] == [
        "weights/test_efficientnet_0_0.pt", "weights/fp16/test_efficientnet_1_0.safetensors"]

    partial = tmp_path / "weights"
    partial.mkdir()
    shutil.copy(weights_dir / "weights_manifest.yaml", partial)
    shutil.copy(weights_dir / "test_efficientnet_0_0.pt", partial)
    done = build(tmp_path / "bundle2", wheel_cache, "--weights-dir", str(partial))
    assert done.returncode == 2
    assert f"{partial / 'fp16/test_efficientnet_1_0.safetensors'}: checkpoint of member tiny1 not found" in done.stderr


def test_build_wheels_help_and_bad_arguments():
    done = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "Usage: ./build_wheels.sh" in done.stdout and "PYTHON" in done.stdout
    done = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown argument: --bogus" in done.stderr
    done = subprocess.run(["bash", str(SCRIPT), "--weights-dir", "/nonexistent"], capture_output=True, text=True)
    assert done.returncode == 2 and "not a folder" in done.stderr


@pytest.mark.parametrize("names, problem", [
    (["torch-2.14.1-py3-none-any.whl"], "the Kaggle image provides torch"),
    (["numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl"], "the Kaggle image provides numpy"),
    (["timm-1.0.31-cp311-cp311-linux_x86_64.whl"], "not a pure-python"),
    (["timm-1.0.31-py3-none-any.whl"], "differ from the expected"),
    (["timm-1.0.30-py3-none-any.whl", "nnaudio-0.3.4-py3-none-any.whl"], "differ from the expected"),
])
def test_check_wheels_rejects_forbidden_impure_and_unpinned_wheels(names, problem):
    expected = {"timm": "1.0.31", "nnaudio": "0.3.4"}
    check_wheels([Path("timm-1.0.31-py3-none-any.whl"), Path("nnAudio-0.3.4-py2.py3-none-any.whl")], expected)
    with pytest.raises(HMSInputError, match=problem):
        check_wheels([Path(n) for n in names], expected)


@pytest.mark.parametrize("checkpoint, bundled", [
    ("a.pt", "weights/a.pt"), ("cfg_1/a.pt", "weights/cfg_1/a.pt"), ("/abs/cfg_1/a.pt", "weights/a.pt"),
    ("../up/a.pt", "weights/a.pt"),
])
def test_bundled_path_keeps_relative_subfolders(checkpoint, bundled):
    assert bundled_path(checkpoint) == bundled


def test_bundle_weights_keeps_same_named_checkpoints_apart(tmp_path, tiny_weights):
    src = tmp_path / "src"
    for fold in (0, 1):  # as the presets: one file name, one folder per configuration
        (src / f"cfg_{fold}").mkdir(parents=True)
        shutil.copy(tiny_weights / f"test_efficientnet_{fold}_0.pt", src / f"cfg_{fold}" / "model.pt")
    manifest = tiny_manifest(src)
    for fold, m in enumerate(manifest["members"]):
        m["checkpoint"] = f"cfg_{fold}/model.pt"
    bundled = bundle_weights(manifest_from_dict(manifest), src, tmp_path / "out")
    assert [m.checkpoint for m in bundled.members] == ["weights/cfg_0/model.pt", "weights/cfg_1/model.pt"]
    for fold, m in enumerate(bundled.members):
        assert sha256(tmp_path / "out" / m.checkpoint) == sha256(tiny_weights / f"test_efficientnet_{fold}_0.pt")

    for fold, m in enumerate(manifest["members"]):
        m["checkpoint"] = str(src / f"cfg_{fold}" / "model.pt")  # absolute: both would be weights/model.pt
    with pytest.raises(HMSInputError, match="would both be bundled as weights/model.pt"):
        bundle_weights(manifest_from_dict(manifest), src, tmp_path / "out2")


def test_bundle_weights_rejects_a_checkpoint_that_does_not_match_its_sha256(tmp_path, weights_dir):
    manifest = tiny_manifest(weights_dir, folds=(0,))
    manifest["members"][0]["sha256"] = "0" * 64
    with pytest.raises(HMSInputError, match="does not match the manifest's 0000"):
        bundle_weights(manifest_from_dict(manifest), weights_dir, tmp_path)
    assert not (tmp_path / "weights").exists()


def test_convert_round_trip_exact_and_half(tmp_path, tiny_weights, capsys):
    src = tiny_weights / "test_efficientnet_0_0.pt"
    assert main(["convert", str(src), "--out-dir", str(tmp_path / "fp32")]) == 0
    assert main(["convert", str(src), "--half", "--out-dir", str(tmp_path / "fp16")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "MiB" in lines[0] and lines[1].endswith("fp16)")
    original = read_state_dict(src)
    full = read_state_dict(tmp_path / "fp32" / "test_efficientnet_0_0.safetensors")
    half = read_state_dict(tmp_path / "fp16" / "test_efficientnet_0_0.safetensors")
    assert full.keys() == half.keys() == original.keys()
    for key, value in original.items():
        assert full[key].dtype == value.dtype and torch.equal(full[key], value), key
        if value.is_floating_point():
            assert half[key].dtype == torch.float16, key
            torch.testing.assert_close(half[key].float(), value.float(), rtol=1e-3, atol=1e-7, msg=key)
        else:
            assert torch.equal(half[key], value), key
    size = {p: (tmp_path / p / "test_efficientnet_0_0.safetensors").stat().st_size for p in ("fp32", "fp16")}
    assert size["fp16"] < 0.6 * size["fp32"]
    model = load_weights(create_model(TINY_ARCH), half, "fp16", "tiny")  # strict=True
    assert all(p.dtype == torch.float32 for p in model.state_dict().values() if p.is_floating_point())


def test_convert_refuses_two_checkpoints_with_one_output(tmp_path, tiny_weights):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(tiny_weights / "test_efficientnet_0_0.pt", tmp_path / name / "model.pt")
    with pytest.raises(HMSInputError, match="would both be written to"):
        convert_checkpoints([tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.parent.name for p in convert_checkpoints([tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt"])] \
        == ["a", "b"]


def test_convert_refuses_values_beyond_fp16(tmp_path):
    torch.save({"head_all.weight": torch.tensor([1.0, 1e6])}, tmp_path / "big.pt")
    with pytest.raises(HMSInputError, match="head_all.weight has values beyond the fp16 range"):
        convert_checkpoint(tmp_path / "big.pt", half=True)
    assert not list(tmp_path.glob("*.safetensors"))


def _kernel_module():
    spec = importlib.util.spec_from_file_location("hms_kernel", ROOT / "kernel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("capability, archs, supported", [
    ((7, 5), ["sm_75", "sm_80", "sm_86", "sm_90"], True),  # T4
    ((6, 0), ["sm_75", "sm_80", "sm_86", "sm_90", "compute_90"], False),  # P100 on a current torch
    ((6, 0), ["sm_50", "sm_60", "sm_70"], True),
    ((8, 9), ["sm_80", "sm_90a"], True),  # same-major machine code runs on a later minor
    ((8, 0), ["sm_86"], False),
    ((12, 0), ["sm_90", "compute_90"], True),  # PTX is compiled for newer GPUs
    ((7, 5), [], False),
])
def test_kernel_arch_check(capability, archs, supported):
    assert _kernel_module().arch_supported(capability, archs) is supported


@pytest.fixture(scope="session")
def kaggle_python() -> Path:
    """A virtualenv with the Kaggle image's packages (KAGGLE_IMAGE) and nothing of ours, created once (~3 min,
    ~6 GB) and kept at .venv-kaggle-image; a lock keeps concurrent test runs from building it twice."""
    key = hashlib.sha256("\n".join([sys.version, *KAGGLE_IMAGE]).encode()).hexdigest()
    stamp, python = IMAGE_VENV / ".kaggle-image-key", IMAGE_VENV / "bin" / "python"
    with open(ROOT / ".venv-kaggle-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (python.exists() and stamp.is_file() and stamp.read_text() == key):
            shutil.rmtree(IMAGE_VENV, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(IMAGE_VENV)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *KAGGLE_IMAGE],
                           check=True, timeout=1800)
            stamp.write_text(key)
    return python


def kaggle_env(input_dir: Path, working: Path) -> dict[str, str]:
    """No PYTHONPATH, no virtualenv or pip settings of ours, no network; the two overrides."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {**keep, **NO_NETWORK, "HMS_INPUT_DIR": str(input_dir), "HMS_WORKING_DIR": str(working)}


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["classic", "competitions"])
def test_kernel_offline_in_a_kaggle_like_venv(layout, kaggle_python, bundle, synthetic_dir, tmp_path):
    ours = ("timm", "nnAudio", "hms_infer")
    absent = subprocess.run([str(kaggle_python), "-c", f"import importlib.util as u; print([m for m in {ours!r} "
                             f"if u.find_spec(m)])"], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert absent.stdout.strip() == "[]", f"the Kaggle-like venv must not have {absent.stdout}"

    input_dir, working = tmp_path / "input", tmp_path / "working"
    working.mkdir()
    if layout == "classic":  # run from the bundle, as `!python /kaggle/input/<bundle>/kernel.py`
        competition = input_dir / "hms-harmful-brain-activity-classification"
        bundle_copy = input_dir / "hms-infer-bundle"
        kernel = bundle_copy / "kernel.py"
    else:  # newer mounts; kernel.py pasted into the notebook: the bundle is found by searching
        competition = input_dir / "competitions" / "hms-harmful-brain-activity-classification"
        bundle_copy = input_dir / "datasets" / "someone" / "hms-infer-bundle"
        kernel = working / "notebook.py"
        shutil.copy(bundle / "kernel.py", kernel)
    competition.parent.mkdir(parents=True)
    competition.symlink_to(synthetic_dir)
    shutil.copytree(bundle, bundle_copy)

    done = subprocess.run([str(kaggle_python), str(kernel)], capture_output=True, text=True, cwd=working,
                          env=kaggle_env(input_dir, working), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"competition {competition}, bundle {bundle_copy}" in done.stdout
    versions = f"timm {PINS['timm']}, nnAudio {PINS['nnaudio']}, hms_infer {hms_infer.__version__}"
    assert f"{versions} ({working / 'hms_site'}" in done.stdout

    test = pd.read_csv(synthetic_dir / "test.csv")
    sub = pd.read_csv(working / "submission.csv")
    assert ",".join(sub.columns) == "eeg_id,seizure_vote,lpd_vote,gpd_vote,lrda_vote,grda_vote,other_vote"
    assert list(sub.columns) == list(SUBMISSION_HEADER)
    assert sub["eeg_id"].tolist() == test["eeg_id"].tolist()
    probs = sub.iloc[:, 1:].to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all()
    assert abs(probs.sum(1) - 1).max() < 1e-6
