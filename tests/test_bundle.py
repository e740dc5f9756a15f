"""The Kaggle offline bundle: build_wheels.sh, kernel.py in a Kaggle-like virtualenv, and `convert`."""
from __future__ import annotations

from datetime import datetime, timezone
import importlib.util
import json
import os
import re
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
from hms_infer.tasks.bundle import FORBIDDEN, bundle_weights, bundled_path, check_wheels, read_pins
from hms_infer.checkpoint import load_weights, read_state_dict, sha256
from hms_infer.cli import main
from hms_infer.constants import KAGGLE_TIME_BUDGET_S, SUBMISSION_HEADER
from hms_infer.tasks.convert import convert_checkpoint, convert_checkpoints
from hms_infer.ensemble import Ensemble
from hms_infer.errors import HMSInputError
from hms_infer.manifest import load_manifest, manifest_from_dict
from hms_infer.models import create_model

from .conftest import TINY_ARCH, tiny_manifest
from .kaggle_image import IMAGE_TIMM, IMAGE_TORCH, IMAGE_TRITON, kaggle_python_or_skip

COMPETITION = "hms-harmful-brain-activity-classification"

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "build_wheels.sh"
KERNEL = ROOT / "kernel.py"  # at the repository root, as the design card lays it out; bundled as kernel.py
PINS = read_pins(ROOT / "kaggle" / "bundle-requirements.txt")
NO_NETWORK = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}  # any download fails


