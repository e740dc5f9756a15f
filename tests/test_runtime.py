"""Device and precision choices, member placement, batch sizing, OOM fallback and bf16 bounds (runtime.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from hms_infer.data import Competition
from hms_infer.ensemble import Ensemble
from hms_infer.errors import FusedKernelError, HMSInputError
from hms_infer.models import PRESETS, create_model
from hms_infer.runtime import (
    RunStats, auto_batch_size, member_gflops, place, resolve_devices, resolve_precision, wave_backend,
)

from .conftest import TINY_ARCH, tiny_manifest

CPU = torch.device("cpu")


def test_fp16_on_the_cpu_is_refused_and_auto_is_fp32():
    assert resolve_precision("auto", [CPU]) == "fp32"
    assert resolve_precision("bf16", [CPU]) == "bf16"
    with pytest.raises(HMSInputError, match="fp16 runs on GPUs only"):
        resolve_precision("fp16", [CPU])
    with pytest.raises(HMSInputError, match="precision must be"):
        resolve_precision("fp8", [CPU])


def test_bf16_below_sm80_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla T4")
    t4 = torch.device("cuda", 0)
    with pytest.raises(HMSInputError, match=r"Tesla T4 \(sm_75\) has no bf16 support"):
        resolve_precision("bf16", [t4])
    assert resolve_precision("fp16", [t4]) == "fp16"
    assert resolve_precision("auto", [t4]) == "fp16"
    assert resolve_precision("auto", [t4, CPU]) == "fp32"  # a mixed list: fp16 would be wrong on the CPU
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (8, 0))
    assert resolve_precision("bf16", [t4]) == "bf16"


def test_device_strings():
    assert resolve_devices("cpu") == [CPU]
    assert resolve_devices("cpu,cpu") == [CPU]
    if not torch.cuda.is_available():
        assert resolve_devices("auto") == [CPU]
        with pytest.raises(HMSInputError, match="no CUDA device"):
            resolve_devices("cuda:0")
    with pytest.raises(HMSInputError, match="--device"):
        resolve_devices("tpu")


def test_device_strings_name_each_gpu_once(monkeypatch):
    """`cuda` is `cuda:0`: listed beside it, one device (two would each get members and a launching thread)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cuda0, cuda1 = torch.device("cuda", 0), torch.device("cuda", 1)
    assert resolve_devices("cuda,cuda:0") == [cuda0]
    assert resolve_devices("cuda:1, cuda ,cuda:1") == [cuda1, cuda0]


def test_cpu_and_fp32_use_the_merged_convs_and_the_reference_path_stays_eager():
    assert wave_backend([CPU], "fp32", fast=True) == "merged"
    assert wave_backend([CPU], "bf16", fast=True) == "merged"
    assert wave_backend([CPU], "fp32", fast=False) == "eager"


@pytest.fixture(scope="module")
def preset_costs() -> dict[str, float]:
    return {name: member_gflops(arch) for name, arch in PRESETS.items()}


def test_flops_of_the_presets_match_the_spec(preset_costs):
    # SPEC §4: ~250 GFLOP (hgnetv2) / ~380 (EfficientNet) per sample; the 8-block WaveNets cost more
    assert 240 < preset_costs["cfg_1"] < 260 and 370 < preset_costs["cfg_5"] < 390
    assert preset_costs["cfg_2"] > preset_costs["cfg_1"] and preset_costs["cfg_8"] > preset_costs["cfg_7"]


def test_placement_balances_the_eight_presets_over_two_gpus(preset_costs):
    costs = list(preset_costs.values())
    gpus = [torch.device("cuda", 0), torch.device("cuda", 1)]
    placed = place(costs, gpus)
    load = {d: sum(c for c, p in zip(costs, placed) if p == d) for d in gpus}
    round_robin = {d: sum(costs[i::2]) for i, d in enumerate(gpus)}
    assert abs(load[gpus[0]] - load[gpus[1]]) / sum(costs) < 0.02
    assert abs(load[gpus[0]] - load[gpus[1]]) < abs(round_robin[gpus[0]] - round_robin[gpus[1]]) / 4
    assert place([3.0, 1.0, 1.0, 1.0], gpus) == [gpus[0], gpus[1], gpus[1], gpus[1]]


