"""The CUDA path, checked on a GPU (GPU-REVIEW.md's list): the fused kernel, precision, memory, the end-to-end
loop, device choice. Each test records what it measured in the session's report (conftest.py)."""
from __future__ import annotations

import importlib.util
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from hms_infer.bench import HEAD_SCALE
from hms_infer.checkpoint import load_weights
from hms_infer.data import Competition
from hms_infer.ensemble import Ensemble, LoadedMember
from hms_infer.errors import HMSInputError
from hms_infer.models import PRESETS, create_model
from hms_infer.models.wavenet import WaveNet
from hms_infer.models.wavenet_fast import FastWaveBlock, accelerate
from hms_infer.preprocess import eeg_electrodes, spectrogram_image
from hms_infer.runtime import (
    auto_batch_size, configure_backends, device_name, resolve_precision, set_tf32, wave_backend,
)
from hms_infer.synthetic import write_competition

from ..conftest import REFERENCE

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


def _sync():
    torch.cuda.synchronize()


def _time(fn, repeat: int = 10) -> float:
    """Median seconds of `fn` after two warm-up calls (CUDA events)."""
    fn(), fn()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        _sync()
        times.append(start.elapsed_time(end) / 1e3)
    return float(np.median(times))


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


def _member(arch, seed: int, device: torch.device, scale: float = HEAD_SCALE) -> LoadedMember:
    torch.manual_seed(seed)
    model = create_model(arch)
    with torch.no_grad():
        model.head_all.weight.mul_(scale)
        model.head_all.bias.mul_(scale)
    return LoadedMember(str(arch), model.to(device).eval(), 1.0, device)


def _reference_member(device: torch.device) -> LoadedMember:
    config = json.loads((REFERENCE / "tiny_model" / "config.json").read_text())
    model = load_weights(create_model(config), load_file(REFERENCE / "tiny_model" / "weights.safetensors"),
                         "tiny", "tiny")
    return LoadedMember("reference_tiny", model.to(device).eval(), 1.0, device)


def test_versions_and_kernel_device_choice(gpu, report):
    kernel = _kernel_module()
    report["device"] = device_name(gpu)
    report["versions"] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                          "cudnn": torch.backends.cudnn.version(), "arch_list": torch.cuda.get_arch_list()}
    import triton
    report["versions"]["triton"] = triton.__version__
    assert kernel.arch_supported((7, 5), ["sm_70", "sm_75", "sm_80"]) is True
    assert kernel.arch_supported((6, 0), ["sm_70", "sm_75", "sm_80"]) is False
    assert kernel._runs_on(torch, 0) is True
    chosen = kernel.choose_device(torch)
    assert chosen.split(",")[0] == "cuda:0"
    report["kernel_choose_device"] = chosen


LEVEL_CHANNELS = (4, 8, 12, 16, 20, 24, 28)  # every C of the presets' WaveNets


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


def test_wave_level_kernel_matches_eager(gpu, report):
    from hms_infer.kernels.wave_level import wave_level
    dtypes = [torch.float16] + ([torch.bfloat16] if torch.cuda.get_device_capability(gpu) >= (8, 0) else [])
    errors = {}
    for c in LEVEL_CHANNELS:
        args = _level_inputs(c, 16, gpu)
        for d in (1, 64, 8192, 16384):  # 16384 > T: both outer taps are all padding
            with torch.inference_mode():
                want = _eager_level(*args, d)
                for dtype in dtypes:
                    low = [a.to(dtype) for a in args]
                    got = wave_level(*low, d)
                    assert got.dtype == dtype and got.isfinite().all()
                    err = ((got.float() - want).abs().max() / want.abs().max()).item()
                    errors[f"C{c}/d{d}/{str(dtype)[6:]}"] = err
                    assert err < (6e-3 if dtype == torch.float16 else 3e-2), (c, d, dtype, err)
                got32 = wave_level(*args, d)  # fp32 operands: ieee dots
                assert ((got32 - want).abs().max() / want.abs().max()).item() < 1e-5
    report["wave_level_rel_err"] = errors


