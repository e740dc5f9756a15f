"""`bundle`: the Kaggle offline bundle (the folder uploaded as one Kaggle Dataset); `build_wheels.sh` drives it.

    wheels/                 hms_infer + the pure-python wheels pinned in kaggle/bundle-requirements.txt
    kernel.py               the notebook script: installs the wheels offline, writes submission.csv
    weights_manifest.yaml   the manifest, its checkpoints under weights/ (relative to the bundle root)
    weights/                the checkpoints (when a weights folder is given), verified against their sha256
    dataset-metadata.json   template for `kaggle datasets create` (an existing one is kept)
    build_info.json         the bundle's identity, printed by kernel.py: hms_infer version, git commit, build
                            time (UTC), the manifest's sha256

and, with --notebook-out, the folder for `kaggle kernels push`:

    kernel-metadata.json    notebook, GPU on, internet off, the competition and the bundle as sources (an existing
                            one is kept)
    hms-infer-submit.ipynb  one code cell (kaggle/notebook_cell.py): finds kernel.py under /kaggle/input in any mount
                            layout, runs it, checks that /kaggle/working/submission.csv exists

    python -m hms_infer bundle --out DIR --wheels STAGED_WHEELS --requirements REQ --kernel kernel.py \
        [--weights-dir DIR] [--manifest PATH] [--default-manifest PATH] [--commit SHA] \
        [--notebook-out DIR --notebook-cell kaggle/notebook_cell.py]

Building is idempotent: files the bundle does not consist of are removed, checkpoints already in place are kept;
only build_info.json's build time changes.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Sequence

from ..checkpoint import sha256
from ..constants import MANIFEST_NAME
from ..errors import HMSInputError
from ..files import atomic_path, write_text_atomic
from ..manifest import Manifest, load_manifest, save_manifest

log = logging.getLogger(__name__)
METADATA_NAME = "dataset-metadata.json"
# The Kaggle image ships these (built for its CUDA and Python); a wheel of them would replace them and break it.
FORBIDDEN = frozenset({"torch", "torchvision", "torchaudio", "numpy", "scipy", "pandas", "pyarrow"})
BUILD_INFO_NAME = "build_info.json"
KERNEL_METADATA_NAME = "kernel-metadata.json"
NOTEBOOK_NAME = "hms-infer-submit.ipynb"
COMPETITION = "hms-harmful-brain-activity-classification"
PLACEHOLDER_USER = "<your-kaggle-username>"
# Kaggle takes one license per dataset, from its own list, which has Apache 2.0 but not MIT: `other` is the one
# whose terms the description states.
LICENSES = {"hms_infer": "MIT", "timm": "Apache-2.0", "nnAudio": "MIT"}
METADATA_TEMPLATE = {
    "title": "hms-infer offline bundle", "id": f"{PLACEHOLDER_USER}/hms-infer-bundle",
    "licenses": [{"name": "other"}],
    "description": "Offline install of hms_infer for the HMS competition notebook. Licenses of what it holds: "
                   + ", ".join(f"{k} {v}" for k, v in LICENSES.items()) + " (the wheels under wheels/, each with its "
                   "license file); the checkpoints under weights/ are under the terms of their authors."}
BUNDLED_HEADER = """\
# hms_infer weights manifest, bundled by build_wheels.sh: members[].checkpoint is relative to this file's folder
# (the bundle root) and sha256 was verified when the bundle was built.
"""
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)$")


def normalize(name: str) -> str:
    """A project name as wheel file names spell it: lower case, runs of `-_.` as `_` (`nnAudio` -> `nnaudio`)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def read_pins(path: str | Path) -> dict[str, str]:
    """`name==version` lines (comments and blank lines skipped) -> {normalized name: version}."""
    pins = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PIN.match(line)
        if not match:
            raise HMSInputError(f"{path}:{n}: expected name==version, got {line!r}")
        pins[normalize(match[1])] = match[2]
    return pins


def check_wheels(wheels: Sequence[Path], expected: dict[str, str]) -> None:
    """Fail unless `wheels` are exactly the `expected` {name: version}, each pure python (py3-none-any) and none
    of them a package the Kaggle image provides (`FORBIDDEN`)."""
    found: dict[str, str] = {}
    for wheel in wheels:
        parts = wheel.name[:-len(".whl")].split("-")
        if not wheel.name.endswith(".whl") or len(parts) not in (5, 6):
            raise HMSInputError(f"{wheel}: not a wheel file name")
        name, version, (python, abi, platform) = normalize(parts[0]), parts[1], parts[-3:]
        if name in FORBIDDEN:
            raise HMSInputError(f"{wheel.name}: the Kaggle image provides {name}; bundling it would replace it")
        if "py3" not in python.split(".") or abi != "none" or platform != "any":
            raise HMSInputError(f"{wheel.name}: not a pure-python (py3-none-any) wheel")
        found[name] = version
    if found != expected:
        raise HMSInputError(f"wheels {sorted(f'{k}=={v}' for k, v in found.items())} differ from the expected "
                            f"{sorted(f'{k}=={v}' for k, v in expected.items())}")


