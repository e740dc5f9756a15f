"""`demo`: the whole pipeline on synthetic data with random weights.

It writes a synthetic competition folder, random-initialised cfg_1 and cfg_5 checkpoints saved the way the
training code saves them (`head_all` redrawn so that their logits on the demo's rows spread like a trained model's:
`members.random_model`), their manifest (the `manifest` task), runs the main command, then the `report` on the
same rows (`report/index.html`) and the `timeline` of one short synthetic training recording
(`timeline/index.html`); the last two are skipped, with a line saying so, where matplotlib is missing. The
probabilities are meaningless: the weights are random. Each stage logs a line as it starts and its seconds as it
ends (`[2/5] random members: 61.2 s (demo so far 62.0 s)`); the last line sums them up.
"""
from __future__ import annotations

import importlib.util
import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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


class _Stages:
    """Numbered stages of `total`, each logged as it starts and with its seconds as it ends."""

    def __init__(self, total: int):
        self.total, self.t0 = total, time.perf_counter()
        self.done: list[tuple[str, float]] = []  # (name, seconds) of each finished stage

    @contextmanager
    def __call__(self, name: str, what: str) -> Iterator[None]:
        tag = f"hms_infer demo [{len(self.done) + 1}/{self.total}] {what}"
        log.info(f"{tag} ...")
        t = time.perf_counter()
        yield
        self.done.append((name, time.perf_counter() - t))
        log.info(f"{tag}: {self.done[-1][1]:.1f} s (demo so far {self.elapsed():.1f} s)")

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def summary(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.done)


def run_demo(*, root: str | Path = "demo_out", device: str = "auto", rows: int = 4) -> Path:
    """Write everything under `root` and return the submission path."""
    root = Path(root)
    log.info("hms_infer demo: RANDOM weights on SYNTHETIC data; the probabilities are meaningless.")
    plots = importlib.util.find_spec("matplotlib") is not None
    stage = _Stages(5 if plots else 3)
    with stage("data", f"synthetic competition folder {root / 'data'} ({rows} test rows and a training table)"):
        data = write_competition(root / "data", n_test=rows)
    with stage("members", f"random members {', '.join(DEMO_PRESETS)} (full-size, head_all drawn to spread logits)"):
        manifest = _write_members(data, root / "weights")
    on_gpu = device != "cpu" and torch.cuda.is_available()
    # full-size models on the CPU: one view keeps the demo's time down
    options = RunOptions(device=device, views=None if on_gpu else ("none",))
    out = root / "submission.csv"
    with stage("predict", f"predict {rows} test rows ({'every view' if on_gpu else 'view none'})"):
        predict(data, out=out, manifest=manifest, options=options)
    log.info(f"hms_infer demo: wrote {out} (random weights: meaningless probabilities)")
    if not plots:
        log.info("hms_infer demo: no report and no timeline (they need matplotlib: pip install 'hms_infer[plot]')")
    else:
        from .report import make_report
        from .timeline import timeline
        report = root / "report"
        with stage("report", f"report of the {rows} test rows"):
            make_report(data_dir=data, out=report, manifest=manifest, options=options)
        log.info(f"hms_infer demo: open {report / 'index.html'} to see what the models saw")
        seconds = DEMO_RECORDING["seconds"]
        with stage("timeline", f"timeline of a {seconds:g}-s training recording, a window every {DEMO_STRIDE_S:g} s"):
            write_recording(data, **DEMO_RECORDING)
            timeline(data_dir=data, out=root / "timeline", manifest=manifest, split="train",
                     eeg_ids=[DEMO_RECORDING["eeg_id"]], stride=DEMO_STRIDE_S, options=options)
        log.info(f"hms_infer demo: open {root / 'timeline' / 'index.html'} to see the predictions along a recording")
    log.info(f"hms_infer demo: done in {stage.elapsed():.1f} s ({stage.summary()})")
    return out


def _write_members(data: Path, weights: Path) -> Path:
    """The demo's random members saved as the training code saves them (kept if there from an earlier run) and their
    manifest; returns the manifest's path. Logs each member's seconds."""
    weights.mkdir(parents=True, exist_ok=True)
    checkpoints, inputs = [], None
    for fold, name in enumerate(DEMO_PRESETS):
        path = weights / f"{PRESETS[name].backbone}_{fold}_0.pt"  # <backbone>_<fold>_<seed>.pt
        if path.is_file():
            log.info(f"hms_infer demo:   {name}: {path} from an earlier run, kept")
        else:
            t = time.perf_counter()
            if inputs is None:
                inputs = _model_inputs(data)
                log.info(f"hms_infer demo:   model inputs of {len(inputs[0])} rows for the heads: "
                         f"{time.perf_counter() - t:.1f} s")
                t = time.perf_counter()
            torch.save(random_model(name, seed=fold, inputs=inputs).state_dict(), path)
            log.info(f"hms_infer demo:   {name}: random weights, head_all drawn to spread on those rows, saved to "
                     f"{path}: {time.perf_counter() - t:.1f} s")
        checkpoints.append(path)
    manifest = weights / MANIFEST_NAME
    write_manifest(checkpoints=checkpoints, out=manifest)
    return manifest


def _model_inputs(data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The model inputs (view `none`) of the test rows and of the first training row (two rows at least):
    eeg (B, 24, 10000), spect (B, 10, 300, 100)."""
    rows = [(bipolar(eeg_electrodes(eeg)), spectrogram_image(spect))
            for _, eeg, spect in (*Competition(data), Competition(data, "train")[0])]
    return tuple(torch.from_numpy(np.stack(x)) for x in zip(*rows))
