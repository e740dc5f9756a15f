#!/usr/bin/env bash
# `make gpu-check`: on a machine with a CUDA GPU and the repo's dependencies, the GPU tests (tests/gpu) and the
# benchmarks, in one command (~6 minutes on an H100). Results land in $OUT (default gpu_check_out/):
# gpu_tests.log, gpu_tests.json, bench_*.json and summary.md (the README's performance table rows).
# GPU_PY picks the interpreter (default python3); HMS_GPU_CHECK_COMPILE=0 skips the --compile benchmark. On an
# offline machine without nnAudio, put its wheel in $WHEELS (default .whl/: `pip download nnAudio==0.3.4 --no-deps
# -d .whl`): it is installed into a temporary folder first on PYTHONPATH.
set -u
cd "$(dirname "$0")"
PY=${GPU_PY:-python3}
OUT=${OUT:-gpu_check_out}
WHEELS=${WHEELS:-.whl}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HMS_GPU_CHECK_OUT="$OUT"
if ! "$PY" -c "import nnAudio" 2>/dev/null && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    site=$(mktemp -d)
    "$PY" -m pip install -q --no-index --no-deps --target "$site" "$WHEELS"/*.whl && export PYTHONPATH="$site:$PYTHONPATH"
fi
"$PY" -c "import torch, timm, nnAudio, triton; assert torch.cuda.is_available(), 'no CUDA device is visible'" || {
    echo "gpu-check: needs torch with a visible CUDA GPU, timm, nnAudio and triton (GPU_PY=$PY)" >&2; exit 2; }
status=0
step() { echo "== gpu-check: $*"; "$@" || { echo "== gpu-check: FAILED: $*"; status=1; }; }
ALL=cfg_1,cfg_2,cfg_3,cfg_4,cfg_5,cfg_6,cfg_7,cfg_8
echo "== gpu-check: tests/gpu"
"$PY" -m pytest -q -rs -p no:cacheprovider tests/gpu 2>&1 | tee "$OUT/gpu_tests.log"
[ "${PIPESTATUS[0]}" = 0 ] || { echo "== gpu-check: FAILED: tests/gpu"; status=1; }
step "$PY" -m hms_infer bench --presets cfg_1,cfg_5 --rows 128 --reference --json "$OUT/bench_cfg1_cfg5.json"
step "$PY" -m hms_infer bench --presets "$ALL" --rows 64 --reference --json "$OUT/bench_8_presets.json"
if [ "${HMS_GPU_CHECK_COMPILE:-1}" = 1 ]; then
    step "$PY" -m hms_infer bench --presets cfg_1,cfg_5 --rows 128 --compile --json "$OUT/bench_cfg1_cfg5_compile.json"
fi
"$PY" - "$OUT" <<'PY' | tee "$OUT/summary.md"
import json, sys
from pathlib import Path
print("| run | GPU | ms/EEG end to end | steady ms/EEG | reference ms/EEG | speed-up | max abs dprob | peak MB | GPU idle |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for path in sorted(Path(sys.argv[1]).glob("bench_*.json")):
    r = json.loads(path.read_text())
    ref = f"{r['reference_ms_per_eeg']:.1f}" if "speedup" in r else "-"
    speed = f"{r['speedup']:.2f}x" if "speedup" in r else "-"
    diff = f"{r['max_abs_prob_diff']:.1e}" if "speedup" in r else "-"
    name = f"{len(r['members'])} members x {len(r['views'])} views, batch {r['batch_size']}, {r['precision']}" + \
        (", compiled" if r["compile"] else "")
    print(f"| {name} | {r['device']} | {r['ms_per_eeg']:.1f} | {r['steady_ms_per_eeg']:.1f} | {ref} | {speed} | "
          f"{diff} | {r['peak_memory_mb']:.0f} | {100 * r['gpu_idle_fraction']:.0f}% |")
eight = Path(sys.argv[1]) / "bench_8_presets.json"
if eight.is_file():  # pseudo-labels: each row runs one fold's members, the 8 presets x 4 views
    r = json.loads(eight.read_text())
    print(f"\npseudo-labels on {r['device']}: {r['steady_ms_per_eeg']:.0f} s per 1,000 rows "
          f"(8 presets x {len(r['views'])} views, {r['precision']}, steady)")
PY
echo "== gpu-check: $([ $status = 0 ] && echo passed || echo FAILED); results in $OUT/"
exit $status