def test_wave_level_kernel_speed(gpu, report):
    """The target: >= 5x the eager gate convs per level at fp16, batch 32 x 4 views x 8 signals."""
    from hms_infer.kernels.wave_level import wave_level
    speed = {}
    for c in LEVEL_CHANNELS:
        x, res, gw, gb, sw, sb = (a.half() for a in _level_inputs(c, 32 * 4 * 8 // 2, gpu))
        w3 = [gw[i * c:(i + 1) * c] for i in range(3)]
        b3 = [gb[i * c:(i + 1) * c] for i in range(3)]

        def eager(d=16):  # the training code's level: three convs, three activations, skip conv, add
            s, t, m = (F.conv1d(x, w, b, padding=d, dilation=d) for w, b in zip(w3, b3))
            return F.conv1d(torch.sigmoid(s) * torch.tanh(t) * F.mish(m), sw[..., None], sb) + res
        with torch.inference_mode():
            t_eager = _time(eager)
            t_merged = _time(lambda: _eager_level(x, res, gw, gb, sw, sb, 16))
            t_kernel = _time(lambda: wave_level(x, res, gw, gb, sw, sb, 16))
        speed[f"C{c}"] = {"eager_ms": 1e3 * t_eager, "merged_ms": 1e3 * t_merged, "triton_ms": 1e3 * t_kernel,
                          "speedup": t_eager / t_kernel}
    geo = math.exp(np.mean([math.log(v["speedup"]) for v in speed.values()]))
    report["wave_level_speed"] = {"per_level": speed, "geomean_speedup": geo}
    print(json.dumps(report["wave_level_speed"], indent=1))
    assert geo >= 5.0, f"fused level only {geo:.2f}x the eager gate convs"


def test_whole_wavenet_fast_vs_eager(gpu, report):
    """cfg_1's chain WaveNet on batch 32 x 4 views x 8 signals: eager, merged and fused, fp16 autocast."""
    torch.manual_seed(0)
    eager = WaveNet(PRESETS["cfg_1"].wavenet).to(gpu).eval()
    x = torch.randn(32 * 4 * 8 // 2, 1, 10000, device=gpu) * 2
    out = {}
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
        want = eager(x).float()
        out["eager_ms"] = 1e3 * _time(lambda: eager(x))
        for backend in ("merged", "triton"):
            fast = accelerate(WaveNet(PRESETS["cfg_1"].wavenet).to(gpu).eval(), backend, torch.float16)
            fast.load_state_dict(eager.state_dict())
            got = fast(x).float()
            assert ((got - want).abs().max() / want.abs().max()).item() < 2e-2, backend
            out[f"{backend}_ms"] = 1e3 * _time(lambda: fast(x))
    report["wavenet_1d_cfg1_half_batch"] = out
    assert out["triton_ms"] < out["eager_ms"]


def test_wavenet_on_gpu_matches_cpu(gpu, report):
    """fp32 with TF32 off, dilations up to 16384 (cuDNN with large dilations)."""
    configure_backends([gpu], "fp32")
    torch.manual_seed(0)
    net = WaveNet(PRESETS["cfg_2"].wavenet).eval()
    x = torch.randn(4, 1, 10000) * 2
    with torch.inference_mode():
        want = net(x)
        got = net.to(gpu)(x.to(gpu)).cpu()
    err = ((got - want).abs().max() / want.abs().max()).item()
    report["wavenet_gpu_vs_cpu_rel_err"] = err
    assert err < 1e-5


def test_reference_tiny_model_fp32_and_fp16(gpu, report):
    io = np.load(REFERENCE / "tiny_model" / "io.npz")
    eeg, spect = torch.from_numpy(io["input_eeg_raw"]).to(gpu), torch.from_numpy(io["input_comp_spectrogram"]).to(gpu)
    model = _reference_member(gpu).model
    heads = {"all": "logits_all", "spect": "logits_spect", "eeg_stft": "logits_eeg_stft",
             "eeg_wavenet": "logits_eeg_wavenet"}
    result = {}
    for mode in ("tf32", "fp32", "fp16"):
        set_tf32(mode == "tf32")
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=mode == "fp16"):
            out = model(eeg, spect)
        result[mode] = {h: float(np.abs(out[h].float().cpu().numpy() - io[k]).max()) for h, k in heads.items()}
    report["reference_tiny_model_max_abs_logit_diff"] = result
    assert max(result["fp32"].values()) < 1e-4
    assert max(result["fp16"].values()) < 0.05


@pytest.mark.parametrize("preset", ["cfg_1", "cfg_8"])
def test_autocast_keeps_the_stft_in_fp32_and_everything_finite(gpu, preset, rows, report):
    _, electrodes, _ = rows
    t = torch.arange(10000) / 200
    square = 64 * torch.sign(torch.sin(2 * torch.pi * 3 * t))
    sine = 64 * torch.sin(2 * torch.pi * 7 * t)
    from hms_infer.ensemble import bipolar_views
    synthetic = bipolar_views(electrodes[:2], ("none",))[:, 0]
    inputs = {"square": square.expand(2, 24, -1), "sine": sine.expand(2, 24, -1), "zeros": torch.zeros(2, 24, 10000),
              "synthetic": synthetic}
    member = _member(preset, 0, gpu)
    model = member.model
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
                out = model(eeg.to(gpu), spect)["all"]
                assert out.isfinite().all(), name
    finally:
        for h in handles:
            h.remove()
    seen["stft_dtypes"] = sorted(seen["stft_dtypes"])
    report[f"autocast_{preset}"] = seen
    assert seen["stft_dtypes"] == ["torch.float32"] and seen["attention_softmax_dtype"] == "torch.float32"
    assert not seen["nonfinite"] and seen["fp16_max"] < 3e4


def _probs(members, precision, electrodes, spect):
    ens = Ensemble(members, precision=precision)
    return ens.member_logits(electrodes, spect).double().softmax(-1)  # (M, B, V, 6)


def test_fp16_and_bf16_within_2e3_of_fp32(gpu, rows, report):
    _, electrodes, spect = rows
    electrodes, spect = electrodes[:8], spect[:8]
    results = {}
    for make in (lambda: _reference_member(gpu), lambda: _member("cfg_1", 1, gpu), lambda: _member("cfg_5", 5, gpu)):
        name = make().name
        configure_backends([gpu], "fp32")
        p32 = _probs([make()], "fp32", electrodes, spect)
        results[name] = {"max_prob": p32.max().item()}
        for precision in ("fp16", "bf16"):
            if precision == "bf16" and torch.cuda.get_device_capability(gpu) < (8, 0):
                continue
            p = _probs([make()], precision, electrodes, spect)
            results[name][precision] = (p - p32).abs().max().item()
            if precision == "fp16":
                e32, e16 = p32.mean((0, 2)), p.mean((0, 2))
                results[name]["kl_fp16"] = (e32 * (e32 / e16).log()).sum(-1).max().item()
    report["precision_max_abs_dprob"] = results
    print(json.dumps(results, indent=1))
    for name, r in results.items():
        assert r["fp16"] < 2e-3 and r["kl_fp16"] < 1e-4, (name, r)
        assert r.get("bf16", 0.0) < 2e-3, (name, r)


def test_t4_memory_emulation(gpu, report):
    """A 16 GB T4: 14.5 GiB usable, the 8-block presets at batch 8 x 4 views fp16, peaks below 13 GiB."""
    total = torch.cuda.get_device_properties(gpu).total_memory
    fraction = 14.5 * 2**30 / total
    if fraction >= 1:
        pytest.skip("the GPU has no more than 14.5 GiB")
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(fraction, gpu)
    peaks = {}
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
                try:
                    ens.member_logits(electrodes[:batch], spect[:batch])
                    peaks[f"{preset}/b{batch}"] = {
                        "allocated_gib": torch.cuda.max_memory_allocated(gpu) / 2**30,
                        "reserved_gib": torch.cuda.max_memory_reserved(gpu) / 2**30}
                except (torch.cuda.OutOfMemoryError, HMSInputError) as e:
                    peaks[f"{preset}/b{batch}"] = f"out of memory: {str(e)[:80]}"
            del ens
    finally:
        torch.backends.cudnn.benchmark = benchmark
        torch.cuda.set_per_process_memory_fraction(1.0, gpu)
        torch.cuda.empty_cache()
    with torch.device("meta"):
        members = [(PRESETS[p], create_model(p), gpu) for p in PRESETS]
    peaks["auto_batch_size_one_t4_8_members"] = auto_batch_size(members, 4, "fp16", {gpu: 14.75})
    report["t4_emulation"] = peaks
    print(json.dumps(peaks, indent=1))
    for preset in ("cfg_2", "cfg_4", "cfg_6", "cfg_8"):
        assert isinstance(peaks[f"{preset}/b8"], dict) and peaks[f"{preset}/b8"]["reserved_gib"] < 13, preset
    assert peaks["auto_batch_size_one_t4_8_members"] == 8


def test_end_to_end_11_rows_batch_8(gpu, rows, report):
    """First, steady and last (padded) batch times; rows finite and summing to 1; the sync points of one batch."""
    data, electrodes, spect = rows
    members = [_member("cfg_1", 1, gpu), _member("cfg_5", 5, gpu)]
    ens = Ensemble(members, precision="fp16")
    assert ens.wave_backend == "triton"
    assert any(isinstance(m, FastWaveBlock) for m in members[0].model.modules())
    comp = Competition(data, "test")
    times, probs = [], []
    for rep in range(2):  # the first pass includes cuDNN benchmarking and autotuning
        t = time.perf_counter()
        for index, logits, _ in ens.batch_logits(comp, None, 8, 2, progress=False):
            times.append((rep, len(index), time.perf_counter() - t))
            probs.append(ens.blend(logits))
            t = time.perf_counter()
    p = np.concatenate(probs[-2:])
    assert p.shape == (11, 6) and np.isfinite(p).all() and np.allclose(p.sum(1), 1)
    steady = [dt for rep, n, dt in times if rep == 1 and n == 8]
    last = [dt for rep, n, dt in times if rep == 1 and n == 3]
    report["e2e_11_rows"] = {"batches": times, "last_vs_steady": last[0] / steady[0]}
    assert last[0] < 2 * steady[0]  # padded: no re-benchmark for the smaller batch

    reference = Ensemble([LoadedMember(m.name, create_model(m.arch).to(gpu).eval(), 1.0, gpu) for m in members],
                         precision="fp16", fast=False)
    for r, m in zip(reference.members, members):
        r.model.load_state_dict(m.model.state_dict())
    ref = reference.predict_proba(electrodes[:8], spect[:8])
    report["e2e_fast_vs_reference_max_dprob"] = float(np.abs(ref - p[:8]).max())
    assert np.abs(ref - p[:8]).max() < 2e-3

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ens.member_logits(electrodes[:8].pin_memory(), spect[:8].pin_memory())
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = sorted({str(w.message).splitlines()[0][:160] for w in caught})
    report["sync_points_one_batch"] = syncs
    print("sync points:", *syncs, sep="\n  ")


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
    # a mixed device list: members on the GPU and on the CPU, fp32, one blend
    _, electrodes, spect = rows
    cfg = json.loads((REFERENCE / "tiny_model" / "config.json").read_text())
    mixed = Ensemble([_reference_member(gpu), _reference_member(CPU)], precision="fp32")
    assert wave_backend([gpu, CPU], "fp32", True) == "merged"
    logits = mixed.member_logits(electrodes[:2], spect[:2])
    diff = (logits[0] - logits[1]).abs().max().item()
    report["mixed_gpu_cpu_max_logit_diff"] = diff
    assert diff < 1e-4 and cfg["backbone"] == "test_efficientnet"


def test_two_gpus_overlap(report, rows):
    if torch.cuda.device_count() < 2:
        print("\n*** SKIP: one GPU only: the two-device member spread is not measured here ***")
        report["two_gpus"] = "SKIPPED: one GPU"
        pytest.skip("one GPU only: the two-device member spread needs two")
    _, electrodes, spect = rows
    one = Ensemble([_member(p, i, torch.device("cuda", 0)) for i, p in enumerate(("cfg_1", "cfg_5"))],
                   precision="fp16")
    two = Ensemble([_member(p, i, torch.device("cuda", i)) for i, p in enumerate(("cfg_1", "cfg_5"))],
                   precision="fp16")
    t1 = _time(lambda: one.member_logits(electrodes[:8], spect[:8]), 3)
    t2 = _time(lambda: two.member_logits(electrodes[:8], spect[:8]), 3)
    report["two_gpus"] = {"one_s": t1, "two_s": t2, "speedup": t1 / t2}
    assert t1 / t2 > 1.3
