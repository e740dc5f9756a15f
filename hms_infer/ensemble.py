"""The ensemble: members from a manifest, brain-flip TTA on the device, and the blend.

Two paths compute the same numbers. The fast one (default) forms the `none` montage on the device and runs all
views of a member in one pass that shares what the views share (`models.multiview`), with the merged or fused
WaveNet levels (`models.wavenet_fast`), channels-last 2-D backbones on GPUs and optionally `torch.compile`. The
reference one (`fast=False`) runs `HMSModel.forward` once per view, as the training code did. Devices,
precision, placement and batch sizing live in `runtime`.
"""
from __future__ import annotations

import copy
import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .budget import Budget, parse_budget
from .checkpoint import load_weights, read_state_dict, sha256
from .constants import HEADS, VIEWS
from .data import Competition
from .errors import HMSInputError
from .fallback import Problem, announce, apply_policy, finish_run, status_counts, write_report
from .files import check_writable
from .loader import batches, resolve_workers
from .manifest import Fallback, Manifest, load_manifest, parse_tta
from .models import ArchConfig, HMSModel, create_model, resolve_arch
from .models.multiview import forward_views, view_plan
from .preprocess import montage_index
from .runtime import (
    DevicePool, DeviceTimer, RunStats, auto_batch_size, autocast, configure_backends, on_device, place_members,
    prepare, resolve_devices, resolve_precision, wave_backend,
)
from .submission import to_submission, write_submission

log = logging.getLogger(__name__)
T = TypeVar("T")
_INDEX: dict[tuple[torch.device, tuple[str, ...]], torch.Tensor] = {}


def bipolar_views(electrodes: torch.Tensor, views: Sequence[str]) -> torch.Tensor:
    """(B, 19, T) electrodes -> (B, V, 24, T) node differences of each brain-flip view."""
    key = (electrodes.device, tuple(views))
    if key not in _INDEX:  # once per device: no host-to-device copy (and stream sync) per batch
        _INDEX[key] = torch.tensor([montage_index(v) for v in views], device=electrodes.device)  # (V, 2, 24)
    index = _INDEX[key]
    return electrodes[:, index[:, 0]] - electrodes[:, index[:, 1]]


