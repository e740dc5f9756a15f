"""Kaggle notebook script for hms_infer (internet off): installs the bundled wheels and writes submission.csv.

Attach the competition and the bundle (the Kaggle Dataset built by build_wheels.sh) to a notebook and run the
notebook cell that build_wheels.sh writes (it finds this file under /kaggle/input in every mount layout), or
    !python /kaggle/input/<bundle>/kernel.py
Without a GPU that the image's torch supports it stops at once (exit 1), naming the GPU it found and the
accelerator to choose, unless HMS_ALLOW_CPU=1. HMS_TIME_BUDGET_S (default 8 h, counted from this script's start)
is the run's time budget: past its projection the remaining rows run with fewer views, then fewer members.
The competition folder is /kaggle/input/hms-harmful-brain-activity-classification, the newer
/kaggle/input/competitions/hms-harmful-brain-activity-classification, or else the first folder under
/kaggle/input with test.csv beside test_eegs/. The bundle is this file's folder, or else the first folder under
/kaggle/input with wheels/ and weights_manifest.yaml. HMS_INPUT_DIR and HMS_WORKING_DIR override /kaggle/input
and /kaggle/working. The wheels are installed into a temporary folder (HMS_SITE_DIR, default <tmp>/hms_site: not
in the notebook's output), put first on sys.path: the image's own packages stay untouched. The bundle's identity
(build_info.json: version, git commit, build time; the manifest's sha256) is printed. Standard library only until
the install (torch is the image's).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

START = time.monotonic()
COMPETITION = "hms-harmful-brain-activity-classification"
MANIFEST = "weights_manifest.yaml"
BUILD_INFO = "build_info.json"
SEARCH_DEPTH = 4  # /kaggle/input/datasets/<owner>/<slug> is three levels down
TIME_BUDGET_S = 8 * 3600.0  # hms_infer.constants.KAGGLE_TIME_BUDGET_S; Kaggle stops a notebook at 9 h
ACCELERATOR = "GPU T4 x2"


def _subdirs(folder: Path) -> list[Path]:
    """Sub-folders, skipping the competition's thousands-of-files parquet folders."""
    try:
        return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.endswith(("_eegs", "_spectrograms")))
    except OSError:
        return []


def find_dir(root: Path, match: Callable[[Path], bool], depth: int = SEARCH_DEPTH) -> Path | None:
    """The first folder under `root`, breadth first and at most `depth` levels down, that `match`es."""
    level = [root]
    for _ in range(depth + 1):
        for folder in level:
            if match(folder):
                return folder
        level = [d for folder in level for d in _subdirs(folder)]
    return None


def is_competition(folder: Path) -> bool:
    return (folder / "test.csv").is_file() and all((folder / d).is_dir() for d in ("test_eegs", "test_spectrograms"))


def is_bundle(folder: Path) -> bool:
    return (folder / "wheels").is_dir() and (folder / MANIFEST).is_file()


def locate(input_dir: Path, candidates: list[Path], match: Callable[[Path], bool], what: str, hint: str) -> Path:
    """The first of `candidates` that `match`es, else the first such folder under `input_dir`; else exit."""
    for folder in candidates:
        if match(folder):
            return folder
    found = find_dir(input_dir, match)
    if found is None:
        raise SystemExit(f"kernel: no {what} under {input_dir}: {hint}")
    return found


def find_competition(input_dir: Path) -> Path:
    return locate(input_dir, [input_dir / COMPETITION, input_dir / "competitions" / COMPETITION], is_competition,
                  "competition folder (test.csv beside test_eegs/)", "add the competition's data to the notebook")


def find_bundle(input_dir: Path) -> Path:
    here = [Path(__file__).absolute().parent] if "__file__" in globals() else []  # none when pasted in a cell
    return locate(input_dir, here, is_bundle,
                  f"bundle (wheels/ and {MANIFEST})", "add the dataset built by build_wheels.sh to the notebook")


def install(bundle: Path, site: Path) -> None:
    """pip-install the bundle's wheels into `site` offline, without dependencies, and put it first on sys.path."""
    wheels = sorted(str(w) for w in (bundle / "wheels").glob("*.whl"))
    if not wheels:
        raise SystemExit(f"kernel: no wheels in {bundle / 'wheels'}")
    shutil.rmtree(site, ignore_errors=True)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "--no-index", "--no-deps", "--target", str(site), *wheels])
    if done.returncode:
        raise SystemExit(f"kernel: pip could not install {wheels} into {site}")
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])


