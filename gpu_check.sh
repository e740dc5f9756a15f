#!/usr/bin/env bash
# The GPU check in two stages, each one command that fits a lent GPU machine's 10-minute call (see --help).
set -u
cd "$(dirname "$0")"

usage() {
    cat <<EOF
Usage: ./gpu_check.sh [tests] [bench] [--dry-run]

  tests      tests/gpu: the fused kernel against eager and its speed (every channel count; candidate tiles), fp16
             and bf16 against fp32 (TF32 off), the reference tiny model, autocast dtypes and ranges, a T4's memory,
             OOM recovery, the end-to-end loop with its padded last batch and sync points, two launching threads,
             device choice; each test at most HMS_GPU_TEST_TIMEOUT seconds (default 150). ~3-5 min on an H100.
  bench      bench cfg_1 + cfg_5 against the reference path (96 rows), the 8 presets without it (48 rows, batch
             16); with HMS_GPU_CHECK_COMPILE=1 also cfg_1 + cfg_5 with --compile (minutes more). ~3-4 min.
  (neither)  both stages, one after the other (make gpu-check).
  --dry-run  the same stages on the CPU with tiny models (the tests that need a GPU skip): proves the scripts, the
             arguments and the result files; CI runs it (tests/test_gpu_check.py).

Results land in \$OUT (default gpu_check_out/), written as each test or bench ends, so a stopped run keeps what
it measured: gpu_tests.log, gpu_tests.json (each test's outcome, time and measurements), bench_*.json, summary.md.
Each bench step runs at most HMS_GPU_STEP_TIMEOUT seconds (default 300), the tests HMS_GPU_TESTS_TIMEOUT (480).
GPU_PY picks the interpreter (default python3: needs torch, timm, nnAudio, triton, pandas, pyarrow, pytest). On an
offline machine without nnAudio, put its wheel in \$WHEELS (default .whl/:
pip download nnAudio==0.3.4 --no-deps -d .whl); it is installed into a temporary folder first on PYTHONPATH.
EOF
}

STAGES=()
DRY=0
for arg in "$@"; do
    case "$arg" in
        tests|bench) STAGES+=("$arg") ;;
        --dry-run) DRY=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; echo "gpu-check: unknown argument: $arg" >&2; exit 2 ;;
    esac
done
[ ${#STAGES[@]} -gt 0 ] || STAGES=(tests bench)

PY=${GPU_PY:-python3}
OUT=${OUT:-gpu_check_out}
WHEELS=${WHEELS:-.whl}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HMS_GPU_CHECK_OUT="$OUT"
if ! "$PY" -c "import nnAudio" 2>/dev/null && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    site=$(mktemp -d)
    "$PY" -m pip install -q --no-index --no-deps --target "$site" "$WHEELS"/*.whl && export PYTHONPATH="$site:$PYTHONPATH"
fi
if [ $DRY = 1 ]; then
    export HMS_GPU_CHECK_DRY_RUN=1
    "$PY" -c "import torch, timm, nnAudio, pytest" || { echo "gpu-check: needs torch, timm, nnAudio, pytest" >&2; exit 2; }
else
    "$PY" -c "import torch, timm, nnAudio, triton, pytest; assert torch.cuda.is_available(), 'no CUDA device is visible'" || {
        echo "gpu-check: needs torch with a visible CUDA GPU, timm, nnAudio, triton and pytest (GPU_PY=$PY)" >&2; exit 2; }
fi

STEP_TIMEOUT=${HMS_GPU_STEP_TIMEOUT:-300}  # seconds per step: a hang in C code (a sync, a deadlock) ends here
status=0
summary() { "$PY" tests/gpu/summary.py "$OUT" > "$OUT/.summary.md" && mv "$OUT/.summary.md" "$OUT/summary.md"; }
step() { echo "== gpu-check: $*"; timeout -k 10 "$STEP_TIMEOUT" "$@" || { echo "== gpu-check: FAILED ($?): $*"; status=1; }; summary; }

stage_tests() {
    echo "== gpu-check: tests/gpu$([ $DRY = 1 ] && echo ' (dry run)')"
    timeout -k 10 "${HMS_GPU_TESTS_TIMEOUT:-480}" "$PY" -m pytest -q -rs -p no:cacheprovider tests/gpu 2>&1 |
        tee "$OUT/gpu_tests.log"
    [ "${PIPESTATUS[0]}" = 0 ] || { echo "== gpu-check: FAILED: tests/gpu"; status=1; }
    summary
}

stage_bench() {
    local pair eight
    if [ $DRY = 1 ]; then  # two random tiny members (no checkpoint: bench draws random weights)
        cat > "$OUT/dry_manifest.yaml" <<'YAML'
version: 1
tta: [none]
members:
  - {name: tiny0, checkpoint: random0.pt, arch: {backbone: test_efficientnet, backbone_comp: test_efficientnet, wavenet: {n_blocks: 3, out_channels: 8}}}
  - {name: tiny1, checkpoint: random1.pt, arch: {backbone: test_efficientnet, backbone_comp: test_efficientnet, wavenet: {n_blocks: 3, out_channels: 8}}}
YAML
        pair=(--manifest "$OUT/dry_manifest.yaml" --rows 3 --batch-size 2 --device cpu --num-workers 1)
        eight=(--manifest "$OUT/dry_manifest.yaml" --rows 2 --batch-size 1 --device cpu --num-workers 1)
    else
        pair=(--presets cfg_1,cfg_5 --rows 96)
        eight=(--presets cfg_1,cfg_2,cfg_3,cfg_4,cfg_5,cfg_6,cfg_7,cfg_8 --rows 48 --batch-size 16)
    fi
    step "$PY" -m hms_infer bench "${pair[@]}" --reference --json "$OUT/bench_cfg1_cfg5.json"
    step "$PY" -m hms_infer bench "${eight[@]}" --json "$OUT/bench_8_presets.json"
    if [ "${HMS_GPU_CHECK_COMPILE:-0}" = 1 ]; then
        step "$PY" -m hms_infer bench "${pair[@]}" --compile --json "$OUT/bench_cfg1_cfg5_compile.json"
    fi
}

for stage in "${STAGES[@]}"; do
    "stage_$stage"
done
cat "$OUT/summary.md" 2>/dev/null
echo "== gpu-check: $([ $status = 0 ] && echo passed || echo FAILED); results in $OUT/"
exit $status
