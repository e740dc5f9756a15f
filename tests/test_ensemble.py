"""Blend, TTA views, class-to-column mapping, and end-to-end CLI runs with tiny-backbone checkpoints."""
from __future__ import annotations

import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from hms_infer.cli import main
from hms_infer.constants import CLASSES, SUBMISSION_HEADER
from hms_infer.montage import VIEWS
from hms_infer.data import Competition
from hms_infer.blending import blend
from hms_infer.ensemble import Ensemble
from hms_infer.montage import bipolar_views
from hms_infer.errors import HMSInputError
from hms_infer.preprocess import eeg_electrodes, spectrogram_image
from hms_infer.montage import bipolar
from hms_infer.submission import to_submission, validate_probabilities

from .conftest import tiny_manifest


def _softmax(xs):
    e = [math.exp(x) for x in xs]
    return [v / sum(e) for v in e]


def test_blend_formulas_on_hand_computed_numbers():
    # 2 members x 1 sample x 2 views x 6 classes; weights 3:1 -> 0.75, 0.25
    a1, a2 = [1, 0, 0, 0, 0, 0], [0, 2, 0, 0, 0, 0]
    b1, b2 = [0, 0, 0, 0, 0, 3], [0, 0, 0, 0, 0, 1]
    logits = torch.tensor([[[a1, a2]], [[b1, b2]]], dtype=torch.float32)
    prob = blend(logits, [3.0, 1.0], "prob")[0].tolist()
    expect = [0.75 * (p + q) / 2 + 0.25 * (r + s) / 2
              for p, q, r, s in zip(_softmax(a1), _softmax(a2), _softmax(b1), _softmax(b2))]
    assert prob == pytest.approx(expect, abs=1e-12)
    logit = blend(logits, [3.0, 1.0], "logit")[0].tolist()
    mean = [0.75 * (p + q) / 2 + 0.25 * (r + s) / 2 for p, q, r, s in zip(a1, a2, b1, b2)]
    assert logit == pytest.approx(_softmax(mean), abs=1e-12)
    # equal weights, one view: prob blend is the plain mean of the two softmaxes
    assert blend(logits[:, :, :1], [1, 1], "prob")[0, 5].item() == pytest.approx(
        (_softmax(a1)[5] + _softmax(b1)[5]) / 2)


def test_class_to_column_mapping():
    assert SUBMISSION_HEADER == ("eeg_id", "seizure_vote", "lpd_vote", "gpd_vote", "lrda_vote", "grda_vote",
                                 "other_vote")
    assert CLASSES == ("gpd", "grda", "lpd", "lrda", "other", "seizure")
    for i, cls in enumerate(CLASSES):
        probs = np.zeros((1, 6))
        probs[0, i] = 1.0
        frame = to_submission([7], probs)
        assert list(frame.columns) == list(SUBMISSION_HEADER)
        assert frame.loc[0, f"{cls}_vote"] == 1.0 and frame.iloc[0, 1:].sum() == 1.0


def test_probabilities_are_validated():
    validate_probabilities(np.full((2, 6), 1 / 6))
    for bad, msg in [([np.nan] + [0.2] * 5, "non-finite"), ([1.2, -0.2, 0, 0, 0, 0], "outside"),
                     ([0.5] * 6, "do not sum to 1")]:
        with pytest.raises(HMSInputError, match=f"row 1: .*{msg}"):
            validate_probabilities(np.array([[1 / 6] * 6, bad]))


def test_bipolar_views_on_the_device_equal_the_numpy_montage(synthetic_dir):
    _, eeg, _ = Competition(synthetic_dir, "test")[0]
    el = eeg_electrodes(eeg)
    views = bipolar_views(torch.from_numpy(el)[None], VIEWS)
    assert views.shape == (1, 4, 24, 10000)
    for v, name in enumerate(VIEWS):
        np.testing.assert_array_equal(views[0, v].numpy(), bipolar(el, name))


@pytest.fixture(scope="module")
def tiny_manifest_path(tiny_weights):
    path = tiny_weights / "weights_manifest.yaml"
    path.write_text(yaml.safe_dump(tiny_manifest(tiny_weights, tta=("none", "lr"))))
    return path