def arch_supported(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """Whether torch's kernels, built for `arch_list` (`torch.cuda.get_arch_list()`), run on a GPU of
    `capability`: machine code (`sm_XY`) of the same major version at or below it, or PTX (`compute_XY`) at or
    below it."""
    major, minor = capability
    for arch in arch_list:
        kind, _, number = arch.partition("_")
        digits = number.rstrip("abcdefghijklmnopqrstuvwxyz")
        if not digits.isdigit():
            continue
        if kind == "sm" and int(digits) // 10 == major and int(digits) <= 10 * major + minor:
            return True
        if kind == "compute" and int(digits) <= 10 * major + minor:
            return True
    return False


def pick_device(gpus: Sequence[tuple[str, tuple[int, int]]], arch_list: Sequence[str], torch_version: str,
                allow_cpu: bool, runs: Callable[[int], bool] = lambda i: True) -> str:
    """Every supported GPU of `gpus` ((name, capability) as torch reports them) as a comma list: one whose
    capability this torch's `arch_list` covers and that `runs` a probe. None: exit with a message naming what was
    found and the accelerator to choose, or with `allow_cpu` (HMS_ALLOW_CPU=1) `cpu` and a warning."""
    usable = []
    for i, (name, (major, minor)) in enumerate(gpus):
        if arch_supported((major, minor), list(arch_list)) and runs(i):
            usable.append(f"cuda:{i}")
        else:
            print(f"kernel: WARNING: cuda:{i} {name} (sm_{major}{minor}) is not supported by torch {torch_version} "
                  f"(built for {' '.join(arch_list) or 'no GPU'}); not using it")
    if usable:
        return ",".join(usable)
    found = ", ".join(f"{name} (sm_{major}{minor})" for name, (major, minor) in gpus) or "none"
    problem = (f"no GPU that torch {torch_version} supports (GPUs found: {found}); on the CPU the run takes hours and "
               f"would hit Kaggle's time limit")
    if not allow_cpu:
        raise SystemExit(f"kernel: error: {problem}. Choose the '{ACCELERATOR}' accelerator in the notebook's "
                         f"settings, or set HMS_ALLOW_CPU=1 to run on the CPU anyway")
    print(f"kernel: WARNING: {problem}; HMS_ALLOW_CPU=1: running on the CPU")
    return "cpu"


def _runs_on(torch: Any, index: int) -> bool:
    """A tiny fp16 conv2d and linear under autocast on the GPU: an elementwise kernel alone would not show a
    missing cuDNN or cuBLAS."""
    try:
        dev = f"cuda:{index}"
        with torch.autocast("cuda", dtype=torch.float16):
            x = torch.nn.functional.conv2d(torch.ones(1, 1, 8, 8, device=dev), torch.ones(2, 1, 3, 3, device=dev))
            y = torch.nn.functional.linear(x.flatten(1), torch.ones(4, x[0].numel(), device=dev))
        return bool(torch.isfinite(y.float()).all().item())
    except RuntimeError:
        return False


def choose_device(torch: Any, allow_cpu: bool) -> str:
    """`pick_device` with what the image's torch reports."""
    available = torch.cuda.is_available()
    gpus = [(torch.cuda.get_device_name(i), tuple(torch.cuda.get_device_capability(i)))
            for i in range(torch.cuda.device_count())] if available else []
    return pick_device(gpus, torch.cuda.get_arch_list() if available else [], torch.__version__, allow_cpu,
                       lambda i: _runs_on(torch, i))


def bundle_identity(bundle: Path) -> str:
    """What build_wheels.sh recorded in build_info.json, and the sha256 of the manifest as it is now."""
    digest = hashlib.sha256((bundle / MANIFEST).read_bytes()).hexdigest()
    try:
        info = json.loads((bundle / BUILD_INFO).read_text())
    except (OSError, ValueError):
        return f"unknown build (no readable {BUILD_INFO}), manifest sha256 {digest}"
    changed = "" if info.get("manifest_sha256") == digest else " (CHANGED since the build)"
    return (f"hms_infer {info.get('hms_infer')}, commit {info.get('commit')}, built {info.get('built_utc')}, "
            f"manifest sha256 {digest}{changed}")


def time_budget(value: str | None) -> float:
    """HMS_TIME_BUDGET_S in seconds (default `TIME_BUDGET_S`); anything but a positive number: exit."""
    try:
        budget = float(value) if value else TIME_BUDGET_S
    except ValueError:
        budget = 0.0
    if not 0 < budget < float("inf"):
        raise SystemExit(f"kernel: error: HMS_TIME_BUDGET_S must be a positive number of seconds, got {value!r}")
    return budget


def main() -> int:
    input_dir = Path(os.environ.get("HMS_INPUT_DIR", "/kaggle/input"))
    working = Path(os.environ.get("HMS_WORKING_DIR", "/kaggle/working"))
    site = Path(os.environ.get("HMS_SITE_DIR") or Path(tempfile.gettempdir()) / "hms_site")
    budget = time_budget(os.environ.get("HMS_TIME_BUDGET_S"))
    import torch  # the image's: the GPU check comes first

    device = choose_device(torch, os.environ.get("HMS_ALLOW_CPU") == "1")
    competition, bundle = find_competition(input_dir), find_bundle(input_dir)
    print(f"kernel: competition {competition}, bundle {bundle}")
    print(f"kernel: bundle identity: {bundle_identity(bundle)}")
    install(bundle, site)

    from importlib.metadata import version

    import timm

    import hms_infer
    from hms_infer.cli import configure_logging

    configure_logging()  # the run's progress and summary lines in the notebook's log
    gpus = [f"{torch.cuda.get_device_name(i)} (sm_{''.join(map(str, torch.cuda.get_device_capability(i)))})"
            for i in range(torch.cuda.device_count())]
    print(f"kernel: python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"GPUs {gpus or 'none'}, timm {timm.__version__} ({Path(timm.__file__).parent}), "
          f"nnAudio {version('nnAudio')}, hms_infer {hms_infer.__version__} ({Path(hms_infer.__file__).parent})")
    try:
        hms_infer.predict(competition, out=working / "submission.csv", manifest=bundle / MANIFEST, device=device,
                          time_budget=max(budget - (time.monotonic() - START), 1e-3))  # what this script used
    except hms_infer.HMSInputError as e:
        print(f"kernel: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
