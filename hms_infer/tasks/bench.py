"""`python -m hms_infer bench`: the real end-to-end path (parquet -> CSV) on synthetic rows, timed stage by stage.

It writes N synthetic rows in the Kaggle layout to a temporary folder, builds the members (the presets with
random weights, or a manifest's checkpoints) and runs `Ensemble.predict_rows` with the submission written, as
the main command does. Reported per EEG: the end-to-end time (the first batch's cuDNN benchmarking, kernel
autotuning and `--compile` included) and the steady time after it; per stage, from one profiled batch: read +
preprocess (one worker's time per row), host -> device, each branch of each member (spectrogram, STFT, WaveNet
1-D, 2-D backbone on the WaveNet image; device time, from CUDA events), blend. Also the devices' peak memory and
the fraction of the wall time they sat idle. `--reference` runs the same rows through the plain path (eager,
unmerged convs, each view its own forward with its own spectrogram branch) and compares.

Random weights give logits near 0; `head_all` is scaled so that they spread like a trained model's
(`members.random_model`), which makes the fast/reference probability difference meaningful.
"""
from __future__ import annotations

import json
import logging
import resource
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..data import Competition
from ..ensemble import Ensemble
from ..errors import HMSInputError
from ..files import check_writable, write_text_atomic
from ..loader import ModelInputs, _collate
from ..manifest import Manifest, Member, resolve_manifest
from ..members import copy_members, load_members
from ..models import BRANCHES, HMSModel, resolve_arch
from ..options import RunOptions
from ..runtime import DeviceTimer, RunStats, device_name, resolve_devices, resolve_precision
from ..submission import to_submission, write_submission
from ..synthetic import write_competition

log = logging.getLogger(__name__)


def bench_manifest(presets: Sequence[str] = ("cfg_1", "cfg_5"), manifest: str | Path | None = None,
                   weights_dir: str | Path | None = None) -> tuple[Manifest, Path]:
    """The members to bench and their weights folder: a manifest's (`resolve_manifest`), or one random-weight
    member per preset (all four views)."""
    if manifest is not None:
        spec, weights_dir, _ = resolve_manifest(manifest, weights_dir)
        return spec, weights_dir
    if not presets:
        raise HMSInputError("bench: name at least one preset (--presets cfg_1,cfg_5) or a --manifest")
    return Manifest([Member(name=p, checkpoint="", arch=p) for p in presets]), Path(weights_dir or ".")


def _peak_mb(devices: list[torch.device]) -> float:
    cuda = [d for d in devices if d.type == "cuda"]
    if cuda:
        return max(torch.cuda.max_memory_allocated(d) for d in cuda) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # host peak RSS (Linux: KiB)


def run_end_to_end(ens: Ensemble, data: Path, out: Path, batch_size: int, num_workers: int | str) -> dict:
    """Read the folder, predict every row, write the submission; times and probabilities."""
    for d in ens.devices:
        if d.type == "cuda":
            torch.cuda.synchronize(d)
            torch.cuda.reset_peak_memory_stats(d)
    stats = RunStats()
    t0 = time.perf_counter()
    comp = Competition(data, "test")
    probs, _ = ens.predict_rows(comp, None, batch_size, num_workers, progress=False, stats=stats, strict=True)
    write_submission(to_submission([r.eeg_id for r in comp.rows], probs), out)
    wall = time.perf_counter() - t0
    n = len(comp)
    steady = (wall - stats.first_batch_s) / max(n - min(batch_size, n), 1) if n > batch_size else wall / n
    return {"probs": probs, "rows": n, "ms_per_eeg": 1e3 * wall / n, "rows_per_s": n / wall,
            "steady_ms_per_eeg": 1e3 * steady, "first_batch_s": stats.first_batch_s,
            "gpu_idle_fraction": stats.device_idle_fraction(), "peak_memory_mb": _peak_mb(ens.devices)}


class BranchTimer:
    """Forward hooks timing each branch of a model on its device (events on CUDA: no synchronisation)."""

    def __init__(self, model: HMSModel, device: torch.device):
        self.pending: dict[str, list] = defaultdict(list)
        self.handles = []
        for stage, modules in model.branches().items():
            for module in modules:
                stack: list[DeviceTimer] = []

                def pre(_m, _args, stack=stack):
                    stack.append(DeviceTimer(device))
                    stack[-1].start()

                def post(_m, _args, _out, stack=stack, stage=stage):
                    self.pending[stage].append(stack.pop().stop())
                self.handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def seconds(self) -> dict[str, float]:
        """Total seconds per branch (call after the device work is done); removes the hooks."""
        for h in self.handles:
            h.remove()
        return {stage: sum(f() for f in self.pending[stage]) for stage in BRANCHES}


def _sync(devices: list[torch.device]) -> None:
    for d in devices:
        if d.type == "cuda":
            torch.cuda.synchronize(d)


