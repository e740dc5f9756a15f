"""The CUDA path on a GPU (GPU-REVIEW.md and gpu-review-2's lists): the fused kernel, precision, memory, OOM
recovery, the end-to-end loop, threads, device choice. Each test records what it measured (conftest.py: written to
gpu_tests.json as the test ends). In a dry run (`gpu_check.sh --dry-run`, CI) the tests that a CPU can run do,
with tiny models; the others skip.
"""
from __future__ import annotations

import importlib.util
import math
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hms_infer.checkpoint import load_weights
from hms_infer.data import Competition
from hms_infer.ensemble import Ensemble
from hms_infer.members import HEAD_SCALE, LoadedMember
from hms_infer.montage import bipolar_views
from hms_infer.errors import HMSInputError
from hms_infer.models import PRESETS, create_model, resolve_arch
from hms_infer.models.wavenet import WaveNet
from hms_infer.models.wavenet_fast import FastWaveBlock, accelerate
from hms_infer.preprocess import eeg_electrodes, spectrogram_image
from hms_infer.runtime import auto_batch_size, device_name, resolve_precision, wave_backend
from hms_infer.synthetic import write_competition

from ..conftest import REFERENCE, TINY_ARCH, reference_tiny_config, reference_tiny_io
from .conftest import DRY_RUN, autocast, fp32_reference, median_seconds, needs_gpu, tf32

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
LOW = "bf16" if DRY_RUN else "fp16"  # the served low precision (CPU autocast in fp16 is refused)
VIEWS = ("none",) if DRY_RUN else ("none", "lr", "fb", "lrfb")  # a dry run: one view keeps the CPU quick
LEVEL_CHANNELS = (4, 8, 12, 16, 20, 24, 28)  # every C of the presets' WaveNets
# Probability bounds of autocast against fp32 (TF32 off), per member: provisional until a GPU measures them (the
# CPU measured bf16 1.8e-3 on the reference tiny model); gpu_tests.json keeps the measured figures.
DPROB_BOUND = {"fp16": 5e-3, "bf16": 1.5e-2}
KL_BOUND = {"fp16": 1e-4, "bf16": 1e-3}


def _kernel_module():
    spec = importlib.util.spec_from_file_location("hms_kernel", ROOT / "kernel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """11 synthetic test rows: electrodes (11, 19, T) and spectrogram images (11, 10, 300, 100), and the folder."""
    data = write_competition(tmp_path_factory.mktemp("gpu") / "data", n_test=11, n_train_eegs=0, seed=1)
    comp = Competition(data, "test")
    items = [comp[i] for i in range(len(comp))]
    electrodes = torch.from_numpy(np.stack([eeg_electrodes(e) for _, e, _ in items]))
    spect = torch.from_numpy(np.stack([spectrogram_image(s) for _, _, s in items]))
    return data, electrodes, spect


def _member(preset: str, seed: int, device: torch.device, scale: float = HEAD_SCALE) -> LoadedMember:
    """Random weights of `preset` (a dry run: the tiny architecture), built on `device` (faster than on the CPU),
    logits spread like a trained model's."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = create_model(TINY_ARCH if DRY_RUN else preset).scale_head(scale)
    return LoadedMember(f"tiny:{preset}" if DRY_RUN else preset, model.to(device).eval(), 1.0, device)


def _reference_member(device: torch.device) -> LoadedMember:
    from safetensors.torch import load_file
    model = load_weights(create_model(reference_tiny_config()),
                         load_file(REFERENCE / "tiny_model" / "weights.safetensors"), "tiny", "tiny")
    return LoadedMember("reference_tiny", model.to(device).eval(), 1.0, device)


def test_versions_and_kernel_device_choice(gpu, report, session_report):
    kernel = _kernel_module()
    session_report["device"] = device_name(gpu)
    session_report["versions"] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                                  "cudnn": torch.backends.cudnn.version(),
                                  "arch_list": torch.cuda.get_arch_list() if torch.cuda.is_available() else []}
    try:
        import triton
        session_report["versions"]["triton"] = triton.__version__
    except ImportError:
        session_report["versions"]["triton"] = None
    assert kernel.arch_supported((7, 5), ["sm_70", "sm_75", "sm_80"]) is True
    assert kernel.arch_supported((6, 0), ["sm_70", "sm_75", "sm_80"]) is False
    chosen = kernel.choose_device(torch, DRY_RUN)
    report["kernel_choose_device"] = chosen
    if DRY_RUN:
        assert chosen == "cpu"
    else:
        assert kernel._runs_on(torch, 0) is True
        assert chosen.split(",")[0] == "cuda:0"


