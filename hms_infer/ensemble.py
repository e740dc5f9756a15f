"""The ensemble: members from a manifest, brain-flip TTA batched on the device, and the blend."""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .checkpoint import load_weights, read_state_dict, sha256
from .constants import VIEWS
from .data import Competition
from .errors import HMSInputError
from .loader import batches
from .manifest import Manifest, load_manifest, parse_tta
from .models import HMSModel, create_model
from .preprocess import montage_index
from .submission import to_submission, write_submission

log = logging.getLogger(__name__)
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_devices(device: str = "auto") -> list[torch.device]:
    """`auto`: every visible GPU, else CPU; `cuda`: every visible GPU; or a comma list like `cuda:0,cuda:1`."""
    if device in ("auto", "cuda"):
        n = torch.cuda.device_count()
        if n:
            return [torch.device("cuda", i) for i in range(n)]
        if device == "cuda":
            raise HMSInputError("--device cuda: no CUDA device is visible")
        return [torch.device("cpu")]
    try:
        devices = [torch.device(d.strip()) for d in device.split(",")]
    except RuntimeError as e:
        raise HMSInputError(f"--device {device!r}: {e}") from None
    if any(d.type == "cuda" for d in devices) and not torch.cuda.is_available():
        raise HMSInputError(f"--device {device}: no CUDA device is visible")
    return devices


def resolve_precision(precision: str, devices: Sequence[torch.device]) -> str:
    """`auto`: fp16 autocast on GPUs (as the training code validated: fp16-mixed), fp32 on CPU."""
    if precision == "auto":
        return "fp16" if devices[0].type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise HMSInputError(f"--precision must be auto or one of {list(PRECISIONS)}, got {precision!r}")
    return precision


def bipolar_views(electrodes: torch.Tensor, views: Sequence[str]) -> torch.Tensor:
    """(B, 19, T) electrodes -> (B, V, 24, T) node differences of each brain-flip view."""
    index = torch.tensor([montage_index(v) for v in views], device=electrodes.device)  # (V, 2, 24)
    return electrodes[:, index[:, 0]] - electrodes[:, index[:, 1]]


def blend(logits: torch.Tensor, weights: Sequence[float], how: str = "prob") -> torch.Tensor:
    """(M, B, V, 6) member x view logits -> (B, 6) probabilities.

    prob:  sum_m w_m * mean_v softmax(logits)        logit: softmax(sum_m w_m * mean_v logits)
    Weights are normalised to sum to 1.
    """
    w = torch.as_tensor(weights, dtype=torch.float64)
    w = (w / w.sum()).view(-1, 1, 1)
    logits = logits.double()
    if how == "prob":
        return (w * logits.softmax(-1).mean(2)).sum(0)
    if how == "logit":
        return (w * logits.mean(2)).sum(0).softmax(-1)
    raise ValueError(f"blend must be 'prob' or 'logit', got {how!r}")


@dataclass
class LoadedMember:
    name: str
    model: HMSModel
    weight: float
    device: torch.device