def profile_stages(ens: Ensemble, comp: Competition, batch_size: int) -> dict[str, float]:
    """ms per EEG of each stage, from one batch of `comp` (after a warm-up pass of the same batch)."""
    rows = list(range(min(batch_size, len(comp))))
    n = len(rows)
    inputs = ModelInputs(comp, rows)
    t = time.perf_counter()
    items = [inputs[k] for k in range(n)]
    read_s = time.perf_counter() - t
    batch = _collate(items)
    if isinstance(batch, HMSInputError):
        raise batch
    _, electrodes, spect, _ = batch
    cuda = [d for d in ens.devices if d.type == "cuda"]
    if cuda:
        electrodes, spect = electrodes.pin_memory(), spect.pin_memory()
    eager = ens.eager()  # forward hooks need uncompiled forwards
    if cuda:
        eager.member_logits(electrodes, spect)  # warm-up: cuDNN benchmark, autotune
    _sync(ens.devices)
    t = time.perf_counter()
    for d in ens.devices:
        electrodes.to(d, non_blocking=True), spect.to(d, non_blocking=True)
    _sync(ens.devices)
    h2d_s = time.perf_counter() - t
    timers = [BranchTimer(m.model, m.device) for m in ens.members]
    t = time.perf_counter()
    logits = eager.member_logits(electrodes, spect)
    members_s = time.perf_counter() - t
    t = time.perf_counter()
    eager.blend(logits)
    blend_s = time.perf_counter() - t
    stages = {"read_preprocess": read_s, "host_to_device": h2d_s}
    for m, timer in zip(ens.members, timers):
        stages.update({f"{m.name}/{k}": v for k, v in timer.seconds().items()})
    stages.update({"members_total": members_s, "blend": blend_s})
    return {k: 1e3 * v / n for k, v in stages.items()}


def bench(*, presets: Sequence[str] = ("cfg_1", "cfg_5"), manifest: str | Path | None = None,
          weights_dir: str | Path | None = None, rows: int | None = None, options: RunOptions | None = None,
          reference: bool = False, json_path: str | Path | None = None, **run: Any) -> dict:
    """Run the benchmark (`options`, or its fields by keyword, say how); log a table and return (and optionally
    write as JSON) the results."""
    options = RunOptions.of(options, **run)
    if json_path is not None:
        check_writable(json_path)
    if rows is not None and rows < 1:
        raise HMSInputError(f"--rows must be positive, got {rows}")
    spec, weights_dir = bench_manifest(presets, manifest, weights_dir)
    for m in spec.members:
        try:
            resolve_arch(m.arch)
        except ValueError as e:
            raise HMSInputError(f"bench: {e}") from None
    devices = resolve_devices(options.device)
    precision = resolve_precision(options.precision, devices)
    views = options.views or spec.views
    t = time.perf_counter()
    fast = Ensemble(load_members(spec, weights_dir, devices, random_missing=True), views, spec.blend, precision,
                    compile=options.compile)
    load_s = time.perf_counter() - t
    size = fast.batch_size(options.batch_size)
    cuda = any(d.type == "cuda" for d in devices)
    n_rows = rows if rows is not None else (4 * size if cuda else 2)
    with tempfile.TemporaryDirectory(prefix="hms_bench_") as tmp:
        data = write_competition(Path(tmp) / "data", n_test=n_rows, n_train_eegs=0, seed=0)
        res = run_end_to_end(fast, data, Path(tmp) / "submission.csv", size, options.num_workers)
        stages = profile_stages(fast, Competition(data, "test"), size)
        result = {
            "device": device_name(devices[0]), "devices": [device_name(d) for d in devices],
            "torch": torch.__version__, "members": [m.name for m in fast.members], "views": list(fast.views),
            "precision": precision, "batch_size": size, "wave_backend": fast.wave_backend,
            "compile": options.compile, "load_s": load_s, **{k: v for k, v in res.items() if k != "probs"},
            "stages": stages,
        }
        if reference:
            ref = Ensemble(copy_members(fast.members), views, spec.blend, precision, fast=False)
            rres = run_end_to_end(ref, data, Path(tmp) / "reference.csv", size, options.num_workers)
            result.update({"reference_ms_per_eeg": rres["ms_per_eeg"],
                           "reference_steady_ms_per_eeg": rres["steady_ms_per_eeg"],
                           "reference_peak_memory_mb": rres["peak_memory_mb"],
                           "speedup": rres["ms_per_eeg"] / res["ms_per_eeg"],
                           "steady_speedup": rres["steady_ms_per_eeg"] / res["steady_ms_per_eeg"],
                           "max_abs_prob_diff": float(np.abs(rres["probs"] - res["probs"]).max())})
    log.info(format_result(result))
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(result, indent=2) + "\n")
    return result


def format_result(r: dict) -> str:
    lines = [f"hms_infer bench: {r['rows']} rows, {len(r['members'])} members x {len(r['views'])} views, "
             f"{r['precision']}, batch {r['batch_size']}, WaveNet {r['wave_backend']}"
             f"{', compiled' if r['compile'] else ''} on {r['device']}",
             f"  end to end     {r['ms_per_eeg']:9.2f} ms/EEG  ({r['rows_per_s']:.2f} rows/s; first batch "
             f"{r['first_batch_s']:.2f} s; steady {r['steady_ms_per_eeg']:.2f} ms/EEG)",
             f"  peak memory    {r['peak_memory_mb']:9.0f} MB   device idle {100 * r['gpu_idle_fraction']:.1f}% "
             f"of the wall time"]
    lines += [f"  {k:<28}{v:9.3f} ms/EEG" for k, v in r["stages"].items()]
    if "speedup" in r:
        lines.append(f"  reference      {r['reference_ms_per_eeg']:9.2f} ms/EEG  -> speed-up {r['speedup']:.2f}x "
                     f"(steady {r['steady_speedup']:.2f}x), max |dprob| {r['max_abs_prob_diff']:.2e}")
    return "\n".join(lines)