def build(out: Path, cache: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """build_wheels.sh with the bundle in `out` and the notebook folder beside it (kaggle_notebook)."""
    return subprocess.run(["bash", str(SCRIPT), "--out", str(out), "--cache", str(cache), "--notebook-out",
                           str(out.parent / "kaggle_notebook"), *args],
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
    convert_checkpoint(tiny_weights / "test_efficientnet_1_0.pt", out_dir=d / "fp16", half=True)
    manifest = tiny_manifest(d, tta=("none",))
    manifest["members"][1]["checkpoint"] = "fp16/test_efficientnet_1_0.safetensors"
    (d / "weights_manifest.yaml").write_text(yaml.safe_dump(manifest))
    return d


@pytest.fixture(scope="session")
def bundle(weights_dir, wheel_cache, tmp_path_factory) -> Path:
    """The bundle folder; the notebook folder beside it (kaggle_notebook)."""
    out = tmp_path_factory.mktemp("dist") / "kaggle_dataset"
    done = build(out, wheel_cache, "--weights-dir", str(weights_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def git_commit() -> str:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return f"{head}-dirty" if dirty else head


@pytest.mark.slow
def test_bundle_holds_pure_wheels_kernel_and_verified_checkpoints(bundle, weights_dir):
    assert {p.name for p in bundle.iterdir()} == {"wheels", "weights", "kernel.py", "weights_manifest.yaml",
                                                   "dataset-metadata.json", "build_info.json"}
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
    assert {"hms_infer/ensemble.py", "hms_infer/tasks/bundle.py", "hms_infer/tasks/convert.py"} <= set(own)
    assert not [n for n in own if "__pycache__" in n or n.startswith("tests/")]

    assert (bundle / "kernel.py").read_bytes() == KERNEL.read_bytes()
    metadata = json.loads((bundle / "dataset-metadata.json").read_text())
    assert metadata["id"].endswith("/hms-infer-bundle") and metadata["licenses"] == [{"name": "other"}]
    assert "hms_infer MIT, timm Apache-2.0, nnAudio MIT" in metadata["description"]  # Kaggle's `other`: stated
    for wheel, license_ in (("timm", "License: Apache-2.0"), ("nnaudio", "License :: OSI Approved :: MIT")):
        (path,) = (bundle / "wheels").glob(f"{wheel}-*.whl")  # what the wheels themselves declare
        meta = next(n for n in zipfile.ZipFile(path).namelist() if n.endswith(".dist-info/METADATA"))
        assert license_ in zipfile.ZipFile(path).read(meta).decode(), wheel

    info = json.loads((bundle / "build_info.json").read_text())
    assert info["hms_infer"] == hms_infer.__version__ and info["commit"] == git_commit()
    assert info["manifest_sha256"] == sha256(bundle / "weights_manifest.yaml")
    built = datetime.strptime(info["built_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - built).total_seconds()) < 3600

    manifest = load_manifest(bundle / "weights_manifest.yaml")
    assert [m.checkpoint for m in manifest.members] == ["weights/test_efficientnet_0_0.pt",
                                                        "weights/fp16/test_efficientnet_1_0.safetensors"]
    assert sorted(str(p.relative_to(bundle)) for p in (bundle / "weights").rglob("*") if p.is_file()) == sorted(
        m.checkpoint for m in manifest.members)
    for m in manifest.members:
        source = weights_dir / m.checkpoint[len("weights/"):]
        assert m.sha256 == sha256(bundle / m.checkpoint) == sha256(source)
    assert manifest.views == ("none",)
    ens = Ensemble.from_manifest(bundle / "weights_manifest.yaml", device="cpu")  # strict loads, sha256 checked
    assert [m.name for m in ens.members] == ["tiny0", "tiny1"]


@pytest.mark.slow
def test_rebuild_gives_the_same_folder_and_removes_stale_files(bundle, weights_dir, wheel_cache):
    before, notebook_before = snapshot(bundle), snapshot(bundle.parent / "kaggle_notebook")
    info = json.loads((bundle / "build_info.json").read_text())
    (bundle.parent / "kaggle_notebook" / "old.ipynb").write_text("{}")
    (bundle / "stale.txt").write_text("old")
    (bundle / "wheels" / "torch-2.0.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"old")
    (bundle / "weights" / "old.pt").write_bytes(b"old")
    (bundle / "weights" / "fp16" / "old.pt").write_bytes(b"old")
    (bundle / "weights" / "old" / "fold").mkdir(parents=True)
    (bundle / "weights" / "test_efficientnet_0_0.pt").write_bytes(b"corrupt")
    done = build(bundle, wheel_cache, "--weights-dir", str(weights_dir), env=NO_NETWORK)  # the cache suffices
    assert done.returncode == 0, done.stdout + done.stderr
    after = snapshot(bundle)
    assert after.pop("build_info.json") and before.pop("build_info.json") and after == before
    again = json.loads((bundle / "build_info.json").read_text())
    assert {k: v for k, v in again.items() if k != "built_utc"} == {k: v for k, v in info.items() if k != "built_utc"}
    assert not (bundle / "weights" / "old").exists()
    assert snapshot(bundle.parent / "kaggle_notebook") == notebook_before


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


def test_kernel_py_is_at_the_repository_root():
    """The design card's layout: kernel.py beside build_wheels.sh (which bundles that file); kaggle/ holds the
    notebook cell and the bundle's pins."""
    assert KERNEL.read_text().startswith('"""Kaggle notebook script for hms_infer')
    assert sorted(p.name for p in (ROOT / "kaggle").iterdir()) == ["bundle-requirements.txt", "notebook_cell.py"]
    assert '--kernel "$ROOT/kernel.py"' in SCRIPT.read_text()


def test_build_wheels_help_and_bad_arguments():
    done = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "Usage: ./build_wheels.sh" in done.stdout and "PYTHON" in done.stdout
    done = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown argument: --bogus" in done.stderr
    done = subprocess.run(["bash", str(SCRIPT), "--weights-dir", "/nonexistent"], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable})
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
        convert_checkpoints([tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt"], out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.parent.name for p in convert_checkpoints([tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt"])] \
        == ["a", "b"]


def test_convert_refuses_values_beyond_fp16(tmp_path):
    torch.save({"head_all.weight": torch.tensor([1.0, 1e6])}, tmp_path / "big.pt")
    with pytest.raises(HMSInputError, match="head_all.weight has values beyond the fp16 range"):
        convert_checkpoint(tmp_path / "big.pt", half=True)
    assert not list(tmp_path.glob("*.safetensors"))


def _kernel_module():
    spec = importlib.util.spec_from_file_location("hms_kernel", KERNEL)
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


def test_kernel_takes_a_competition_folder_only_with_both_data_folders(tmp_path):
    """The search for the competition folder passes over one without test_spectrograms/ (predict would refuse it),
    so a fuller copy deeper down is still found."""
    kernel = _kernel_module()
    (tmp_path / "test.csv").write_text("eeg_id\n")
    (tmp_path / "test_eegs").mkdir()
    assert not kernel.is_competition(tmp_path)
    (tmp_path / "test_spectrograms").mkdir()
    assert kernel.is_competition(tmp_path)


@pytest.fixture(scope="session")
def kaggle_python() -> Path:
    return kaggle_python_or_skip()


@pytest.mark.slow
def test_the_kaggle_image_venv_has_the_image_torch_and_triton(kaggle_python):
    """torch 2.10.0 built for CUDA 12.8, triton 3.6.0 and torchvision 0.25.0, as Kaggle's image has them."""
    done = subprocess.run([str(kaggle_python), "-c", "import torch, torchvision, triton; print(torch.__version__, "
                           "torch.version.cuda, triton.__version__, torchvision.__version__)"],
                          capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]})
    assert done.stdout.split() == [f"{IMAGE_TORCH}+cu128", "12.8", IMAGE_TRITON, "0.25.0+cu128"]


def kaggle_env(input_dir: Path, working: Path, tmp: Path, **extra: str) -> dict[str, str]:
    """No PYTHONPATH, no virtualenv or pip settings of ours, no network; the two overrides; TMPDIR (where the
    wheels are installed) per test."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    tmp.mkdir(exist_ok=True)
    return {**keep, **NO_NETWORK, "HMS_INPUT_DIR": str(input_dir), "HMS_WORKING_DIR": str(working),
            "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1", **extra}  # one thread: ~5x faster on a shared 2-core CI


def notebook_cell(bundle: Path) -> str:
    """The source of the one code cell of the built notebook."""
    nb = json.loads((bundle.parent / "kaggle_notebook" / "hms-infer-submit.ipynb").read_text())
    (cell,) = nb["cells"]
    return "".join(cell["source"])


def test_notebook_folder_for_kaggle_kernels_push(bundle):
    import nbformat
    folder = bundle.parent / "kaggle_notebook"
    assert {p.name for p in folder.iterdir()} == {"kernel-metadata.json", "hms-infer-submit.ipynb"}
    metadata = json.loads((folder / "kernel-metadata.json").read_text())
    dataset = json.loads((bundle / "dataset-metadata.json").read_text())["id"]
    assert metadata == {
        "id": "<your-kaggle-username>/hms-infer-submit", "title": "HMS Infer Submit",
        "code_file": "hms-infer-submit.ipynb", "language": "python", "kernel_type": "notebook", "is_private": True,
        "enable_gpu": True, "enable_internet": False, "dataset_sources": [dataset],
        "competition_sources": ["hms-harmful-brain-activity-classification"], "kernel_sources": [],
        "model_sources": []}
    assert dataset == "<your-kaggle-username>/hms-infer-bundle"
    nb = nbformat.read(folder / "hms-infer-submit.ipynb", as_version=4)
    nbformat.validate(nb)  # raises on an invalid notebook
    assert [c.cell_type for c in nb.cells] == ["code"] and nb.nbformat == 4
    cell = (ROOT / "kaggle" / "notebook_cell.py").read_text()
    assert notebook_cell(bundle) == cell
    assert f"```python\n{cell}```" in (ROOT / "docs" / "kaggle.md").read_text()  # the same cell, to paste by hand


def test_kernel_metadata_takes_the_bundle_id(tmp_path, weights_dir, wheel_cache, bundle):
    out = tmp_path / "kaggle_dataset"
    out.mkdir()
    (out / "dataset-metadata.json").write_text(json.dumps({"id": "alice/my-bundle", "title": "x" * 8,
                                                           "licenses": [{"name": "other"}]}))
    done = build(out, wheel_cache, "--weights-dir", str(weights_dir), env=NO_NETWORK)
    assert done.returncode == 0, done.stdout + done.stderr
    metadata = json.loads((tmp_path / "kaggle_notebook" / "kernel-metadata.json").read_text())
    assert metadata["id"] == "alice/hms-infer-submit" and metadata["dataset_sources"] == ["alice/my-bundle"]
    assert json.loads((out / "dataset-metadata.json").read_text())["id"] == "alice/my-bundle"  # kept


ARCHS = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]  # a current torch: no sm_60
T4, P100 = ("Tesla T4", (7, 5)), ("Tesla P100-PCIE-16GB", (6, 0))


@pytest.mark.parametrize("gpus, expected", [([T4, T4], "cuda:0,cuda:1"), ([P100, T4], "cuda:1"),
                                            ([T4], "cuda:0")])
def test_pick_device_uses_every_supported_gpu(gpus, expected, capsys):
    assert _kernel_module().pick_device(gpus, ARCHS, "2.14.1", allow_cpu=False) == expected
    assert ("sm_60) is not supported by torch 2.14.1" in capsys.readouterr().out) == (P100 in gpus)


@pytest.mark.parametrize("gpus, found", [([P100], "Tesla P100-PCIE-16GB (sm_60)"), ([], "none")])
def test_pick_device_refuses_the_cpu_unless_allowed(gpus, found, capsys):
    kernel = _kernel_module()
    with pytest.raises(SystemExit) as stop:
        kernel.pick_device(gpus, ARCHS if gpus else [], "2.14.1", allow_cpu=False)
    message = str(stop.value.code)
    assert message.startswith(f"kernel: error: no GPU that torch 2.14.1 supports (GPUs found: {found})")
    assert "Choose the 'GPU T4 x2' accelerator" in message and "HMS_ALLOW_CPU=1" in message
    assert kernel.pick_device(gpus, ARCHS if gpus else [], "2.14.1", allow_cpu=True) == "cpu"
    assert f"(GPUs found: {found}); on the CPU the run takes hours" in capsys.readouterr().out


def test_pick_device_leaves_out_a_gpu_that_fails_the_probe():
    kernel = _kernel_module()
    assert kernel.pick_device([T4, T4], ARCHS, "2.14.1", False, runs=lambda i: i == 1) == "cuda:1"
    with pytest.raises(SystemExit, match="GPUs found: Tesla T4 \\(sm_75\\)"):
        kernel.pick_device([T4], ARCHS, "2.14.1", False, runs=lambda i: False)


@pytest.mark.parametrize("value, seconds", [(None, 8 * 3600.0), ("", 8 * 3600.0), ("60", 60.0)])
def test_kernel_time_budget(value, seconds):
    assert _kernel_module().time_budget(value) == seconds
    assert _kernel_module().TIME_BUDGET_S == KAGGLE_TIME_BUDGET_S  # kernel.py is stdlib-only: a mirror
    with pytest.raises(SystemExit, match="HMS_TIME_BUDGET_S must be a positive number of seconds, got '8h'"):
        _kernel_module().time_budget("8h")


def mount(input_dir: Path, layout: str, bundle: Path, synthetic_dir: Path) -> tuple[Path, Path]:
    """Lay out the competition and a copy of the bundle under `input_dir` as Kaggle mounts them."""
    competition = {"competitions": input_dir / "competitions" / COMPETITION}.get(layout, input_dir / COMPETITION)
    bundle_copy = {"classic": input_dir / "hms-infer-bundle",
                   "owner": input_dir / "someone" / "hms-infer-bundle"}.get(
        layout, input_dir / "datasets" / "someone" / "hms-infer-bundle")
    competition.parent.mkdir(parents=True, exist_ok=True)
    competition.symlink_to(synthetic_dir)
    shutil.copytree(bundle, bundle_copy)
    return competition, bundle_copy


def check_submission(path: Path, synthetic_dir: Path) -> None:
    test = pd.read_csv(synthetic_dir / "test.csv")
    sub = pd.read_csv(path)
    assert ",".join(sub.columns) == "eeg_id,seizure_vote,lpd_vote,gpd_vote,lrda_vote,grda_vote,other_vote"
    assert list(sub.columns) == list(SUBMISSION_HEADER)
    assert sub["eeg_id"].tolist() == test["eeg_id"].tolist()
    probs = sub.iloc[:, 1:].to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all()
    assert abs(probs.sum(1) - 1).max() < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("layout, how", [("classic", "script"), ("competitions", "pasted"),
                                         ("datasets", "notebook"), ("owner", "notebook")])
def test_kernel_offline_in_a_kaggle_like_venv(layout, how, kaggle_python, bundle, synthetic_dir, tmp_path):
    """The image's packages at its versions, its own timm among them; kernel.py run from the bundle, pasted into
    a notebook (no __file__: the bundle is found by searching), or through the built notebook's cell, which finds
    it under /kaggle/input/<slug>, /<owner>/<slug> or /datasets/<owner>/<slug>."""
    image = subprocess.run([str(kaggle_python), "-c", "import importlib.util as u, timm; print(timm.__version__, "
                            "[m for m in ('nnAudio', 'hms_infer') if u.find_spec(m)])"],
                           capture_output=True, text=True, cwd=tmp_path, check=True, env={"PATH": os.environ["PATH"]})
    assert image.stdout.split(None, 1) == [IMAGE_TIMM, "[]\n"], image.stdout

    input_dir, working = tmp_path / "input", tmp_path / "working"
    working.mkdir()
    competition, bundle_copy = mount(input_dir, layout, bundle, synthetic_dir)
    script = {"script": bundle_copy / "kernel.py", "pasted": working / "notebook.py",
              "notebook": working / "cell.py"}[how]
    if how == "pasted":
        shutil.copy(bundle / "kernel.py", script)
    elif how == "notebook":
        script.write_text(notebook_cell(bundle))
    env = kaggle_env(input_dir, working, tmp_path / "tmp", HMS_ALLOW_CPU="1")
    (working / "submission.csv").write_text("stale")  # the cell removes it; kernel.py replaces it
    done = subprocess.run([str(kaggle_python), str(script)], capture_output=True, text=True, cwd=working, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    site = tmp_path / "tmp" / "hms_site"
    assert f"competition {competition}, bundle {bundle_copy}" in done.stdout
    info = json.loads((bundle / "build_info.json").read_text())
    assert (f"bundle identity: hms_infer {hms_infer.__version__}, commit {info['commit']}, built "
            f"{info['built_utc']}, manifest sha256 {sha256(bundle / 'weights_manifest.yaml')}\n") in done.stdout
    assert re.search(rf"no GPU that torch {re.escape(IMAGE_TORCH)}\S* supports \(GPUs found: none\)",
                     done.stdout)  # HMS_ALLOW_CPU
    # the bundled timm shadows the image's 1.0.26
    assert f"timm {PINS['timm']} ({site / 'timm'}), nnAudio {PINS['nnaudio']}, hms_infer {hms_infer.__version__} " \
           f"({site / 'hms_infer'})" in done.stdout
    assert "hms_infer: time budget 28" in done.stdout and ": nothing dropped" in done.stdout
    if how == "notebook":
        assert f"hms_infer: {working / 'submission.csv'} written" in done.stdout
    assert sorted(p.name for p in working.iterdir()) == sorted(
        ["submission.csv", "submission.issues.json", *([script.name] if how != "script" else [])])
    check_submission(working / "submission.csv", synthetic_dir)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["script", "notebook"])
def test_kernel_refuses_the_cpu_without_hms_allow_cpu(how, kaggle_python, bundle, synthetic_dir, tmp_path):
    input_dir, working = tmp_path / "input", tmp_path / "working"
    working.mkdir()
    _, bundle_copy = mount(input_dir, "datasets", bundle, synthetic_dir)
    script = bundle_copy / "kernel.py" if how == "script" else working / "cell.py"
    if how == "notebook":
        script.write_text(notebook_cell(bundle))
    done = subprocess.run([str(kaggle_python), str(script)], capture_output=True, text=True, cwd=working,
                          env=kaggle_env(input_dir, working, tmp_path / "tmp"), timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(rf"^kernel: error: no GPU that torch {re.escape(IMAGE_TORCH)}\S* supports \(GPUs found: none\); "
                     r"on the CPU the run takes hours and would hit Kaggle's time limit\. Choose the 'GPU T4 x2' "
                     r"accelerator in the notebook's settings, or set HMS_ALLOW_CPU=1 to run on the CPU anyway$",
                     done.stderr, re.M)
    if how == "notebook":  # the cell fails loudly too
        assert "CalledProcessError" in done.stderr
    assert not (tmp_path / "tmp" / "hms_site").exists() and not (working / "submission.csv").exists()