def test_end_to_end_cli_with_duplicate_rows(synthetic_dir, tiny_manifest_path, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(synthetic_dir, root)
    table = pd.read_csv(root / "test.csv").iloc[:2]
    table = pd.concat([table, table.iloc[[0]]], ignore_index=True)  # a duplicate eeg_id row
    table.to_csv(root / "test.csv", index=False)
    out = tmp_path / "sub" / "submission.csv"
    code = main(["--test-dir", str(root), "--out", str(out), "--manifest", str(tiny_manifest_path),
                 "--device", "cpu", "--num-workers", "1", "--batch-size", "2"])
    assert code == 0
    sub = pd.read_csv(out)
    assert list(sub.columns) == list(SUBMISSION_HEADER)
    assert sub.eeg_id.tolist() == table.eeg_id.tolist()
    probs = sub.iloc[:, 1:].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-9) and (probs > 0).all() and (probs < 1).all()
    # the duplicate row is computed in another batch position: oneDNN may pick other kernels per batch shape (3e-11
    # with one intra-op thread), so equal to 1e-9, not bit-equal
    np.testing.assert_allclose(probs[0], probs[2], rtol=0, atol=1e-9)
    assert not np.allclose(probs[0], probs[1])
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("hms_infer: 3 rows (0 degraded, 0 fallback) in ") and "rows/s" in summary
    assert "2 members x 2 views" in summary

    # the same numbers by hand: mean over members of mean over views of softmax(model(view, spect))
    ens = Ensemble.from_manifest(tiny_manifest_path, device="cpu")
    _, eeg, spect = Competition(root, "test")[1]
    el, img = eeg_electrodes(eeg), torch.from_numpy(spectrogram_image(spect))[None]
    member_probs = []
    with torch.inference_mode():
        for m in ens.members:
            views = [m.model(torch.from_numpy(bipolar(el, v))[None], img)["all"].softmax(-1) for v in ("none", "lr")]
            member_probs.append(torch.stack(views).mean(0)[0].double())
    expect = torch.stack(member_probs).mean(0).numpy()
    np.testing.assert_allclose(sub.iloc[1, 1:].to_numpy(dtype=float),
                               expect[[CLASSES.index(c) for c in ("seizure", "lpd", "gpd", "lrda", "grda", "other")]],
                               atol=1e-6)


def test_strict_run_stops_at_a_bad_row_and_leaves_the_previous_output_untouched(synthetic_dir, tiny_manifest_path,
                                                                                tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(synthetic_dir, root)
    first = pd.read_csv(root / "test.csv").eeg_id[0]
    (root / "test_eegs" / f"{first}.parquet").unlink()
    out = tmp_path / "submission.csv"
    out.write_text("previous\n")
    code = main(["--test-dir", str(root), "--out", str(out), "--manifest", str(tiny_manifest_path),
                 "--device", "cpu", "--num-workers", "2", "--tta", "none", "--strict"])
    err = capsys.readouterr().err
    assert code == 2 and f"{first}.parquet: file not found (needed by test.csv row 0 (eeg_id {first}))" in err
    assert "Traceback" not in err
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "submission.csv"]  # no temp file left


def test_missing_checkpoint_and_bad_device_are_clear_errors(tiny_weights, tmp_path, synthetic_dir, capsys):
    d = tiny_manifest(tiny_weights)
    d["members"][1]["checkpoint"] = "nope.pt"
    path = tiny_weights / "missing.yaml"
    path.write_text(yaml.safe_dump(d))
    code = main(["--test-dir", str(synthetic_dir), "--out", str(tmp_path / "s.csv"), "--manifest", str(path),
                 "--device", "cpu"])
    assert code == 2 and "nope.pt: checkpoint not found" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(HMSInputError, match="no CUDA device"):
            Ensemble.from_manifest(tiny_weights / "missing.yaml", device="cuda")