@pytest.fixture(scope="module")
def meta_presets():
    with torch.device("meta"):
        return {name: create_model(name) for name in PRESETS}


@pytest.mark.parametrize("gpus,total_gib,precision,expect", [
    (2, 14.75, "fp16", 8),   # Kaggle's 2x T4: batch 8 fits, 12 does not (GPU-REVIEW.md)
    (1, 14.75, "fp16", 8),   # all 8 members on one T4
    (2, 14.75, "fp32", 4),   # fp32 at 8 would need ~12.5 GiB of activations
    (1, 79.2, "fp16", 32),   # an H100: capped
    (1, 8.0, "fp16", 2),
])
def test_auto_batch_size_fits_the_gpu(meta_presets, gpus, total_gib, precision, expect):
    devices = [torch.device("cuda", i) for i in range(gpus)]
    archs = list(PRESETS.values())
    placed = place([1.0] * len(archs), devices)
    members = [(a, meta_presets[n], d) for (n, a), d in zip(PRESETS.items(), placed)]
    assert auto_batch_size(members, 4, precision, {d: total_gib for d in devices}) == expect
    assert auto_batch_size([(a, m, CPU) for a, m, _ in members], 4, "fp32") == 4


def test_run_stats_idle_fraction():
    stats = RunStats(wall_s=10.0, busy_s={"cuda:0": 7.0, "cuda:1": 9.0})
    assert stats.device_idle_fraction() == pytest.approx(0.2)
    assert RunStats().device_idle_fraction() == 0.0


@pytest.fixture(scope="module")
def tiny_ensemble(tiny_weights):
    path = tiny_weights / "runtime.yaml"
    path.write_text(yaml.safe_dump(tiny_manifest(tiny_weights, tta=("none", "lr"))))
    return path


def _inputs(synthetic_dir, n=3):
    from hms_infer.preprocess import eeg_electrodes, spectrogram_image
    comp = Competition(synthetic_dir, "test")
    items = [comp[i] for i in range(n)]
    return (torch.from_numpy(np.stack([eeg_electrodes(e) for _, e, _ in items])),
            torch.from_numpy(np.stack([spectrogram_image(s) for _, _, s in items])))


def test_out_of_memory_runs_the_batch_in_halves(tiny_ensemble, synthetic_dir, caplog):
    ens = Ensemble.from_manifest(tiny_ensemble, device="cpu")
    electrodes, spect = _inputs(synthetic_dir)
    want = ens.member_logits(electrodes, spect)
    forward = ens._forwards[1]
    seen = []

    def small_only(eeg, s):
        seen.append(len(eeg))
        if len(eeg) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(eeg, s)
    ens._forwards[1] = small_only
    got = ens.member_logits(electrodes, spect)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert seen == [3, 2, 1, 1, 1] and "running 2 rows per pass" in caplog.text and "running 1 rows" in caplog.text

    # still out of memory at one row: NaN logits, so that the row falls back (fallback.py), an error logged
    ens._forwards[1] = lambda eeg, s: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("always"))
    got = ens.member_logits(electrodes[:2], spect[:2])
    assert got.shape == (2, 2, 2, 6) and got.isnan().all()
    assert "out of memory even for one row" in caplog.text


@pytest.mark.parametrize("threads", [False, True])
def test_out_of_memory_frees_the_failed_pass_before_the_retry_and_keeps_the_smaller_size(
        tiny_ensemble, synthetic_dir, caplog, threads):
    """The failed pass's activations (held by the error's traceback, and with the launching threads by a future <->
    error cycle) are gone when the halves run; later batches start at the size that fit, logged once."""
    import weakref

    from hms_infer.runtime import DevicePool
    ens = Ensemble.from_manifest(tiny_ensemble, device="cpu")
    ens._pool = DevicePool(ens.devices, threads=threads)  # one launching thread, as each GPU has
    electrodes, spect = _inputs(synthetic_dir, 4)
    want = ens.member_logits(electrodes, spect)
    forward = ens._forwards[0]
    activations: list[weakref.ref] = []
    seen = []

    def two_rows_fit(eeg, s):
        seen.append((len(eeg), [r() is not None for r in activations]))
        activation = torch.ones(len(eeg), 1 << 16)  # what a forward holds when it runs out of memory
        activations.append(weakref.ref(activation))
        if len(eeg) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(eeg, s) + 0 * activation.sum()
    ens._forwards[0] = two_rows_fit
    torch.testing.assert_close(ens.member_logits(electrodes, spect), want, rtol=0, atol=1e-6)
    torch.testing.assert_close(ens.member_logits(electrodes, spect), want, rtol=0, atol=1e-6)
    assert [n for n, _ in seen] == [4, 2, 2, 2, 2]  # the second batch starts at 2 rows per pass
    assert not any(any(alive) for _, alive in seen)  # nothing of an earlier pass alive when the next one starts
    assert caplog.text.count("CUDA out of memory at 4 rows per pass: running 2 rows per pass") == 1


