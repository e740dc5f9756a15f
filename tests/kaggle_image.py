"""The Kaggle image as a virtualenv: its versions of what hms_infer imports, built once and cached.

The versions are the image's published definition: torch 2.10.0 with the triton 3.6.0 it pins and the torchvision
0.25.0 that pins it (PyPI's Linux torch wheel brings the nvidia cu12 packages, as the image has them), and the
image's own timm, which the bundled one must shadow; no nnAudio or hms_infer. Measured on the 2-core CI machine:
built in 209 s from PyPI (3.5 min), 7.5 GB (nvidia cu12 4.3 GB, torch 1.8 GB, triton 0.6 GB).
"""
from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGE_TIMM = "1.0.26"
IMAGE_TORCH, IMAGE_TRITON = "2.10.0", "3.6.0"
KAGGLE_IMAGE = (f"torch=={IMAGE_TORCH}", "torchvision==0.25.0", f"triton=={IMAGE_TRITON}", "numpy==2.0.2",
                "pandas==2.2.2", "pyarrow==18.1.0", "scipy==1.16.3", "PyYAML==6.0.3", "safetensors==0.7.0",
                "tqdm==4.67.3", "huggingface_hub==1.11.0", f"timm=={IMAGE_TIMM}")
IMAGE_VENV = ROOT / ".venv-kaggle-image"  # git-ignored; cached between runs, keyed by KAGGLE_IMAGE and the Python


def _key() -> str:
    return hashlib.sha256("\n".join([sys.version, *KAGGLE_IMAGE]).encode()).hexdigest()


def ensure_kaggle_venv() -> Path:
    """The python of a virtualenv with the Kaggle image's packages (KAGGLE_IMAGE) and nothing of ours, created once
    and kept at .venv-kaggle-image while its stamp matches; a lock keeps concurrent test runs from building it
    twice."""
    key = _key()
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


def kaggle_python_or_skip() -> Path:
    """`ensure_kaggle_venv`, or a skip where it is not built and the package index is out of reach (building it
    needs the index, as build_wheels.sh does)."""
    stamp = IMAGE_VENV / ".kaggle-image-key"
    if not (stamp.is_file() and stamp.read_text() == _key()):
        with tempfile.TemporaryDirectory() as tmp:  # the smallest pin, as a probe of the index
            try:
                probe = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                                        "--disable-pip-version-check", "-d", tmp, "tqdm==4.67.3"],
                                       capture_output=True, text=True, timeout=300).returncode
            except subprocess.TimeoutExpired:  # an index that does not answer is out of reach too
                probe = None
        if probe != 0:
            pytest.skip(f"the Kaggle-image venv ({IMAGE_VENV}) is not built and the package index is out of reach")
    return ensure_kaggle_venv()
