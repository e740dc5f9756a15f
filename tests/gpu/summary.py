"""`gpu_check.sh`'s summary.md from the result files in its output folder (run after each step: what a stopped run
measured is summarised too): the tests' outcomes and key figures, and the README's performance table rows.

    python tests/gpu/summary.py OUT > OUT/summary.md
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def tests_section(path: Path) -> list[str]:
    r = json.loads(path.read_text())
    tests = r.get("tests", {})
    count = {o: sum(t["outcome"] == o for t in tests.values()) for o in ("passed", "failed", "skipped")}
    lines = [f"## tests/gpu on {r.get('device', '?')} ({r.get('mode')}): {count['passed']} passed, "
             f"{count['failed']} failed, {count['skipped']} skipped", ""]
    lines += [f"- FAILED {name.split('::')[-1]}: {t.get('error', '')}" for name, t in tests.items()
              if t["outcome"] == "failed"]
    for name, t in tests.items():
        m = t.get("measured", {})
        short = name.split("::")[-1]
        if "geomean_speedup" in m:
            lines.append(f"- fused WaveNet level vs the eager gate convs, fp16: {m['geomean_speedup']:.2f}x (geomean "
                         f"over C; target >= 5x)")
        if short.startswith("test_low_precision"):
            for member, v in m.items():
                lows = {k: x for k, x in v.items() if isinstance(x, dict)}
                lines += [f"- {member} {p} vs fp32: max |dprob| {x['max_abs_dprob']:.2e}, max KL {x['max_kl']:.2e}"
                          for p, x in lows.items()]
        if short.startswith("test_reference_tiny_model"):
            lines += [f"- reference tiny model, {mode}: max |dlogit| {max(v.values()):.2e}" for mode, v in m.items()]
    return lines + [""]


def bench_rows(out: Path) -> list[str]:
    rows = ["| run | device | ms/EEG end to end | steady ms/EEG | reference ms/EEG | speed-up | max abs dprob "
            "| peak MB | device idle |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for path in sorted(out.glob("bench_*.json")):
        r = json.loads(path.read_text())
        ref = "speedup" in r
        name = (f"{len(r['members'])} members x {len(r['views'])} views, {r['rows']} rows, batch {r['batch_size']}, "
                f"{r['precision']}, WaveNet {r['wave_backend']}" + (", compiled" if r["compile"] else ""))
        rows.append(f"| {name} | {r['device']} | {r['ms_per_eeg']:.1f} | {r['steady_ms_per_eeg']:.1f} | "
                    + (f"{r['reference_ms_per_eeg']:.1f} | {r['speedup']:.2f}x | {r['max_abs_prob_diff']:.1e}" if ref
                       else "- | - | -")
                    + f" | {r['peak_memory_mb']:.0f} | {100 * r['gpu_idle_fraction']:.0f}% |")
    eight = out / "bench_8_presets.json"
    if eight.is_file():  # pseudo-labels: each row runs one fold's members, the 8 presets x 4 views
        r = json.loads(eight.read_text())
        rows += ["", f"pseudo-labels on {r['device']}: {r['steady_ms_per_eeg']:.0f} s per 1,000 rows "
                     f"({len(r['members'])} members x {len(r['views'])} views, {r['precision']}, steady)"]
    return rows


def main(out: Path) -> str:
    lines = []
    if (out / "gpu_tests.json").is_file():
        lines += tests_section(out / "gpu_tests.json")
    if any(out.glob("bench_*.json")):
        lines += ["## bench", ""] + bench_rows(out)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(main(Path(sys.argv[1])))