def test_cublas_and_cudnn_allocation_failures_count_as_out_of_memory(tiny_ensemble, synthetic_dir):
    from hms_infer.runtime import is_out_of_memory
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))
    assert is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))  # cuDNN 8
    assert is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED"))  # 9
    assert not is_out_of_memory(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not a CUDA runtime error

    ens = Ensemble.from_manifest(tiny_ensemble, device="cpu")
    electrodes, spect = _inputs(synthetic_dir, 2)
    want = ens.member_logits(electrodes, spect)
    forward, seen = ens._forwards[1], []

    def cublas(eeg, s):
        seen.append(len(eeg))
        if len(eeg) > 1:
            raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
        return forward(eeg, s)
    ens._forwards[1] = cublas
    torch.testing.assert_close(ens.member_logits(electrodes, spect), want, rtol=0, atol=1e-6)
    assert seen == [2, 1, 1]
    ens._forwards[1] = lambda eeg, s: (_ for _ in ()).throw(RuntimeError("an unrelated bug"))
    with pytest.raises(RuntimeError, match="an unrelated bug"):  # not retried, not hidden
        ens.member_logits(electrodes, spect)


def test_device_pool_waits_for_every_device_before_an_error_propagates():
    import time

    from hms_infer.runtime import DevicePool
    pool = DevicePool([CPU, torch.device("cuda", 1)], threads=True)
    finished = []

    def fails():
        raise torch.cuda.OutOfMemoryError("cuda:0 out of memory")

    def slow():
        time.sleep(0.3)
        finished.append("cuda:1")
        return 1
    with pytest.raises(torch.cuda.OutOfMemoryError):
        pool.map({CPU: fails, torch.device("cuda", 1): slow})
    assert finished == ["cuda:1"]  # the other device's work had ended when the error arrived

    def bug():
        raise ValueError("a real error on the other device")
    with pytest.raises(ValueError, match="a real error"):  # not hidden behind the first device's lack of memory
        pool.map({CPU: fails, torch.device("cuda", 1): bug})
    assert pool.map({CPU: lambda: 2, torch.device("cuda", 1): lambda: 3}) == {CPU: 2, torch.device("cuda", 1): 3}


def test_batch_size_must_be_positive(tiny_ensemble):
    ens = Ensemble.from_manifest(tiny_ensemble, device="cpu")
    assert ens.batch_size("auto") == 4 and ens.batch_size("16") == 16
    for bad in (0, "-3", "many"):
        with pytest.raises(HMSInputError, match="--batch-size must be auto or a positive integer"):
            ens.batch_size(bad)


def test_bf16_on_the_cpu_stays_within_2e3_of_fp32(reference, synthetic_dir, tmp_path):
    """The reference tiny model (probabilities up to 0.96 on these rows), 4 synthetic rows x 4 views."""
    from safetensors.torch import load_file

    from hms_infer.checkpoint import load_weights
    from hms_infer.members import LoadedMember

    from .conftest import reference_tiny_config

    def member():
        model = create_model(reference_tiny_config())
        weights = load_file(reference / "tiny_model" / "weights.safetensors")
        return LoadedMember("ref", load_weights(model, weights, "tiny", "tiny"), 1.0, CPU)
    electrodes, spect = _inputs(synthetic_dir, 4)
    p32 = Ensemble([member()], precision="fp32").member_logits(electrodes, spect).double().softmax(-1)
    bf16 = Ensemble([member()], precision="bf16")
    p16 = bf16.member_logits(electrodes, spect).double().softmax(-1)
    assert p32.max() > 0.9
    assert (p32 - p16).abs().max() < 2e-3  # measured 1.8e-3; 5.4e-3 with the first convs in bf16
    ens32, ens16 = p32.mean((0, 2)), p16.mean((0, 2))
    assert (ens32 * (ens32 / ens16).log()).sum(-1).max() < 1e-4  # measured 9.5e-6
    assert list(bf16.members[0].model.state_dict()) == list(member().model.state_dict())


def test_the_fused_kernel_is_off_below_sm80_unless_opted_in(monkeypatch):
    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 5))
    monkeypatch.delenv("HMS_WAVENET_BACKEND", raising=False)
    assert wave_backend([gpu], "fp16", fast=True) == "merged"  # Triton upstream dropped sm_75
    monkeypatch.setenv("HMS_WAVENET_BACKEND", "triton")
    assert wave_backend([gpu], "fp16", fast=True) == "triton"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    monkeypatch.setenv("HMS_WAVENET_BACKEND", "merged")
    assert wave_backend([gpu], "fp16", fast=True) == "merged"
    monkeypatch.setenv("HMS_WAVENET_BACKEND", "auto")
    assert wave_backend([gpu], "fp16", fast=True) == "triton"
    assert wave_backend([gpu], "fp32", fast=True) == "merged"
    monkeypatch.setenv("HMS_WAVENET_BACKEND", "fused")
    with pytest.raises(HMSInputError, match="HMS_WAVENET_BACKEND must be auto, merged or triton"):
        wave_backend([gpu], "fp16", fast=True)


