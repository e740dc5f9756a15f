"""`demo`: the whole pipeline on synthetic data with random weights.

It writes a synthetic competition folder, random-initialised cfg_1 and cfg_5 checkpoints saved the way the
training code saves them (`head_all` redrawn so that their logits on the demo's rows spread like a trained model's:
`members.random_model`), their manifest (the `manifest` task), runs the main command, then the `report` on the
same rows (`report/index.html`) and the `timeline` of one short synthetic training recording
(`timeline/index.html`); the last two are skipped, with a line saying so, where matplotlib is missing. The
probabilities are meaningless: the weights are random.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import torch

from ..constants import MANIFEST_NAME
from ..data import Competition
from ..members import random_model
from ..models import PRESETS
from ..montage import bipolar
from ..options import RunOptions
from ..preprocess import eeg_electrodes, spectrogram_image
from ..synthetic import write_competition, write_recording
from .manifest import write_manifest
from .predict import predict

log = logging.getLogger(__name__)
DEMO_PRESETS = ("cfg_1", "cfg_5")
# one training recording of 60 s with two labelled windows, its timeline every 10 s: two windows (full-size models
# take many seconds per window on 2 CPU cores)
DEMO_RECORDING = {"eeg_id": 3000000, "spectrogram_id": 700000, "seconds": 60.0, "label_offsets": (0.0, 10.0)}
DEMO_STRIDE_S = 10.0


def run_demo(*, root: str | Path = "demo_out", device: str = "auto", rows: int = 4) -> Path:
    """Write everything under `root` and return the submission path."""
    root = Path(root)
    log.info("hms_infer demo: RANDOM weights on SYNTHETIC data; the probabilities are meaningless.")
    data = write_competition(root / "data", n_test=rows)
    weights = root / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    checkpoints, inputs = [], None
    for fold, name in enumerate(DEMO_PRESETS):
        path = weights / f"{PRESETS[name].backbone}_{fold}_0.pt"  # <backbone>_<fold>_<seed>.pt
        if not path.is_file():
            inputs = inputs or _model_inputs(data)
            torch.save(random_model(name, seed=fold, inputs=inputs).state_dict(), path)
        checkpoints.append(path)
    manifest = weights / MANIFEST_NAME
    write_manifest(checkpoints=checkpoints, out=manifest)
    on_gpu = device != "cpu" and torch.cuda.is_available()
    # full-size models on the CPU: one view keeps the demo's time down
    options = RunOptions(device=device, views=None if on_gpu else ("none",))
    out = root / "submission.csv"
    predict(data, out=out, manifest=manifest, options=options)
    log.info(f"hms_infer demo: wrote {out} (random weights: meaningless probabilities)")
    if importlib.util.find_spec("matplotlib") is None:
        log.info("hms_infer demo: no report and no timeline (they need matplotlib: pip install 'hms_infer[plot]')")
        return out
    from .report import make_report
    from .timeline import timeline
    report = root / "report"
    make_report(data_dir=data, out=report, manifest=manifest, options=options)
    log.info(f"hms_infer demo: open {report / 'index.html'} to see what the models saw")
    write_recording(data, **DEMO_RECORDING)
    timeline(data_dir=data, out=root / "timeline", manifest=manifest, split="train",
             eeg_ids=[DEMO_RECORDING["eeg_id"]], stride=DEMO_STRIDE_S, options=options)
    log.info(f"hms_infer demo: open {root / 'timeline' / 'index.html'} to see the predictions along a recording")
    return out


def _model_inputs(data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The model inputs (view `none`) of the test rows and of the first training row (two rows at least):
    eeg (B, 24, 10000), spect (B, 10, 300, 100)."""
    rows = [(bipolar(eeg_electrodes(eeg)), spectrogram_image(spect))
            for _, eeg, spect in (*Competition(data), Competition(data, "train")[0])]
    return tuple(torch.from_numpy(np.stack(x)) for x in zip(*rows))
