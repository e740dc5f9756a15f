"""The fast path computes what the eager definition computes: shared views, merged gate convs, the fused kernel."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hms_infer.checkpoint import load_weights
from hms_infer.montage import CHAIN_SIZE, VIEWS
from hms_infer.data import Competition
from hms_infer.models import create_model
from hms_infer.models.multiview import forward_views, view_plan
from hms_infer.models.wavenet import WaveBlock
from hms_infer.models.wavenet_fast import FastWaveBlock, accelerate
from hms_infer.preprocess import eeg_electrodes, spectrogram_image
from hms_infer.montage import bipolar, signed_permutation

from .conftest import REFERENCE, TINY_ARCH, reference_keys, reference_tiny_config


def test_every_view_is_a_signed_permutation_of_the_montage_within_chains(synthetic_dir):
    _, eeg, _ = Competition(synthetic_dir, "test")[0]
    el = eeg_electrodes(eeg)
    base = bipolar(el, "none")
    for view in VIEWS:
        perm = signed_permutation(view)
        assert all(ch // CHAIN_SIZE == i // CHAIN_SIZE for i, (ch, _) in enumerate(perm))
        np.testing.assert_array_equal(bipolar(el, view), np.stack([s * base[ch] for ch, s in perm]))
    # lr swaps hemispheres (P3-P4, F3-F4 reverse), fb reverses the chains' direction (negated)
    assert signed_permutation("lr")[22:] == ((22, -1), (23, -1))
    assert signed_permutation("fb")[0] == (3, -1)


def test_view_plan_runs_each_distinct_signed_signal_once():
    plan = view_plan(VIEWS)
    assert [len(c) for c in plan.inputs] == [16, 16, 10]  # 42 WaveNet signals instead of 96
    assert [len(c) for c in view_plan(("none",)).inputs] == [8, 8, 8]
    for v, view in enumerate(VIEWS):
        perm = signed_permutation(view)
        for c in range(3):
            got = [plan.inputs[c][u] for u in plan.gather[c][v]]
            assert got == list(perm[c * CHAIN_SIZE:(c + 1) * CHAIN_SIZE])


def _reference_model():
    model = create_model(reference_tiny_config())
    return load_weights(model, load_file(REFERENCE / "tiny_model" / "weights.safetensors"), "tiny", "tiny")


@pytest.mark.parametrize("backend", ["eager", "merged"])
def test_forward_views_equals_one_forward_per_view(reference, synthetic_dir, backend):
    model = accelerate(_reference_model(), backend)
    comp = Competition(synthetic_dir, "test")
    els = [eeg_electrodes(comp[i][1]) for i in range(2)]
    eeg = torch.from_numpy(np.stack([bipolar(e, "none") for e in els]))
    spect = torch.from_numpy(np.stack([spectrogram_image(comp[i][2]) for i in range(2)]))
    plan = view_plan(VIEWS)
    with torch.inference_mode():
        fast = forward_views(model, eeg, spect, plan)
        each = torch.stack([model(torch.from_numpy(np.stack([bipolar(e, v) for e in els])), spect)["all"]
                            for v in VIEWS], dim=1)
    assert fast.shape == (2, 4, 6)
    torch.testing.assert_close(fast, each, rtol=0, atol=1e-5)
    assert (each.softmax(-1) - fast.softmax(-1)).abs().max() < 1e-5


@pytest.mark.parametrize("cin,c,levels,ds", [(1, 4, 15, 0), (12, 16, 4, 0), (24, 28, 1, 5)])
def test_merged_gate_convs_equal_the_eager_block_in_fp32(cin, c, levels, ds):
    torch.manual_seed(cin)
    block = WaveBlock(cin, c, levels, ds).eval()
    x = torch.randn(3, cin, 2000) * 4
    with torch.inference_mode():
        want = block(x)
        got = FastWaveBlock(block, "merged")(x)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-6 * max(want.abs().max().item(), 1.0)


def test_accelerate_keeps_every_state_dict_key_and_remerges_on_load(reference):
    with torch.device("meta"):
        fast = accelerate(create_model("cfg_2"), "merged")
    got = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in fast.state_dict().items()]
    assert got == reference_keys(reference, "cfg_2")
    assert sum(isinstance(m, FastWaveBlock) for m in fast.modules()) == 3 * 8

    # weights loaded after accelerating are the ones the merged convs use
    torch.manual_seed(0)
    model = accelerate(create_model(TINY_ARCH), "merged")
    other = create_model(TINY_ARCH)  # another random init
    model.load_state_dict(other.state_dict(), strict=True)
    x = torch.randn(2, 24, 10000)
    with torch.inference_mode():
        torch.testing.assert_close(model.eeg_backbone_1d(x), other.eeg_backbone_1d(x), rtol=0, atol=1e-5)


INTERPRET_CHECK = """
import json, os, torch
assert os.environ["TRITON_INTERPRET"] == "1"
from hms_infer.kernels.wave_level import wave_level
from hms_infer.models.wavenet import WaveBlock
from hms_infer.models.wavenet_fast import FastWaveBlock
out = []
for cin, c, levels, t in [(1, 4, 8, 300), (12, 16, 3, 97), (24, 28, 2, 64)]:
    torch.manual_seed(c)
    block = WaveBlock(cin, c, levels).eval()
    fast = FastWaveBlock(block, "merged")
    x0 = torch.randn(2, cin, t) * 3
    with torch.inference_mode():
        want = block(x0)
        res = block.conv1x1(x0)
        for dtype in (torch.float32, torch.float16):
            x = res.to(dtype)
            for k in range(levels):  # dilations up to 128, beyond the signal: the halo is all padding
                x = wave_level(x, res.to(dtype), *fast.level_weights(k, dtype), 2 ** k)
            err = (x.float() - want).abs().max().item() / want.abs().max().item()
            out.append({"c": c, "t": t, "dtype": str(dtype), "rel_err": err, "finite": bool(x.isfinite().all())})