@pytest.mark.slow
def test_demo_runs_end_to_end_with_full_size_presets(tmp_path, capsys):
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--device", "cpu", "--rows", "1"]) == 0
    out = tmp_path / "demo" / "submission.csv"
    text = capsys.readouterr().out
    assert "RANDOM weights" in text and "cfg_1" in text and "cfg_5" in text
    sub = pd.read_csv(out)
    assert list(sub.columns) == list(SUBMISSION_HEADER) and len(sub) == 1
    assert sub.iloc[0, 1:].sum() == pytest.approx(1.0)
    index = tmp_path / "demo" / "report" / "index.html"  # the report of its rows (tests/test_report.py checks it)
    assert index.is_file() and f"open {index}" in text and len(list(index.parent.glob("*.png"))) == 1
    assert sub.iloc[0, 1:].max() - sub.iloc[0, 1:].min() > 0.02  # head_all redrawn: not 1/6 everywhere
    timeline = tmp_path / "demo" / "timeline"  # one synthetic recording (tests/test_timeline.py checks the pages)
    assert f"open {timeline / 'index.html'}" in text and (timeline / "3000000.png").is_file()
    windows = pd.read_parquet(timeline / "timeline.parquet")
    assert windows.offset_s.tolist() == [0.0, 10.0]
    probs = windows[list(SUBMISSION_HEADER[1:])].to_numpy()
    assert np.abs(probs[0] - probs[1]).max() > 0.02  # the members answer their input: windows 10 s apart differ
    # every stage: a line as it starts, its seconds as it ends, in order, each output inside its stage; a summary
    stages = [("data", "synthetic competition folder"), ("members", "random members cfg_1, cfg_5"),
              ("predict", "predict 1 test rows"), ("report", "report of the 1 test rows"), ("timeline", "timeline of")]
    ends = re.findall(r"^hms_infer demo \[(\d)/5\] (.+): (\d+\.\d) s \(demo so far (\d+\.\d) s\)$", text, re.M)
    assert [(int(i), what.startswith(start)) for (i, what, _, _), (_, start) in zip(ends, stages)] == \
        [(i, True) for i in range(1, 6)] and len(ends) == 5
    seconds = [float(t) for _, _, t, _ in ends]
    so_far = [float(t) for _, _, _, t in ends]
    assert all(t > 0 for t in seconds) and so_far == sorted(so_far) and so_far[-1] >= sum(seconds) - 0.3
    positions = [text.index(f"hms_infer demo [{i + 1}/5] {what} ...\n") for i, (_, what, _, _) in enumerate(ends)]
    assert positions == sorted(positions)
    for inside, stage in (("cfg_5: random weights, head_all drawn to spread", 1), ("hms_infer: 1 rows (", 2),
                          (f"open {index}", 3)):
        assert positions[stage] < text.index(inside) < (positions + [len(text)])[stage + 1], inside
    done = re.search(r"^hms_infer demo: done in (\d+\.\d) s \((.+)\)$", text, re.M)
    assert done.group(2) == ", ".join(f"{name} {t:.1f} s" for (name, _), t in zip(stages, seconds))
    assert float(done.group(1)) >= so_far[-1]


@pytest.mark.slow
def test_compiled_members_give_the_eager_numbers(synthetic_dir, tiny_manifest_path, tmp_path, capsys):
    """`--compile` (torch.compile of each member's fast forward; ~1 minute to compile on 2 CPU cores)."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_dir, root)
    pd.read_csv(root / "test.csv").iloc[:2].to_csv(root / "test.csv", index=False)
    outs = {}
    for flag in ([], ["--compile"]):
        outs[bool(flag)] = tmp_path / f"sub{len(flag)}.csv"
        assert main(["--test-dir", str(root), "--out", str(outs[bool(flag)]), "--manifest", str(tiny_manifest_path),
                     "--device", "cpu", "--num-workers", "0", "--tta", "none", *flag]) == 0
    eager, compiled = pd.read_csv(outs[False]), pd.read_csv(outs[True])
    assert np.abs(eager.iloc[:, 1:].to_numpy() - compiled.iloc[:, 1:].to_numpy()).max() < 1e-6
