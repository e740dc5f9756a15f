"""Kaggle notebook script for hms_infer (internet off): installs the bundled wheels and writes submission.csv.

Attach the competition and the bundle (the Kaggle Dataset built by build_wheels.sh) to a notebook, then run
    !python /kaggle/input/<bundle>/kernel.py
The competition folder is /kaggle/input/hms-harmful-brain-activity-classification, the newer
/kaggle/input/competitions/hms-harmful-brain-activity-classification, or else the first folder under
/kaggle/input with test.csv beside test_eegs/. The bundle is this file's folder, or else the first folder under
/kaggle/input with wheels/ and weights_manifest.yaml. HMS_INPUT_DIR and HMS_WORKING_DIR override /kaggle/input
and /kaggle/working. The wheels are installed into <working>/hms_site, put first on sys.path: the image's own
packages stay untouched. Standard library only until then.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

COMPETITION = "hms-harmful-brain-activity-classification"
MANIFEST = "weights_manifest.yaml"
SEARCH_DEPTH = 4  # /kaggle/input/datasets/<owner>/<slug> is three levels down


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
    return (folder / "test.csv").is_file() and (folder / "test_eegs").is_dir()


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


def choose_device(torch: Any) -> str:
    """Every GPU that this torch supports (a comma list), else `cpu`, with a warning for each one left out."""
    if not torch.cuda.is_available():
        print("kernel: no GPU visible: running on the CPU")
        return "cpu"
    archs = torch.cuda.get_arch_list()
    usable = []
    for i in range(torch.cuda.device_count()):
        major, minor = torch.cuda.get_device_capability(i)
        if arch_supported((major, minor), archs) and _runs_on(torch, i):
            usable.append(f"cuda:{i}")
        else:
            print(f"kernel: WARNING: cuda:{i} {torch.cuda.get_device_name(i)} (sm_{major}{minor}) is not supported "
                  f"by torch {torch.__version__} (built for {' '.join(archs)}); not using it")
    if not usable:
        print("kernel: WARNING: no supported GPU: running on the CPU (slow; choose the GPU T4 x2 accelerator)")
        return "cpu"
    return ",".join(usable)


def main() -> int:
    input_dir = Path(os.environ.get("HMS_INPUT_DIR", "/kaggle/input"))
    working = Path(os.environ.get("HMS_WORKING_DIR", "/kaggle/working"))
    competition, bundle = find_competition(input_dir), find_bundle(input_dir)
    print(f"kernel: competition {competition}, bundle {bundle}")
    install(bundle, working / "hms_site")

    from importlib.metadata import version

    import timm
    import torch

    import hms_infer

    gpus = [f"{torch.cuda.get_device_name(i)} (sm_{''.join(map(str, torch.cuda.get_device_capability(i)))})"
            for i in range(torch.cuda.device_count())]
    print(f"kernel: python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"GPUs {gpus or 'none'}, timm {timm.__version__}, nnAudio {version('nnAudio')}, "
          f"hms_infer {hms_infer.__version__} ({Path(hms_infer.__file__).parent})")
    try:
        hms_infer.predict(competition, out=working / "submission.csv", manifest=bundle / MANIFEST,
                          device=choose_device(torch))
    except hms_infer.HMSInputError as e:
        print(f"kernel: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