print(json.dumps(out))
"""


def test_triton_kernel_matches_the_eager_levels_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", INTERPRET_CHECK], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == 6
    for r in results:
        assert r["finite"], r
        assert r["rel_err"] < (1e-6 if r["dtype"] == "torch.float32" else 5e-3), r


RACE_CHECK = """
import json, os, threading, time, torch, triton
assert os.environ["TRITON_INTERPRET"] == "1"
from hms_infer.kernels import wave_level as K
SLEEP = 0.5
kernel, first_timing, start = K._wave_level_kernel, threading.Event(), threading.Barrier(2)
tuned = isinstance(kernel, triton.runtime.Autotuner)  # 0.3.0's kernel
if tuned:  # tuned as on a GPU: several tiles, each timed (which takes time)
    kernel.configs = [triton.Config({"BLOCK_T": 32}), triton.Config({"BLOCK_T": 64})]
    def timed(call, quantiles):
        call()
        first_timing.set()
        time.sleep(SLEEP)
        return [1.0, 1.0, 1.0]
    kernel._do_bench = timed
    lock, run = threading.Lock(), kernel.fn.run  # the interpreter is not thread-safe (compiled GPU kernels are):
    def serialised(*a, **kw):                    # serialise it, so that what is left is the autotuner's state
        with lock:
            return run(*a, **kw)
    kernel.fn.run = serialised
errors, worst = [], {}

def level(c, second):
    g = torch.Generator().manual_seed(c)
    x, res = torch.randn(2, c, 64, generator=g), torch.randn(2, c, 64, generator=g)
    gw, gb = torch.randn(3 * c, c, 3, generator=g) / (3 * c) ** .5, torch.randn(3 * c, generator=g) * .1
    sw, sb = torch.randn(c, c, generator=g) / c ** .5, torch.randn(c, generator=g) * .1
    s, t, m = torch.nn.functional.conv1d(x, gw, gb, padding=2, dilation=2).chunk(3, 1)
    want = torch.nn.functional.conv1d(torch.sigmoid(s) * torch.tanh(t) * torch.nn.functional.mish(m), sw[..., None],
                                      sb) + res
    start.wait()  # both threads launch at once
    if second and tuned:  # arrive while the first thread is in the middle of its tuning
        first_timing.wait(timeout=1)
        time.sleep(SLEEP / 2)
    try:
        got = K.wave_level(x, res, gw, gb, sw, sb, 2)
        worst[c] = ((got - want).abs().max() / want.abs().max()).item()
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")

# two channel counts never launched before, one thread each (as the launching threads of two GPUs)
threads = [threading.Thread(target=level, args=(c, second)) for c, second in ((8, False), (16, True))]
[t.start() for t in threads]; [t.join() for t in threads]
print(json.dumps({"errors": errors, "worst": worst}))
"""


def test_two_launching_threads_meeting_new_channel_counts_do_not_crash():
    """Each GPU has its own launching thread (`DevicePool`); at the first batch both meet channel counts never
    launched before. Triton's autotuner keeps a call's arguments on the shared kernel object and clears them when
    the call ends, so the slower thread crashed (`TypeError: 'NoneType' object is not a mapping`; 0.3.0). Fixed
    tiles and a launch lock: both threads get the eager numbers."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", RACE_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] == [] and sorted(result["worst"]) == ["16", "8"], result
    assert max(result["worst"].values()) < 1e-6, result


FUSED_CHECK = """
import json, os, torch
assert os.environ["TRITON_INTERPRET"] == "1"
from hms_infer.kernels.wave_level import check_level_args, wave_level
from hms_infer.models import create_model
from hms_infer.models.wavenet_fast import accelerate, check_fused
arch = json.loads(os.environ["ARCH"])
torch.manual_seed(0)
model = accelerate(create_model(arch), "triton", torch.float16)
out = {"check": check_fused(model, torch.device("cpu"), torch.float16, length=256)}  # every C and dilation
g = torch.Generator().manual_seed(1)
c = 12
x = torch.randn(2, 40, c, generator=g).transpose(1, 2)  # non-contiguous (N, C, T)
args = (x, torch.randn(2, c, 40, generator=g), torch.randn(3 * c, c, 3, generator=g) / 6,
        torch.randn(3 * c, generator=g) * .1, torch.randn(c, c, generator=g) / 4, torch.randn(c, generator=g) * .1)
y = wave_level(*args, 4)
out["contiguous"] = y.is_contiguous()
torch.library.opcheck(torch.ops.hms_infer.wave_level.default, (*args, 4))  # fake and real agree (shape, strides)
try:
    wave_level(args[0], args[1], args[2][:, :, :2], *args[3:], 4)
except ValueError as e:
    out["bad_shape"] = str(e)
print(json.dumps(out))
"""


def test_check_fused_compiles_every_level_of_a_model_and_the_op_agrees_with_its_fake():
    env = {**os.environ, "TRITON_INTERPRET": "1", "ARCH": json.dumps(TINY_ARCH)}
    done = subprocess.run([sys.executable, "-c", FUSED_CHECK], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["check"] is None and out["contiguous"] is True, out
    assert out["bad_shape"] == "wave_level: gate_weight must be (36, 12, 3) for x (2, 12, 40), got (36, 12, 2)"