def _eager_level(x, res, gw, gb, sw, sb, d):
    s, t, m = F.conv1d(x, gw, gb, padding=d, dilation=d).chunk(3, dim=1)
    return F.conv1d(torch.sigmoid(s) * torch.tanh(t) * F.mish(m), sw[..., None], sb) + res


def _level_inputs(c: int, n: int, gpu: torch.device, seed: int = 0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = (torch.randn(n, c, 10000, generator=g) * 2).to(gpu)
    res = (torch.randn(n, c, 10000, generator=g)).to(gpu)
    gw = (torch.randn(3 * c, c, 3, generator=g) / math.sqrt(3 * c)).to(gpu)
    gb = (torch.randn(3 * c, generator=g) * 0.1).to(gpu)
    sw = (torch.randn(c, c, generator=g) / math.sqrt(c)).to(gpu)
    sb = (torch.randn(c, generator=g) * 0.1).to(gpu)
    return x, res, gw, gb, sw, sb


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want.float()).abs().max() / want.float().abs().max()).item()


@needs_gpu
def test_fused_level_matches_eager(gpu, report):
    """Every C at dilations 1, 64 and 16384 (> T: both outer taps all padding), fp16 (and bf16 from sm_80), against
    the fp32 eager level with TF32 off; fp32 operands (FMA dots) on the smallest and largest channel block."""
    from hms_infer.kernels.wave_level import wave_level
    dtypes = [torch.float16] + ([torch.bfloat16] if torch.cuda.get_device_capability(gpu) >= (8, 0) else [])
    errors = report["rel_err"] = {}
    with fp32_reference(), torch.inference_mode():
        for c in LEVEL_CHANNELS:
            args = _level_inputs(c, 16, gpu)
            for d in (1, 64, 16384):
                want = _eager_level(*args, d)
                for dtype in dtypes:
                    got = wave_level(*(a.to(dtype) for a in args), d)
                    errors[f"C{c}/d{d}/{str(dtype)[6:]}"] = _rel(got, want) if got.isfinite().all() else "not finite"
                    assert got.dtype == dtype
                if c in (4, 28) and d in (1, 64):
                    errors[f"C{c}/d{d}/float32"] = _rel(wave_level(*args, d), want)
    for key, err in errors.items():
        assert err != "not finite" and err < {"float16": 6e-3, "bfloat16": 3e-2, "float32": 1e-5}[
            key.rsplit("/", 1)[1]], (key, err)