def _copy_verified(src: Path, dst: Path, digest: str) -> None:
    """Copy `src` to `dst` atomically unless `dst` already has `digest`; verify the copy."""
    if dst.is_file() and sha256(dst) == digest:
        return
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
        if sha256(tmp) != digest:
            raise HMSInputError(f"{src}: the copy at {dst} does not hash to {digest}")


def bundled_path(checkpoint: str) -> str:
    """Where a manifest's checkpoint goes in the bundle: `weights/<its relative path>` (subfolders kept: the
    presets' checkpoints share file names), or `weights/<file name>` for an absolute or `..` path."""
    path = PurePosixPath(Path(checkpoint).as_posix())
    if path.is_absolute() or ".." in path.parts:
        path = PurePosixPath(path.name)
    return f"weights/{path}"


def bundle_weights(manifest: Manifest, weights_dir: Path | None, out: Path) -> Manifest:
    """The manifest with every checkpoint at its `bundled_path`, copied there from `weights_dir` (sha256 verified
    against the manifest, filled in where it has none). Without `weights_dir` nothing is copied."""
    members, sources = [], {}
    for m in manifest.members:
        dest = bundled_path(m.checkpoint)
        src = m.checkpoint_path(weights_dir) if weights_dir is not None else Path(m.checkpoint)
        if sources.setdefault(dest, src.resolve()) != src.resolve():
            raise HMSInputError(f"{src} and {sources[dest]} would both be bundled as {dest}; rename one")
        digest = m.sha256
        if weights_dir is not None:
            if not src.is_file():
                raise HMSInputError(f"{src}: checkpoint of member {m.name} not found")
            digest = sha256(src)
            if m.sha256 and m.sha256 != digest:
                raise HMSInputError(f"{src}: sha256 {digest} does not match the manifest's {m.sha256} "
                                    f"(member {m.name})")
            _copy_verified(src, out / dest, digest)
        members.append(replace(m, checkpoint=dest, sha256=digest))
    return replace(manifest, members=members)


def _remove_unlisted(folder: Path, keep: set[str]) -> None:
    """Delete everything under `folder` but the `keep` paths (relative, posix), what they hold and their parents."""
    if not folder.is_dir():
        return
    for entry in sorted(folder.rglob("*"), reverse=True):  # children before their folders
        rel = entry.relative_to(folder).as_posix()
        if any(rel == k or rel.startswith(f"{k}/") or k.startswith(f"{rel}/") for k in keep):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def choose_manifest(manifest: Path | None, weights_dir: Path | None, default: Path) -> Path:
    """`weights_dir`'s weights_manifest.yaml if it has one, else the explicit `manifest`, else `default`."""
    if weights_dir is not None and (weights_dir / MANIFEST_NAME).is_file():
        return weights_dir / MANIFEST_NAME
    return manifest if manifest is not None else default


def build_bundle(out: Path, wheels: Path, requirements: Path, kernel: Path, manifest_path: Path,
                 weights_dir: Path | None = None, commit: str = "unknown") -> Manifest:
    """Assemble the bundle in `out` from the staged wheels folder, kernel.py and the manifest (module docstring)."""
    staged = sorted(wheels.glob("*.whl"))
    version = _hms_infer_version(staged)
    check_wheels(staged, {normalize("hms_infer"): version, **read_pins(requirements)})
    manifest = bundle_weights(load_manifest(manifest_path), weights_dir, out)
    for wheel in staged:
        _copy_verified(wheel, out / "wheels" / wheel.name, sha256(wheel))
    _copy_verified(kernel, out / "kernel.py", sha256(kernel))
    save_manifest(manifest, out / MANIFEST_NAME, BUNDLED_HEADER)
    if not (out / METADATA_NAME).is_file():
        write_text_atomic(out / METADATA_NAME, json.dumps(METADATA_TEMPLATE, indent=2) + "\n")
    write_build_info(out, version, commit)
    checkpoints = {m.checkpoint for m in manifest.members} if weights_dir is not None else set()
    _remove_unlisted(out, {"kernel.py", MANIFEST_NAME, METADATA_NAME, BUILD_INFO_NAME, *checkpoints,
                           *(f"wheels/{w.name}" for w in staged)})
    return manifest