def _bf16_ensemble(manifest, monkeypatch=None, backend=None):
    if backend is not None:
        monkeypatch.setattr("hms_infer.ensemble.wave_backend", lambda *a: backend)
    return Ensemble.from_manifest(manifest, device="cpu", precision="bf16")


def test_members_whose_fused_levels_fail_their_check_run_the_merged_convs(tiny_ensemble, synthetic_dir,
                                                                          monkeypatch, caplog):
    """The check compiles and launches the fused levels in the main thread; here Triton has no GPU driver, so the
    launch fails, and every member falls back, with one warning naming them."""
    electrodes, spect = _inputs(synthetic_dir, 2)
    want = _bf16_ensemble(tiny_ensemble).member_logits(electrodes, spect)
    ens = _bf16_ensemble(tiny_ensemble, monkeypatch, "triton")
    assert ens.wave_backend == "merged"
    warnings = [r.getMessage() for r in caplog.records if "failed its check" in r.getMessage()]
    assert len(warnings) == 1 and "2 of 2 members" in warnings[0] and "tiny0:" in warnings[0]
    torch.testing.assert_close(ens.member_logits(electrodes, spect), want, rtol=0, atol=0)


def test_a_fused_kernel_failing_at_run_time_switches_its_member_to_the_merged_convs(tiny_ensemble, synthetic_dir,
                                                                                   monkeypatch, caplog):
    """A compile or launch error inside a batch (injected at the call site): the member runs the merged convs from
    then on, with one warning, and the batch is computed again; the other member is untouched."""
    from hms_infer.models.wavenet_fast import FastWaveBlock, fast_blocks, set_backend
    electrodes, spect = _inputs(synthetic_dir, 2)
    ens = _bf16_ensemble(tiny_ensemble)
    want = ens.member_logits(electrodes, spect)
    set_backend(ens.members[1].model, "triton")
    level, launches = FastWaveBlock.level, []

    def failing_launch(self, x, res, k, fused):
        if fused:
            launches.append(k)
            raise FusedKernelError("PTXASError: ptxas fatal (injected)")
        return level(self, x, res, k, fused)
    monkeypatch.setattr(FastWaveBlock, "fused", lambda self, x: self.backend == "triton")  # CPU tensors too
    monkeypatch.setattr(FastWaveBlock, "level", failing_launch)
    torch.testing.assert_close(ens.member_logits(electrodes, spect), want, rtol=0, atol=0)
    torch.testing.assert_close(ens.member_logits(electrodes, spect), want, rtol=0, atol=0)
    assert launches == [0]  # one failed launch, then never the fused path again
    assert {b.backend for b in fast_blocks(ens.members[1].model)} == {"merged"}
    assert caplog.text.count("the fused WaveNet kernel failed on cpu (PTXASError: ptxas fatal") == 1
    assert "member tiny1" in caplog.text and "member tiny0" not in caplog.text

    set_backend(ens.members[0].model, "triton")  # an error that is not the kernel's is not blamed on it
    monkeypatch.setattr(FastWaveBlock, "level", lambda *a: (_ for _ in ()).throw(RuntimeError("a backbone bug")))
    with pytest.raises(RuntimeError, match="a backbone bug"):
        ens.member_logits(electrodes, spect)
    assert {b.backend for b in fast_blocks(ens.members[0].model)} == {"triton"}