@needs_gpu
def test_fused_level_speed_and_tiles(gpu, report):
    """Target (issue 8): the fused level >= 5x the eager gate convs at fp16, batch 32 x 4 views x 8 signals / 2.
    On one C of each channel block also every candidate tile, so that a GPU session can confirm or update
    `tile_config` from gpu_tests.json."""
    from hms_infer.kernels.wave_level import CANDIDATES, launch, tile_config
    speed = report["per_channel_count"] = {}
    with torch.inference_mode():
        for c in LEVEL_CHANNELS:
            x, res, gw, gb, sw, sb = (a.half() for a in _level_inputs(c, 32 * 4 * 8 // 2, gpu))
            w3, b3 = gw.split(c), gb.split(c)

            def eager(d=16):  # the training code's level: three convs, three activations, skip conv, add
                s, t, m = (F.conv1d(x, w, b, padding=d, dilation=d) for w, b in zip(w3, b3))
                return F.conv1d(torch.sigmoid(s) * torch.tanh(t) * F.mish(m), sw[..., None], sb) + res
            t_eager = median_seconds(eager, calls=10)
            t_merged = median_seconds(lambda: _eager_level(x, res, gw, gb, sw, sb, 16), calls=10)
            chosen = tile_config(c, torch.float16, torch.cuda.get_device_capability(gpu))
            t_fused = median_seconds(lambda: launch(x, res, gw, gb, sw, sb, 16, chosen), calls=10)
            speed[f"C{c}"] = {"eager_ms": 1e3 * t_eager, "merged_ms": 1e3 * t_merged, "fused_ms": 1e3 * t_fused,
                              "speedup": t_eager / t_fused, "tile": f"{chosen.block_t}x{chosen.num_warps}w"}
            if c in (16, 28):  # BLOCK_C 16 and 32
                tiles = {f"{cfg.block_t}x{cfg.num_warps}w": 1e3 * median_seconds(
                    lambda cfg=cfg: launch(x, res, gw, gb, sw, sb, 16, cfg), calls=10) for cfg in CANDIDATES}
                speed[f"C{c}"].update(tiles_ms=tiles, best_tile=min(tiles, key=tiles.get))
    geo = math.exp(np.mean([math.log(v["speedup"]) for v in speed.values()]))
    report["geomean_speedup"] = geo
    assert geo >= 5.0, f"fused level only {geo:.2f}x the eager gate convs"


def test_whole_wavenet_backends_agree(gpu, report):
    """cfg_1's chain WaveNet on batch 32 x 4 views x 8 signals / 2 in fp16: eager, merged and fused; a dry run:
    the tiny WaveNet in fp32, eager and merged."""
    arch = resolve_arch(TINY_ARCH if DRY_RUN else "cfg_1").wavenet
    torch.manual_seed(0)
    eager = WaveNet(arch).to(gpu).eval()
    x = torch.randn(4 if DRY_RUN else 32 * 4 * 8 // 2, 1, 10000, device=gpu) * 2
    backends = ("merged",) if DRY_RUN else ("merged", "triton")
    dtype = None if DRY_RUN else torch.float16
    with torch.inference_mode(), autocast(gpu, "fp32" if DRY_RUN else "fp16"):
        want = eager(x).float()
        report["eager_ms"] = 1e3 * median_seconds(lambda: eager(x), 3)
        for backend in backends:
            fast = accelerate(WaveNet(arch).to(gpu).eval(), backend, dtype)
            fast.load_state_dict(eager.state_dict())
            report[f"{backend}_rel_err"] = _rel(fast(x), want)
            report[f"{backend}_ms"] = 1e3 * median_seconds(lambda: fast(x), 3)
    for backend in backends:
        assert report[f"{backend}_rel_err"] < (1e-5 if DRY_RUN else 2e-2), backend
    if not DRY_RUN:
        assert report["triton_ms"] < report["eager_ms"]


@needs_gpu
def test_wavenet_on_gpu_matches_cpu(gpu, report):
    """fp32 with TF32 off, dilations up to 16384 (cuDNN with large dilations)."""
    torch.manual_seed(0)
    net = WaveNet(PRESETS["cfg_2"].wavenet).eval()
    x = torch.randn(4, 1, 10000) * 2
    with fp32_reference(), torch.inference_mode():
        want = net(x)
        got = net.to(gpu)(x.to(gpu)).cpu()
    report["rel_err"] = _rel(got, want)
    assert report["rel_err"] < 1e-5


def test_reference_tiny_model(gpu, report):
    """The training code's logits of the reference tiny model (tests/data's compact set travels with the repo):
    fp32 with TF32 off, TF32 (measured), and the low precision."""
    eeg, spect, logits = reference_tiny_io(REFERENCE)
    eeg, spect = torch.from_numpy(eeg).to(gpu), torch.from_numpy(spect).to(gpu)
    model = _reference_member(gpu).model
    modes = ("fp32", LOW) if DRY_RUN else ("fp32", "tf32", LOW)
    for mode in modes:
        with tf32(mode == "tf32"), torch.inference_mode(), autocast(gpu, mode):
            out = model(eeg, spect)
        report[mode] = {h: float(np.abs(out[h].float().cpu().numpy() - logits[f"logits_{h}"]).max())
                        for h in ("all", "spect", "eeg_stft", "eeg_wavenet")}
    assert max(report["fp32"].values()) < 1e-4
    assert max(report[LOW].values()) < 0.05


@needs_gpu
@pytest.mark.parametrize("preset", ["cfg_1", "cfg_8"])
def test_autocast_keeps_the_stft_in_fp32_and_everything_finite(gpu, preset, rows, report):
    _, electrodes, _ = rows
    t = torch.arange(10000) / 200
    square = 64 * torch.sign(torch.sin(2 * torch.pi * 3 * t))
    sine = 64 * torch.sin(2 * torch.pi * 7 * t)
    synthetic = bipolar_views(electrodes[:2], ("none",))[:, 0]
    inputs = {"square": square.expand(2, 24, -1), "sine": sine.expand(2, 24, -1), "zeros": torch.zeros(2, 24, 10000),
              "synthetic": synthetic}
    model = _member(preset, 0, gpu).model
    seen = {"fp16_max": 0.0, "nonfinite": [], "stft_dtypes": set(), "attention_softmax_dtype": None}

    def hook(name):
        def fn(_m, _a, out):
            for o in (out if isinstance(out, (tuple, list)) else [out]):
                if torch.is_tensor(o) and o.is_floating_point():
                    if not o.isfinite().all():
                        seen["nonfinite"].append(name)
                    if o.dtype == torch.float16:
                        seen["fp16_max"] = max(seen["fp16_max"], o.abs().max().item())
        return fn
    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    handles.append(model.eeg_backbone.stft_layer.register_forward_hook(
        lambda _m, _a, out: seen["stft_dtypes"].add(str(out.dtype))))
    try:
        spect = torch.zeros(2, 10, 300, 100, device=gpu)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            for name, eeg in inputs.items():
                feats = model.spect_backbone.backbone(spect.reshape(20, 1, 300, 100)).reshape(2, 10, -1)
                seen["attention_softmax_dtype"] = str(torch.softmax(model.spect_backbone.attention(feats), 1).dtype)
                if not model(eeg.to(gpu), spect)["all"].isfinite().all():
                    seen["nonfinite"].append(f"logits of {name}")
    finally:
        for h in handles:
            h.remove()
        seen["stft_dtypes"] = sorted(seen["stft_dtypes"])
        report.update(seen)
    assert seen["stft_dtypes"] == ["torch.float32"] and seen["attention_softmax_dtype"] == "torch.float32"
    assert not seen["nonfinite"] and seen["fp16_max"] < 3e4


def _probs(members, precision, electrodes, spect):
    ens = Ensemble(members, VIEWS, precision=precision)
    torch.backends.cudnn.benchmark = False  # accuracy, not speed: no benchmarking of 9 ensembles' shapes
    return ens.member_logits(electrodes, spect).double().softmax(-1)


def test_low_precision_against_fp32(gpu, rows, report):
    """Max |dprob| and the KL of each member's view-mean against fp32 with TF32 off, measured and bounded
    (`DPROB_BOUND`, `KL_BOUND`): fp16 and bf16 (sm_80+) on the GPU, bf16 in a dry run."""
    _, electrodes, spect = rows
    n = 2 if DRY_RUN else 8
    electrodes, spect = electrodes[:n], spect[:n]
    makers = {"reference_tiny": lambda: _reference_member(gpu)}
    makers.update({p: (lambda p=p, s=s: _member(p, s, gpu)) for p, s in (("cfg_1", 1), ("cfg_5", 5))})
    if DRY_RUN:
        del makers["cfg_5"]
    lows = [LOW] + (["bf16"] if not DRY_RUN and torch.cuda.get_device_capability(gpu) >= (8, 0) else [])
    for name, make in makers.items():
        with fp32_reference():
            p32 = _probs([make()], "fp32", electrodes, spect)
            report[name] = {"max_prob": p32.max().item()}
            for precision in lows:
                p = _probs([make()], precision, electrodes, spect)
                e32, e16 = p32.mean((0, 2)), p.mean((0, 2))
                report[name][precision] = {"max_abs_dprob": (p - p32).abs().max().item(),
                                           "max_kl": (e32 * (e32 / e16).log()).sum(-1).max().item()}
    for name, r in report.items():
        for precision in lows:
            assert r[precision]["max_abs_dprob"] < DPROB_BOUND[precision], (name, precision, r)
            assert r[precision]["max_kl"] < KL_BOUND[precision], (name, precision, r)


@needs_gpu
def test_t4_memory_emulation(gpu, report):
    """A 16 GB T4: 14.5 GiB usable, the 8-block presets at batch 8 x 4 views fp16, peaks below 13 GiB."""
    total = torch.cuda.get_device_properties(gpu).total_memory
    fraction = 14.5 * 2**30 / total
    if fraction >= 1:
        pytest.skip("the GPU has no more than 14.5 GiB")
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(fraction, gpu)
    benchmark = torch.backends.cudnn.benchmark
    try:
        electrodes = torch.randn(12, 19, 10000)
        spect = torch.randn(12, 10, 300, 100)
        for preset in ("cfg_2", "cfg_4", "cfg_6", "cfg_8"):
            ens = Ensemble([_member(preset, 0, gpu)], precision="fp16")
            torch.backends.cudnn.benchmark = False  # minutes of benchmarking per shape otherwise
            for batch in (8, 12):
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(gpu)
                logits = ens.member_logits(electrodes[:batch], spect[:batch])
                report[f"{preset}/b{batch}"] = {
                    "allocated_gib": torch.cuda.max_memory_allocated(gpu) / 2**30,
                    "reserved_gib": torch.cuda.max_memory_reserved(gpu) / 2**30,
                    "rows_per_pass": ens.rows_per_pass or batch, "finite": bool(logits.isfinite().all())}
            del ens
    finally:
        torch.backends.cudnn.benchmark = benchmark
        torch.cuda.set_per_process_memory_fraction(1.0, gpu)
        torch.cuda.empty_cache()
    with torch.device("meta"):
        members = [(PRESETS[p], create_model(p), gpu) for p in PRESETS]
    report["auto_batch_size_one_t4_8_members"] = auto_batch_size(members, 4, "fp16", {gpu: 14.75})
    for preset in ("cfg_2", "cfg_4", "cfg_6", "cfg_8"):
        assert report[f"{preset}/b8"]["rows_per_pass"] == 8 and report[f"{preset}/b8"]["reserved_gib"] < 13, preset
    assert report["auto_batch_size_one_t4_8_members"] == 8


@needs_gpu
def test_out_of_memory_recovery_frees_the_failed_pass(gpu, rows, report):
    """A cap that fits 2 rows but not 8: the batch runs in smaller passes, with the same numbers; the failed pass's
    memory is back (allocated memory after the run equals before), and the next batch starts at the smaller size."""
    _, electrodes, spect = rows
    ens = Ensemble([_member("cfg_5", 5, gpu)], precision="fp16")
    torch.backends.cudnn.benchmark = False
    want = ens.member_logits(electrodes[:8], spect[:8])
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(gpu)
    base = torch.cuda.memory_allocated(gpu)
    ens.member_logits(electrodes[:2], spect[:2])
    two_rows = torch.cuda.max_memory_allocated(gpu) - base
    total = torch.cuda.get_device_properties(gpu).total_memory
    report.update({"base_gib": base / 2**30, "two_rows_gib": two_rows / 2**30})
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min((base + 2.5 * two_rows) / total, 1.0), gpu)
    try:
        got = ens.member_logits(electrodes[:8], spect[:8])
        after = torch.cuda.memory_allocated(gpu)  # the failed passes' tensors freed: back to the weights
        first = ens.rows_per_pass
        ens.member_logits(electrodes[:8], spect[:8])
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, gpu)
        torch.cuda.empty_cache()
    report.update({"rows_per_pass": first, "allocated_after_gib": after / 2**30,
                   "max_abs_dlogit": (got - want).abs().max().item()})
    assert first is not None and first < 8 and ens.rows_per_pass <= first
    assert after - base < 0.1 * two_rows and got.isfinite().all() and report["max_abs_dlogit"] < 0.05


def test_end_to_end_padded_batches_and_sync_points(gpu, rows, report):
    """11 rows at batch 8 (a dry run: 3 rows at batch 2, one view): first, steady and last (padded) batch times;
    rows finite and summing to 1, and equal to the reference path; on the GPU, the sync points of one batch."""
    data, electrodes, spect = rows
    members = [_member("cfg_1", 1, gpu), _member("cfg_5", 5, gpu)]
    precision = "fp32" if DRY_RUN else "fp16"
    ens = Ensemble(members, VIEWS, precision=precision)
    report["wave_backend"] = ens.wave_backend
    assert any(isinstance(m, FastWaveBlock) for m in members[0].model.modules())
    if not DRY_RUN and torch.cuda.get_device_capability(gpu) >= (8, 0):
        assert ens.wave_backend == "triton"
    comp = Competition(data, "test")
    n, size = (3, 2) if DRY_RUN else (11, 8)
    times, probs = [], []
    for rep in range(2):  # the first pass includes cuDNN benchmarking
        t = time.perf_counter()
        for index, logits, _ in ens.batch_logits(comp, list(range(n)), size, 2, progress=False):
            times.append((rep, len(index), time.perf_counter() - t))
            probs.append(ens.blend(logits))
            t = time.perf_counter()
    report["batches"] = times
    p = np.concatenate(probs[len(probs) // 2:])
    assert p.shape == (n, 6) and np.isfinite(p).all() and np.allclose(p.sum(1), 1)
    steady = [dt for rep, k, dt in times if rep == 1 and k == size]
    last = [dt for rep, k, dt in times if rep == 1 and k < size]
    report["last_vs_steady"] = last[0] / steady[0]
    if not DRY_RUN:
        assert last[0] < 2 * steady[0]  # padded: no re-benchmark for the smaller batch

    reference = Ensemble([LoadedMember(m.name, create_model(m.arch).to(gpu).eval(), 1.0, gpu) for m in members],
                         VIEWS, precision=precision, fast=False)
    for r, m in zip(reference.members, members):
        r.model.load_state_dict(m.model.state_dict())
    torch.backends.cudnn.benchmark = False  # the reference path runs once: no benchmarking of its shapes
    ref = reference.predict_proba(electrodes[:size], spect[:size])
    torch.backends.cudnn.benchmark = True
    report["fast_vs_reference_max_dprob"] = float(np.abs(ref - p[:size]).max())
    # two fp16 paths (fused or merged levels, channels-last, views batched vs one by one): each within its bound of
    # fp32, so within twice that of each other
    assert report["fast_vs_reference_max_dprob"] < (1e-5 if DRY_RUN else 2 * DPROB_BOUND["fp16"])
    if DRY_RUN:
        return
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ens.member_logits(electrodes[:8].pin_memory(), spect[:8].pin_memory())
    finally:
        torch.cuda.set_sync_debug_mode(0)
    report["sync_points_one_batch"] = sorted({str(w.message).splitlines()[0][:160] for w in caught})


@needs_gpu
def test_two_threads_compile_and_launch_new_channel_counts_at_once(gpu, report):
    """What two GPUs' launching threads do at their first batch, on one GPU: two channel counts no test launched
    before, compiled and launched from two threads at the same moment (0.3.0's autotuner crashed here)."""
    from hms_infer.kernels.wave_level import wave_level
    start, errors, results = threading.Barrier(2), [], {}
    inputs = {c: [a.half() for a in _level_inputs(c, 4, gpu, seed=c)] for c in (36, 44)}

    def level(c):
        start.wait()
        try:
            with torch.inference_mode(), torch.cuda.device(gpu):
                results[c] = wave_level(*inputs[c], 2)
        except Exception as e:  # noqa: BLE001  what the test is about
            errors.append(f"{type(e).__name__}: {e}")
    threads = [threading.Thread(target=level, args=(c,)) for c in inputs]
    [t.start() for t in threads]
    [t.join() for t in threads]
    report["errors"] = errors
    with fp32_reference(), torch.inference_mode():
        for c, got in results.items():
            report[f"C{c}_rel_err"] = _rel(got, _eager_level(*(a.float() for a in inputs[c]), 2))
    assert not errors and report["C36_rel_err"] < 6e-3 and report["C44_rel_err"] < 6e-3


@needs_gpu
def test_precision_and_device_edge_cases(gpu, rows, report, monkeypatch):
    with pytest.raises(HMSInputError, match="fp16 runs on GPUs only"):
        resolve_precision("fp16", [CPU])
    with pytest.raises(HMSInputError, match="fp16 runs on GPUs only"):
        resolve_precision("fp16", [gpu, CPU])
    assert resolve_precision("auto", [gpu]) == "fp16" and resolve_precision("auto", [gpu, CPU]) == "fp32"
    if torch.cuda.get_device_capability(gpu) >= (8, 0):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 5))
    with pytest.raises(HMSInputError, match="no bf16 support"):
        resolve_precision("bf16", [gpu])
    monkeypatch.undo()
    _, electrodes, spect = rows  # a mixed device list: members on the GPU and on the CPU, fp32, one blend
    mixed = Ensemble([_reference_member(gpu), _reference_member(CPU)], precision="fp32")
    assert wave_backend([gpu, CPU], "fp32", True) == "merged"
    logits = mixed.member_logits(electrodes[:2], spect[:2])
    report["mixed_gpu_cpu_max_logit_diff"] = (logits[0] - logits[1]).abs().max().item()
    assert report["mixed_gpu_cpu_max_logit_diff"] < 1e-4


@needs_gpu
def test_two_gpus_overlap(report, rows):
    if torch.cuda.device_count() < 2:
        report["two_gpus"] = "SKIPPED: one GPU"
        pytest.skip("one GPU only: the two-device member spread needs two")
    _, electrodes, spect = rows
    one = Ensemble([_member(p, i, torch.device("cuda", 0)) for i, p in enumerate(("cfg_1", "cfg_5"))],
                   precision="fp16")
    two = Ensemble([_member(p, i, torch.device("cuda", i)) for i, p in enumerate(("cfg_1", "cfg_5"))],
                   precision="fp16")
    t1 = median_seconds(lambda: one.member_logits(electrodes[:8], spect[:8]), 3)
    t2 = median_seconds(lambda: two.member_logits(electrodes[:8], spect[:8]), 3)
    report.update({"one_s": t1, "two_s": t2, "speedup": t1 / t2})
    assert t1 / t2 > 1.3
