"""Device and precision choices, member placement, batch sizing, OOM fallback and bf16 bounds (runtime.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from hms_infer.data import Competition
from hms_infer.ensemble import Ensemble
from hms_infer.errors import HMSInputError
from hms_infer.models import PRESETS, create_model
from hms_infer.runtime import (
    RunStats, auto_batch_size, member_gflops, place, resolve_devices, resolve_precision, wave_backend,
)

from .conftest import tiny_manifest

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
    assert seen == [3, 2, 1, 1, 1] and "running it in halves" in caplog.text

    # still out of memory at one row: NaN logits, so that the row falls back (fallback.py), an error logged
    ens._forwards[1] = lambda eeg, s: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("always"))
    got = ens.member_logits(electrodes[:2], spect[:2])
    assert got.shape == (2, 2, 2, 6) and got.isnan().all()
    assert "out of memory even for one row" in caplog.text


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
    from hms_infer.ensemble import LoadedMember

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