def blend(logits: torch.Tensor, weights: Sequence[float] | torch.Tensor, how: str = "prob",
          temperatures: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """(M, B, V, 6) member x view logits -> (B, 6) probabilities.

    prob:  sum_m w_m * mean_v softmax(logits)        logit: softmax(sum_m w_m * mean_v logits)
    Weights are normalised to sum to 1. `temperatures` (M,): each member's logits are divided by its own first
    (None: unchanged). Differentiable in float64 tensor weights and temperatures (`fit` minimises through it).
    """
    w = torch.as_tensor(weights, dtype=torch.float64)
    w = (w / w.sum()).view(-1, 1, 1)
    logits = logits.double()
    if temperatures is not None:
        logits = logits / torch.as_tensor(temperatures, dtype=torch.float64).view(-1, 1, 1, 1)
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
    temperature: float = 1.0  # logits are divided by it before the blend

    @property
    def arch(self) -> ArchConfig:
        return self.model.cfg


class Ensemble:
    """Loaded members; `predict(test_dir)` returns the submission frame.

    Each batch's inputs go to every device once; members on different GPUs run in parallel threads.
    """

    def __init__(self, members: Sequence[LoadedMember], tta: Sequence[str] = VIEWS, blend: str = "prob",
                 precision: str = "fp32", fast: bool = True, compile: bool = False, fallback: Fallback = "mean"):
        self.members = list(members)
        self.fallback = fallback
        self.tta = parse_tta(list(tta), "tta")
        self.blend_mode = blend
        self.precision = precision
        self.fast = fast
        self.compile = compile
        self.plan = view_plan(tuple(self.tta))
        devices = self.devices
        configure_backends(devices, precision)
        self.wave_backend = wave_backend(devices, precision, fast)
        for m in self.members:
            prepare(m.model, m.device, precision, self.wave_backend)
        self._forwards = [self._member_forward(m, compile) for m in self.members]
        self._pool = DevicePool(devices)

    @classmethod
    def from_manifest(cls, manifest: Manifest | str | Path, weights_dir: str | Path | None = None,
                      device: str = "auto", precision: str = "auto", tta: Sequence[str] | str | None = None,
                      fast: bool = True, compile: bool = False) -> "Ensemble":
        """Load every member strictly (sha256 verified when the manifest gives one).

        `weights_dir` defaults to the manifest's folder; `tta` overrides the manifest's views. On several GPUs
        members are placed to balance their FLOPs.
        """
        if not isinstance(manifest, Manifest):
            weights_dir = weights_dir or Path(manifest).parent
            manifest = load_manifest(manifest)
        weights_dir = Path(weights_dir or ".")
        devices = resolve_devices(device)
        precision = resolve_precision(precision, devices)
        archs = [resolve_arch(m.arch) for m in manifest.members]
        placed = place_members(archs, devices)
        members = []
        for m, dev in zip(manifest.members, placed):
            path = m.checkpoint_path(weights_dir)
            digest = sha256(path) if m.sha256 and path.is_file() else m.sha256
            if digest != m.sha256:
                raise HMSInputError(f"{path}: sha256 {digest} does not match the manifest's {m.sha256} "
                                    f"(member {m.name})")
            try:
                model = create_model(m.arch)
            except (ValueError, TypeError, AssertionError, RuntimeError) as e:  # timm or nnAudio refusing the arch
                raise HMSInputError(f"member {m.name}: cannot build its arch {m.arch!r}: {e}") from None
            model = load_weights(model, read_state_dict(path), str(path),
                                 m.arch if isinstance(m.arch, str) else f"{m.name} (custom arch)")
            members.append(LoadedMember(m.name, model.to(dev).eval(), m.weight, dev, m.temperature))
        views = manifest.tta if tta is None else parse_tta(tta, "--tta")
        return cls(members, views, manifest.blend, precision, fast, compile, manifest.fallback)

    def subset(self, views: Sequence[str], members: Sequence[int]) -> "Ensemble":
        """The same loaded (and prepared) models, only `members` (indices) with `views`: the time budget's smaller
        levels (`budget`); `blend` re-normalises the weights over the members kept."""
        sub = copy.copy(self)
        sub.members = [self.members[i] for i in members]
        sub.tta = list(views)
        sub.plan = view_plan(tuple(views))
        sub._forwards = [sub._member_forward(m, self.compile) for m in sub.members]
        return sub

    @property
    def devices(self) -> list[torch.device]:
        return list(dict.fromkeys(m.device for m in self.members))

    def _member_forward(self, m: LoadedMember, compile: bool, heads: bool = False
                        ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """(eeg, spect) -> (B, V, 6) `head_all` logits (`heads`: (B, V, 4, 6), every head in `HEADS` order); eeg is
        the `none` montage (B, 24, T) on the fast path, every view's (B, V, 24, T) on the reference path."""
        if not self.fast:
            def each_view(eeg_views: torch.Tensor, spect: torch.Tensor) -> torch.Tensor:
                outs = [m.model(eeg_views[:, v], spect) for v in range(eeg_views.shape[1])]
                if heads:
                    return torch.stack([torch.stack([o[k] for k in HEADS], 1) for o in outs], 1)
                return torch.stack([o["all"] for o in outs], 1)
            return each_view
        chunk = None if m.device.type == "cuda" else 1  # see forward_views
        self.plan.tensors(m.device)  # made now: a compiled forward must not see the plan's cache change
        forward = functools.partial(forward_views, m.model, plan=self.plan, chunk=chunk, heads=heads)
        return torch.compile(forward, dynamic=False) if compile else forward

    def _montage(self, electrodes: torch.Tensor) -> torch.Tensor:
        """(B, 19, T) -> the fast path's (B, 24, T) `none` montage, or the reference path's (B, V, 24, T) views."""
        if self.fast:
            return bipolar_views(electrodes, ("none",))[:, 0]
        return bipolar_views(electrodes, self.tta)

    def batch_size(self, batch_size: int | str = "auto") -> int:
        """`auto`: what fits the GPUs' memory (`runtime.auto_batch_size`); else a positive integer."""
        if batch_size == "auto":
            return auto_batch_size([(m.arch, m.model, m.device) for m in self.members], len(self.tta),
                                   self.precision)
        try:
            n = int(batch_size)
        except (TypeError, ValueError):
            n = 0
        if n < 1:
            raise HMSInputError(f"--batch-size must be auto or a positive integer, got {batch_size!r}")
        return n

    @torch.inference_mode()
    def member_logits(self, electrodes: torch.Tensor, spect: torch.Tensor, stats: RunStats | None = None,
                      heads: bool = False) -> torch.Tensor:
        """(B, 19, T) electrodes, (B, 10, 300, 100) spectrogram -> (M, B, V, 6) float32 `head_all` logits on CPU;
        `heads`: (M, B, V, 4, 6), every head in `HEADS` order from the same pass (eager, never compiled).

        On a CUDA out-of-memory error the batch runs in two halves (and so on, down to one row).
        """
        try:
            done: dict[int, torch.Tensor] = {}
            work = {d: self._runner(d, electrodes, spect, stats, heads) for d in self.devices}
            for part in self._pool.map(work).values():
                done.update(part)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            n = len(electrodes)
            if n == 1:  # NaN logits: the row falls back (or, with strict, is an error)
                log.error("CUDA out of memory even for one row on %s (%d members x %d views)",
                          ",".join(map(str, self.devices)), len(self.members), len(self.tta))
                head_dim = (len(HEADS),) if heads else ()
                return torch.full((len(self.members), 1, len(self.tta), *head_dim, 6), float("nan"))
            log.warning("CUDA out of memory at %d rows per batch: running it in halves (lower --batch-size)", n)
            h = (n + 1) // 2
            return torch.cat([self.member_logits(electrodes[:h], spect[:h], stats, heads),
                              self.member_logits(electrodes[h:], spect[h:], stats, heads)], dim=1)
        return torch.stack([done[i] for i in range(len(self.members))])

    def _runner(self, dev: torch.device, electrodes: torch.Tensor, spect: torch.Tensor, stats: RunStats | None,
                heads: bool = False) -> Callable[[], dict[int, torch.Tensor]]:
        """The work of one device for one batch: its members' logits, keyed by member index."""
        def run() -> dict[int, torch.Tensor]:
            with torch.inference_mode(), on_device(dev):
                timer = DeviceTimer(dev)
                timer.start()
                eeg = self._montage(electrodes.to(dev, non_blocking=True))
                s = spect.to(dev, non_blocking=True)
                mine = [i for i, m in enumerate(self.members) if m.device == dev]
                outs = []
                for i in mine:
                    with autocast(dev, self.precision):
                        forward = self._member_forward(self.members[i], False, True) if heads else self._forwards[i]
                        outs.append(forward(eeg, s).float())
                elapsed = timer.stop()
                logits = torch.stack(outs).cpu()
            if stats is not None:
                stats.busy_s[str(dev)] = stats.busy_s.get(str(dev), 0.0) + elapsed()
            return dict(zip(mine, logits))
        return run

    def predict_proba(self, electrodes: torch.Tensor, spect: torch.Tensor) -> np.ndarray:
        """(B, 6) blended probabilities in `CLASSES` order."""
        return self.blend(self.member_logits(electrodes, spect))

    def blend(self, logits: torch.Tensor) -> np.ndarray:
        """(M, B, V, 6) logits -> (B, 6) probabilities, with the members' weights, temperatures and blend mode."""
        return blend(logits, [m.weight for m in self.members], self.blend_mode,
                     [m.temperature for m in self.members]).numpy()

    def batch_logits(self, comp: Competition, rows: Sequence[int] | None = None, batch_size: int | str = "auto",
                     num_workers: int | str = "auto", progress: bool = True, stats: RunStats | None = None,
                     strict: bool = False, heads: bool = False, budget: Budget | None = None
                     ) -> Iterator[tuple[list[int], torch.Tensor, list[tuple[Problem, ...]]]]:
        """Per batch of the table rows `rows` (default: all, in order): (row indices, (M, n, V, 6) logits, each
        row's problems). An unusable input is an all-NaN window and a problem (`fallback`), or with `strict` an
        error. `heads`: (M, n, V, 4, 6) logits of every head (`member_logits`). With a `budget`, a batch's logits
        come from `budget.ensemble` (its level's members and views; it moves to a smaller level when the batch has
        been consumed).

        On GPUs the last, smaller batch is padded to the batch size: every batch has one shape, so cuDNN's
        benchmark mode picks its kernels once.
        """
        rows = list(range(len(comp))) if rows is None else list(rows)
        size = self.batch_size(batch_size)
        cuda = any(d.type == "cuda" for d in self.devices)
        stats = stats if stats is not None else RunStats()
        bar = tqdm(total=len(rows), desc="hms_infer", unit="row", disable=not progress)
        loader = (((index, problems), electrodes, spect) for index, electrodes, spect, problems
                  in batches(comp, size, num_workers, pin_memory=cuda, rows=rows, strict=strict))
        level = None if budget is None else (lambda: budget.ensemble)
        try:
            for (index, problems), logits in self.stream_logits(loader, size, stats, heads, level):
                bar.update(len(index))
                yield index.tolist(), logits, problems
                if budget is not None:
                    budget.batch_done(len(index), int(index[0]))
        finally:
            bar.close()  # before any message

    def stream_logits(self, loader: Iterator[tuple[T, torch.Tensor, torch.Tensor]], batch_size: int,
                      stats: RunStats, heads: bool = False, level: Callable[[], "Ensemble"] | None = None
                      ) -> Iterator[tuple[T, torch.Tensor]]:
        """Per `(meta, electrodes (n, 19, T), spect (n, 10, 300, 100))` of `loader`: `(meta, (M, n, V, 6) logits)`
        (`heads`: see `member_logits`), with the time waited for input, the first batch's and the wall time in
        `stats`. `level()`: the ensemble that computes the next batch (the time budget's; default this one).

        On GPUs a batch smaller than `batch_size` is padded to it: every batch has one shape, so cuDNN's benchmark
        mode picks its kernels once.
        """
        cuda = any(d.type == "cuda" for d in self.devices)
        start = time.perf_counter()
        while True:
            t = time.perf_counter()
            item = next(loader, None)
            stats.wait_s += time.perf_counter() - t
            if item is None:
                break
            meta, electrodes, spect = item
            n = len(electrodes)
            if cuda and n < batch_size:
                pad = [n - 1] * (batch_size - n)
                electrodes, spect = torch.cat([electrodes, electrodes[pad]]), torch.cat([spect, spect[pad]])
            active = self if level is None else level()
            logits = active.member_logits(electrodes, spect, stats, heads)[:, :n]
            stats.rows += n
            stats.batches += 1
            if stats.batches == 1:
                stats.first_batch_s = time.perf_counter() - start
            yield meta, logits
        stats.wall_s += time.perf_counter() - start

    def predict_rows(self, comp: Competition, rows: Sequence[int] | None = None, batch_size: int | str = "auto",
                     num_workers: int | str = "auto", progress: bool = True, stats: RunStats | None = None,
                     strict: bool = False, budget: Budget | None = None
                     ) -> tuple[np.ndarray, dict[int, list[Problem]]]:
        """(len(rows), 6) probabilities in `CLASSES` order of the table rows `rows` (default: all), in order, and
        the problems of each table row that has some (`fallback`); a row whose probabilities are not finite gets
        NaN and a `model` problem (with `strict`: an error). `budget`: see `batch_logits`."""
        rows = list(range(len(comp))) if rows is None else list(rows)
        where = {r: k for k, r in enumerate(rows)}
        probs = np.zeros((len(rows), 6))
        found: dict[int, list[Problem]] = {}
        for index, logits, problems in self.batch_logits(comp, rows, batch_size, num_workers, progress, stats,
                                                         strict=strict, budget=budget):
            p = (self if budget is None else budget.ensemble).blend(logits)
            for i, row_problems, row_probs in zip(index, problems, p):
                if not np.isfinite(row_probs).all():
                    what = f"{comp.table_name} row {i} (eeg_id {comp.rows[i].eeg_id})"
                    if strict:
                        raise HMSInputError(f"{what}: the models gave no finite probabilities")
                    row_probs[:] = np.nan
                    row_problems = (*row_problems, ("model", what, "the models gave no finite probabilities"))
                if row_problems:
                    found[i] = list(row_problems)
                probs[where[i]] = row_probs
        return probs, found

    def predict(self, test_dir: str | Path | Competition, batch_size: int | str = "auto",
                num_workers: int | str = "auto", progress: bool = True) -> pd.DataFrame:
        """Submission frame (Kaggle columns), one row per table row in order; rows without usable input follow
        the fallback policy (`fallback`; `predict()` also reports them)."""
        comp = test_dir if isinstance(test_dir, Competition) else Competition(test_dir, "test")
        probs, problems = self.predict_rows(comp, None, batch_size, num_workers, progress)
        probs, _ = apply_policy(probs, problems, self.fallback)
        return to_submission([r.eeg_id for r in comp.rows], probs)

    def timeline(self, competition: Competition, eeg_id: int, stride: float = 2.0, members: bool = False,
                 batch_size: int | str = "auto", num_workers: int | str = 0, progress: bool = False) -> pd.DataFrame:
        """The prediction along a whole recording (`hms_infer.timeline`): one row per 50-s window of `eeg_id`'s EEG
        every `stride` seconds (train split: plus its labelled offsets; test split: the row's own window), with
        `eeg_id`, `offset_s`, the six probabilities (the submission's columns), with `members` each member's
        (`<member>/<column>`), and the window's input quality (`eeg_nan_share`, `flat_channels`,
        `spect_padded_frames`). Each file is read once."""
        from .timeline import recording_timeline
        return recording_timeline(self, competition, eeg_id, stride, members, batch_size, num_workers,
                                  progress).frame


def predict(test_dir: str | Path, out: str | Path | None = None, manifest: str | Path = "weights_manifest.yaml",
            weights_dir: str | Path | None = None, device: str = "auto", precision: str = "auto",
            tta: Sequence[str] | str | None = None, batch_size: int | str = "auto", num_workers: int | str = "auto",
            progress: bool = True, shard: str | None = None, compile: bool = False, strict: bool = False,
            time_budget: float | str | None = None) -> pd.DataFrame:
    """Run the ensemble of `manifest` on a test folder; write the submission atomically to `out` if given.

    Every fault that does not depend on a row (table, options, output path, manifest, checkpoints) is an error
    before any inference. Rows without usable input follow the policy in `fallback` (degraded / fallback rows are
    printed as a table and written as JSON beside `out`, `<out>.issues.json`); with `strict` the first is an error.
    `shard` (`i/n`, or torchrun's RANK / WORLD_SIZE) predicts every n-th batch from the i-th and writes it as a
    part beside `out`; the process that completes the set of parts (rank 0 under torchrun) writes `out`, the same
    bytes as one process would. A shard that does not merge returns its own rows only.
    `time_budget` (seconds, counted from this call; per process): past its projection, the remaining rows run with
    fewer views, then fewer members (`budget`); what was dropped is logged and written to `<out>.issues.json`.
    """
    from .sharding import Shard, fingerprint
    t0 = time.perf_counter()
    budget_s = parse_budget(time_budget)
    comp = Competition(test_dir, "test")
    part = Shard.resolve(shard)
    if part.count > 1 and out is None:
        raise HMSInputError("sharding needs an output path: the parts are written beside it")
    if out is not None:
        check_writable(out)
    workers = resolve_workers(num_workers)
    ens = Ensemble.from_manifest(manifest, weights_dir, device, precision, tta, compile=compile)
    size = ens.batch_size(batch_size)
    rows = part.rows(len(comp), size)
    t1 = time.perf_counter()
    budget = None if budget_s is None else Budget(ens, budget_s, len(rows), spent_s=t1 - t0)
    probs, problems = ens.predict_rows(comp, rows, size, workers, progress, strict=strict, budget=budget)
    merged = (probs, problems)
    if part.count > 1:
        key = fingerprint(comp.table, Path(manifest).read_text(), ens.tta, ens.blend_mode, ens.precision, size,
                          part.count)
        merged = part.gather(Path(f"{out}.parts"), key, rows, probs, len(comp), problems)
    dt = time.perf_counter() - t1
    devices = ",".join(str(d) for d in ens.devices)
    how = (f"{len(ens.members)} members x {len(ens.tta)} views on {devices} {ens.precision}, batch {size}, "
           f"WaveNet {ens.wave_backend}")
    ids = [r.eeg_id for r in comp.rows]
    if budget is not None:
        print(budget.summary())
    if merged is None:
        print(f"hms_infer: shard {part}: {len(rows)} rows in {dt:.1f} s ({len(rows) / dt:.2f} rows/s), {how}; "
              f"part written to {out}.parts")
        return to_submission([ids[r] for r in rows], np.nan_to_num(probs))
    probs, issues = finish_run(*merged, ens.fallback, ids, comp.table_name)
    frame = to_submission(ids, probs)
    if issues:
        print(announce(issues, len(comp), ens.fallback))
    if out is not None:
        write_submission(frame, out)
        report = Path(out).with_suffix(".issues.json")
        write_report(report, issues, len(comp), None if budget is None else budget.tracker.report())
    n = status_counts(issues)
    print(f"hms_infer: {len(frame)} rows ({n['degraded']} degraded, {n['fallback']} fallback) in {dt:.1f} s "
          f"({len(frame) / dt:.2f} rows/s; models loaded in {t1 - t0:.1f} s), {how}"
          + (f" -> {out} (problem rows: {report})" if out is not None else ""))
    return frame