def test_a_failing_launch_is_a_fused_kernel_error(monkeypatch):
    """What Triton raises when it cannot compile or launch (here: no GPU driver) reaches the ensemble as one kind of
    error; a check of the fused levels that finds NaN output fails (0.3.0's check took max(0, nan) = 0: a pass)."""
    from hms_infer.kernels.wave_level import launch
    from hms_infer.models.wavenet_fast import FastWaveBlock, accelerate, check_fused
    c = 4
    args = (torch.zeros(1, c, 32), torch.zeros(1, c, 32), torch.zeros(3 * c, c, 3), torch.zeros(3 * c),
            torch.zeros(c, c), torch.zeros(c))
    with pytest.raises(FusedKernelError):
        launch(*args, 1)
    model = accelerate(create_model(TINY_ARCH), "triton", torch.bfloat16)
    level = FastWaveBlock.level
    monkeypatch.setattr(FastWaveBlock, "level", lambda self, x, res, k, fused: (
        torch.full_like(x, float("nan")) if fused else level(self, x, res, k, fused)))
    assert check_fused(model, CPU, torch.bfloat16, length=256) == ("fused levels differ from the merged convs by inf "
                                                                   "(relative)")


def test_gate_weights_stay_contiguous_under_channels_last():
    """`model.to(channels_last)` (the 2-D backbones on GPUs) converts 4-D buffers; the merged gate weights are
    3-D, so every level's weights are contiguous views: no copy per level and call."""
    from hms_infer.models.wavenet_fast import accelerate, fast_blocks
    model = accelerate(create_model(TINY_ARCH), "merged", torch.float16).to(memory_format=torch.channels_last)
    blocks = fast_blocks(model)
    assert blocks and all(b.gate_weight_lp.dim() == 3 for b in blocks)
    for b in blocks:
        for k in range(len(b.skip_convs)):
            gw, gb, sw, sb = b.level_weights(k, torch.float16)
            assert all(w.is_contiguous() for w in (gw, gb, sw, sb))
            torch.testing.assert_close(gw.float(), torch.cat([b.dil_convs[3 * k + g].weight for g in range(3)]).half()
                                       .float(), rtol=0, atol=0)


def test_compiled_members_raise_the_recompile_limit_and_log_each_new_graph(tiny_ensemble, synthetic_dir,
                                                                         monkeypatch, caplog):
    """8 members share `forward_views`' code: at Dynamo's default limit (8 graphs) a budget level or an OOM half
    would fall back to eager silently. The limit is raised, and each new graph is logged."""
    import logging
    config = torch._dynamo.config
    monkeypatch.setattr(config, "recompile_limit", 8)
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)  # the decisions, not inductor (test_ensemble runs it)
    caplog.set_level(logging.INFO, "hms_infer")
    ens = Ensemble.from_manifest(tiny_ensemble, device="cpu", compile=True)
    assert config.recompile_limit >= 2 * 32
    electrodes, spect = _inputs(synthetic_dir, 2)
    ens.member_logits(electrodes, spect)
    ens.member_logits(electrodes, spect)
    graphs = lambda: [r.getMessage() for r in caplog.records if "compiles a graph" in r.getMessage()]  # noqa: E731
    assert graphs() == [f"torch.compile: member tiny{i} compiles a graph for 2 rows x views none,lr" for i in (0, 1)]
    ens.subset(["none"], [0]).member_logits(electrodes, spect)  # a time-budget level
    assert graphs()[-1] == "torch.compile: member tiny0 compiles a graph for 2 rows x views none"
    assert len(graphs()) == 3