class Ensemble:
    """Loaded members; `predict(test_dir)` returns the submission frame.

    Members are spread round-robin over `devices`; each batch's inputs go to every device once, and the
    spectrogram branch runs once per sample for all views.
    """

    def __init__(self, members: Sequence[LoadedMember], tta: Sequence[str] = VIEWS, blend: str = "prob",
                 precision: str = "fp32"):
        self.members = list(members)
        self.tta = parse_tta(list(tta), "tta")
        self.blend_mode = blend
        self.precision = precision

    @classmethod
    def from_manifest(cls, manifest: Manifest | str | Path, weights_dir: str | Path | None = None,
                      device: str = "auto", precision: str = "auto", tta: Sequence[str] | str | None = None
                      ) -> "Ensemble":
        """Load every member strictly (sha256 verified when the manifest gives one).

        `weights_dir` defaults to the manifest's folder; `tta` overrides the manifest's views.
        """
        if not isinstance(manifest, Manifest):
            weights_dir = weights_dir or Path(manifest).parent
            manifest = load_manifest(manifest)
        weights_dir = Path(weights_dir or ".")
        devices = resolve_devices(device)
        if any(d.type == "cuda" for d in devices):
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        members = []
        for i, m in enumerate(manifest.members):
            path = m.checkpoint_path(weights_dir)
            digest = sha256(path) if m.sha256 and path.is_file() else m.sha256
            if digest != m.sha256:
                raise HMSInputError(f"{path}: sha256 {digest} does not match the manifest's {m.sha256} "
                                    f"(member {m.name})")
            model = load_weights(create_model(m.arch), read_state_dict(path), str(path),
                                 m.arch if isinstance(m.arch, str) else f"{m.name} (custom arch)")
            dev = devices[i % len(devices)]
            members.append(LoadedMember(m.name, model.to(dev).eval(), m.weight, dev))
        views = manifest.tta if tta is None else parse_tta(tta, "--tta")
        return cls(members, views, manifest.blend, resolve_precision(precision, devices))

    @property
    def devices(self) -> list[torch.device]:
        return list(dict.fromkeys(m.device for m in self.members))

    def _autocast(self, device: torch.device):
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    @torch.inference_mode()
    def member_logits(self, electrodes: torch.Tensor, spect: torch.Tensor) -> torch.Tensor:
        """(B, 19, T) electrodes, (B, 10, 300, 100) spectrogram -> (M, B, V, 6) float32 `head_all` logits on CPU."""
        inputs = {}
        for dev in self.devices:
            e = electrodes.to(dev, non_blocking=True)
            inputs[dev] = (bipolar_views(e, self.tta), spect.to(dev, non_blocking=True))
        outs = []
        for m in self.members:  # launches are asynchronous: members on different GPUs overlap
            with self._autocast(m.device):
                outs.append(m.model.predict_views(*inputs[m.device]))
        return torch.stack([o.float().cpu() for o in outs])

    def predict_proba(self, electrodes: torch.Tensor, spect: torch.Tensor) -> np.ndarray:
        """(B, 6) blended probabilities in `CLASSES` order."""
        logits = self.member_logits(electrodes, spect)
        return blend(logits, [m.weight for m in self.members], self.blend_mode).numpy()

    def predict(self, test_dir: str | Path | Competition, batch_size: int = 8, num_workers: int = 2,
                progress: bool = True) -> pd.DataFrame:
        """Submission frame (Kaggle columns), one row per table row in order."""
        comp = test_dir if isinstance(test_dir, Competition) else Competition(test_dir, "test")
        probs = np.zeros((len(comp), 6))
        pin = any(d.type == "cuda" for d in self.devices)
        bar = tqdm(total=len(comp), desc="hms_infer", unit="row", disable=not progress)
        for index, electrodes, spect in batches(comp, batch_size, num_workers, pin_memory=pin):
            probs[index.numpy()] = self.predict_proba(electrodes, spect)
            bar.update(len(index))
        bar.close()
        return to_submission([r.eeg_id for r in comp.rows], probs)


def predict(test_dir: str | Path, out: str | Path | None = None, manifest: str | Path = "weights_manifest.yaml",
            weights_dir: str | Path | None = None, device: str = "auto", precision: str = "auto",
            tta: Sequence[str] | str | None = None, batch_size: int = 8, num_workers: int = 2,
            progress: bool = True) -> pd.DataFrame:
    """Run the ensemble of `manifest` on a test folder; write the submission atomically to `out` if given."""
    t0 = time.perf_counter()
    comp = Competition(test_dir, "test")
    ens = Ensemble.from_manifest(manifest, weights_dir, device, precision, tta)
    t1 = time.perf_counter()
    frame = ens.predict(comp, batch_size, num_workers, progress)
    if out is not None:
        write_submission(frame, out)
    dt = time.perf_counter() - t1
    devices = ",".join(str(d) for d in ens.devices)
    print(f"hms_infer: {len(frame)} rows in {dt:.1f} s ({len(frame) / dt:.2f} rows/s; models loaded in "
          f"{t1 - t0:.1f} s), {len(ens.members)} members x {len(ens.tta)} views on {devices} {ens.precision}"
          + (f" -> {out}" if out is not None else ""))
    return frame