def write_build_info(out: Path, version: str, commit: str, built: datetime | None = None) -> dict:
    """The bundle's identity: hms_infer `version`, the git `commit` it was built from, the build time (UTC) and
    the bundled manifest's sha256."""
    built = built or datetime.now(timezone.utc)
    info = {"hms_infer": version, "commit": commit, "built_utc": built.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "manifest_sha256": sha256(out / MANIFEST_NAME)}
    write_text_atomic(out / BUILD_INFO_NAME, json.dumps(info, indent=2) + "\n")
    return info


def notebook(cell: str) -> dict:
    """A valid nbformat 4.5 notebook with one code cell holding `cell`."""
    return {"cells": [{"cell_type": "code", "execution_count": None, "id": "hms-infer-submit", "metadata": {},
                       "outputs": [], "source": cell.splitlines(keepends=True)}],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def kernel_metadata(dataset_id: str) -> dict:
    """`kaggle kernels push` metadata: the notebook, GPU on, internet off, the competition and the bundle
    `dataset_id` (`owner/slug`) as sources; its id is the bundle owner's `hms-infer-submit`."""
    owner = dataset_id.split("/")[0]
    return {"id": f"{owner}/hms-infer-submit", "title": "HMS Infer Submit", "code_file": NOTEBOOK_NAME,
            "language": "python", "kernel_type": "notebook", "is_private": True, "enable_gpu": True,
            "enable_internet": False, "dataset_sources": [dataset_id], "competition_sources": [COMPETITION],
            "kernel_sources": [], "model_sources": []}


def build_notebook(folder: Path, cell: Path, dataset_id: str) -> None:
    """The notebook folder: `NOTEBOOK_NAME` from the `cell` script, `kernel-metadata.json` (an existing one is
    kept); nothing else."""
    write_text_atomic(folder / NOTEBOOK_NAME, json.dumps(notebook(cell.read_text()), indent=1) + "\n")
    if not (folder / KERNEL_METADATA_NAME).is_file():
        write_text_atomic(folder / KERNEL_METADATA_NAME, json.dumps(kernel_metadata(dataset_id), indent=2) + "\n")
    _remove_unlisted(folder, {NOTEBOOK_NAME, KERNEL_METADATA_NAME})


def _hms_infer_version(wheels: Sequence[Path]) -> str:
    versions = [w.name.split("-")[1] for w in wheels if normalize(w.name.split("-")[0]) == "hms_infer"]
    if len(versions) != 1:
        raise HMSInputError(f"expected one hms_infer wheel among {[w.name for w in wheels]}")
    return versions[0]


def _size(path: Path) -> str:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    return f"{total / 2**20:.1f} MiB"


def bundle(*, out: str | Path, wheels: str | Path, requirements: str | Path, kernel: str | Path,
           weights_dir: str | Path | None = None, manifest: str | Path | None = None,
           default_manifest: str | Path = MANIFEST_NAME, commit: str = "unknown",
           notebook_out: str | Path | None = None, notebook_cell: str | Path | None = None) -> Manifest:
    """The bundle in `out` (`build_bundle`, the manifest chosen by `choose_manifest`) and, with `notebook_out`, the
    notebook folder; logs what went in; returns the bundled manifest."""
    if notebook_out is not None and notebook_cell is None:
        raise HMSInputError("--notebook-out needs --notebook-cell (the notebook's one cell)")
    out, weights_dir = Path(out), Path(weights_dir) if weights_dir is not None else None
    manifest_path = choose_manifest(Path(manifest) if manifest else None, weights_dir, Path(default_manifest))
    bundled = build_bundle(out, Path(wheels), Path(requirements), Path(kernel), manifest_path, weights_dir, commit)
    if notebook_out is not None:
        dataset_id = json.loads((out / METADATA_NAME).read_text()).get("id", METADATA_TEMPLATE["id"])
        build_notebook(Path(notebook_out), Path(notebook_cell), dataset_id)
    for wheel in sorted((out / "wheels").iterdir()):
        log.info(f"  wheels/{wheel.name} ({_size(wheel)})")
    log.info(f"  {MANIFEST_NAME}: {len(bundled.members)} members from {manifest_path}")
    if weights_dir is None:
        log.info(f"  no --weights-dir: the bundle holds no checkpoints; the manifest expects them at "
                 f"{', '.join(m.checkpoint for m in bundled.members)}")
    else:
        log.info(f"  weights/: {len({m.checkpoint for m in bundled.members})} checkpoints ({_size(out / 'weights')})")
    log.info(f"  {BUILD_INFO_NAME}: {json.dumps(json.loads((out / BUILD_INFO_NAME).read_text()))}")
    if notebook_out is not None:
        log.info(f"  notebook: {notebook_out} ({NOTEBOOK_NAME}, {KERNEL_METADATA_NAME}; kaggle kernels push -p "
                 f"{notebook_out})")
    log.info(f"build_wheels: {out} ({_size(out)})")
    return bundled
