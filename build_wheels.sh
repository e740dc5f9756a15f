#!/usr/bin/env bash
# Build the Kaggle offline bundle: the folder to upload as one Kaggle Dataset. See --help.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    cat <<EOF
Usage: ./build_wheels.sh [--out DIR] [--notebook-out DIR] [--weights-dir DIR] [--manifest PATH] [--cache DIR]

Builds the folder to upload as one Kaggle Dataset (kaggle datasets create -p DIR -r zip):
  wheels/                a wheel of hms_infer (this checkout) and the pure-python wheels pinned in
                         kaggle/bundle-requirements.txt (timm, nnAudio); never torch, torchvision, numpy, scipy,
                         pandas or pyarrow: the Kaggle image has them, and replacing them breaks it
  kernel.py              the notebook script (python /kaggle/input/<bundle>/kernel.py, internet off)
  weights_manifest.yaml  the manifest, pointing at weights/<its checkpoint paths>, sha256 filled in
  weights/               the manifest's checkpoints, verified against their sha256 (only with --weights-dir)
  dataset-metadata.json  template for kaggle datasets create; an existing one is kept (set your id once)
  build_info.json        the bundle's identity, printed by kernel.py: hms_infer version, git commit, build time,
                         the manifest's sha256
and the notebook folder, for kaggle kernels push -p DIR:
  kernel-metadata.json   notebook, GPU on, internet off, the competition and the bundle (dataset-metadata.json's
                         id) as sources; an existing one is kept
  hms-infer-submit.ipynb one cell (kaggle/notebook_cell.py): runs kernel.py from wherever the bundle is mounted
                         under /kaggle/input and checks that /kaggle/working/submission.csv exists
Re-running gives the same folders (but build_info.json's time): files they do not consist of are removed.

Options:
  --out DIR          the bundle folder (default: dist/kaggle_dataset in the repo)
  --notebook-out DIR the notebook folder (default: dist/kaggle_notebook in the repo)
  --weights-dir DIR  folder of the checkpoints; the manifest's checkpoint paths are relative to it
  --manifest PATH    the manifest when the weights folder has no weights_manifest.yaml
                     (default: the repo's weights_manifest.yaml)
  --cache DIR        keeps the downloaded wheels, so that a rebuild needs no network
                     (default: \${XDG_CACHE_HOME:-~/.cache}/hms_infer/wheels)
  -h, --help         this text

Environment:
  PYTHON  the interpreter to build with: needs pip, setuptools and hms_infer's dependencies
          (default: the repo's .venv/bin/python, made by 'make venv')
EOF
}

die() { echo "build_wheels: error: $*" >&2; exit 2; }

OUT="$ROOT/dist/kaggle_dataset"
NOTEBOOK_OUT="$ROOT/dist/kaggle_notebook"
WEIGHTS_DIR=""
MANIFEST=""
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/hms_infer/wheels"
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --out|--notebook-out|--weights-dir|--manifest|--cache)
            [ $# -ge 2 ] || die "$1 needs a value"
            case "$1" in
                --out) OUT="$2" ;;
                --notebook-out) NOTEBOOK_OUT="$2" ;;
                --weights-dir) WEIGHTS_DIR="$2" ;;
                --manifest) MANIFEST="$2" ;;
                --cache) CACHE="$2" ;;
            esac
            shift 2 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || command -v "$PY" >/dev/null || die "no python at $PY (run 'make venv' or set PYTHON)"
[ -z "$WEIGHTS_DIR" ] || [ -d "$WEIGHTS_DIR" ] || die "--weights-dir $WEIGHTS_DIR: not a folder"
[ -z "$MANIFEST" ] || [ -f "$MANIFEST" ] || die "--manifest $MANIFEST: not a file"
REQUIREMENTS="$ROOT/kaggle/bundle-requirements.txt"

STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/wheels" "$CACHE"

# The pinned wheels: from the cache when it has them, else from the index (then cached).
PIP_DOWNLOAD=("$PY" -m pip download -q --no-deps --only-binary=:all: --disable-pip-version-check
              -r "$REQUIREMENTS" -d "$STAGE/wheels")
if ! "${PIP_DOWNLOAD[@]}" --no-index --find-links "$CACHE" >/dev/null 2>&1; then
    rm -f "$STAGE"/wheels/*.whl
    "${PIP_DOWNLOAD[@]}" || die "could not download the wheels pinned in $REQUIREMENTS (network? versions?)"
    cp "$STAGE"/wheels/*.whl "$CACHE"/
fi

# hms_infer, from a clean copy of the sources (a stale build/ could add removed modules), with fixed timestamps
# so that the same sources give the same wheel; the interpreter's setuptools builds it when it has one >= 61.
mkdir -p "$STAGE/src"
cp -R "$ROOT/setup.cfg" "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/hms_infer" "$STAGE/src/"
find "$STAGE/src" -name __pycache__ -prune -exec rm -rf {} +
ISOLATION=()
if "$PY" -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 61)' 2>/dev/null; then
    ISOLATION=(--no-build-isolation)
fi
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-315532800}" "$PY" -m pip wheel -q --no-deps --disable-pip-version-check \
    ${ISOLATION[@]+"${ISOLATION[@]}"} "$STAGE/src" -w "$STAGE/wheels" || die "could not build the hms_infer wheel"

# The bundle's identity: the commit, "-dirty" when tracked files differ from it.
COMMIT="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
if [ "$COMMIT" != unknown ] && [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    COMMIT="$COMMIT-dirty"
fi

ARGS=(--out "$OUT" --wheels "$STAGE/wheels" --requirements "$REQUIREMENTS" --kernel "$ROOT/kernel.py"
      --default-manifest "$ROOT/weights_manifest.yaml" --commit "$COMMIT"
      --notebook-out "$NOTEBOOK_OUT" --notebook-cell "$ROOT/kaggle/notebook_cell.py")
[ -z "$WEIGHTS_DIR" ] || ARGS+=(--weights-dir "$WEIGHTS_DIR")
[ -z "$MANIFEST" ] || ARGS+=(--manifest "$MANIFEST")
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m hms_infer bundle "${ARGS[@]}"
