"""The ensemble: loaded members, brain-flip TTA on the device, and the blend (the main command that drives it over a
test folder is `tasks.predict`).

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
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .blending import blend
from .constants import HEADS
from .data import Competition
from .errors import FusedKernelError, HMSInputError
from .fallback import Problem, apply_policy
from .loader import batches
from .manifest import Fallback, Manifest, resolve_manifest
from .members import LoadedMember, load_members
from .models.multiview import forward_views, view_plan
from .models.wavenet_fast import fast_blocks, set_backend
from .montage import VIEWS, bipolar_views, parse_views
from .options import RunOptions
from .runtime import (
    DevicePool, DeviceTimer, RunStats, auto_batch_size, autocast, configure_backends, free_memory, is_out_of_memory,
    on_device, prepare, raise_compile_limits, resolve_devices, resolve_precision, wave_backend,
)
from .submission import to_submission

log = logging.getLogger(__name__)
COMPILE_GRAPHS_PER_MEMBER = 32  # a compiled graph per view set (time-budget levels) x batch size (OOM halves)
Route = Callable[[int], "Ensemble"]  # the ensemble that predicts the batch starting at a given table row
T = TypeVar("T")


class Ensemble:
    """Loaded members; `predict(test_dir)` returns the submission frame.

    Each batch's inputs go to every device once; members on different GPUs run in parallel threads.
    """

    def __init__(self, members: Sequence[LoadedMember], views: Sequence[str] = VIEWS, blend: str = "prob",
                 precision: str = "fp32", fast: bool = True, compile: bool = False, fallback: Fallback = "mean"):
        self.members = list(members)
        self.fallback = fallback
        self.views = parse_views(views, "views")
        self.blend_mode = blend
        self.precision = precision
        self.fast = fast
        self.compile = compile
        self.plan = view_plan(self.views)
        devices = self.devices
        configure_backends(devices, precision)
        backend = wave_backend(devices, precision, fast)
        failed = {m.name: prepare(m.model, m.device, precision, backend) for m in self.members}  # main thread
        failed = {name: problem for name, problem in failed.items() if problem}
        if failed:
            log.warning("the fused WaveNet kernel failed its check for %d of %d members, which run the merged gate "
                        "convs: %s", len(failed), len(self.members),
                        "; ".join(f"{name}: {problem}" for name, problem in failed.items()))
        self._pass_size: list[int | None] = [None]  # set by an out-of-memory error, kept for the run; shared
        self._compiled: set[tuple[str, int, tuple[str, ...], bool]] = set()  # shared with `subset`s
        self._subsets: dict[tuple[tuple[str, ...], tuple[str, ...]], Ensemble] = {}  # by member names; shared
        if compile:
            raise_compile_limits(COMPILE_GRAPHS_PER_MEMBER * len(self.members))
        self._forwards = [self._member_forward(m, compile) for m in self.members]
        self._pool = DevicePool(devices)

    @classmethod
    def from_manifest(cls, manifest: Manifest | str | Path, weights_dir: str | Path | None = None, *,
                      options: RunOptions | None = None, fast: bool = True, **run: Any) -> "Ensemble":
        """Load every member strictly (sha256 verified when the manifest gives one) on `options`' devices, in its
        precision, with its views (default: the manifest's); `run`: RunOptions fields by keyword (`device="cpu"`).

        `weights_dir` defaults to the manifest's folder. On several GPUs members are placed to balance their FLOPs.
        """
        options = RunOptions.of(options, **run)
        manifest, weights_dir, _ = resolve_manifest(manifest, weights_dir)
        devices = resolve_devices(options.device)
        precision = resolve_precision(options.precision, devices)
        return cls(load_members(manifest, weights_dir, devices), options.views or manifest.views, manifest.blend,
                   precision, fast, options.compile, manifest.fallback)

    @property
    def rows_per_pass(self) -> int | None:
        """The most rows a pass runs at once since an out-of-memory error (None: the whole batch)."""
        return self._pass_size[0]

    def eager(self) -> "Ensemble":
        """The same prepared members with uncompiled forwards (forward hooks see every module)."""
        if not self.compile:
            return self
        copied = copy.copy(self)
        copied._forwards = [copied._member_forward(m, False) for m in copied.members]
        copied._subsets = {}  # its subsets are uncompiled too
        return copied

    def subset(self, views: Sequence[str], members: Sequence[int]) -> "Ensemble":
        """The same loaded (and prepared) models, only `members` (indices) with `views`: the time budget's smaller
        levels, pseudo-labels' folds; `blend` re-normalises the weights over the members kept. Made once per
        (views, members) and kept (a compiled forward is not wrapped again); all of them is this ensemble."""
        key = (tuple(views), tuple(self.members[i].name for i in members))  # names: one key from any subset
        if key == (self.views, tuple(m.name for m in self.members)):
            return self
        if key not in self._subsets:
            sub = copy.copy(self)
            sub.members = [self.members[i] for i in members]
            sub.views = tuple(views)
            sub.plan = view_plan(sub.views)
            sub._forwards = [sub._member_forward(m, self.compile) for m in sub.members]
            self._subsets[key] = sub
        return self._subsets[key]

    @property
    def devices(self) -> list[torch.device]:
        return list(dict.fromkeys(m.device for m in self.members))

    @property
    def wave_backend(self) -> str:
        """How the members' WaveNet levels run: `eager`, `merged`, `triton`, or `triton (merged: <members>)`."""
        kinds = {m.name: (fast_blocks(m.model) or [None])[0] for m in self.members}
        kinds = {name: "eager" if block is None else block.backend for name, block in kinds.items()}
        if len(set(kinds.values())) == 1:
            return next(iter(kinds.values()))
        return f"triton (merged: {', '.join(n for n, k in kinds.items() if k == 'merged')})"

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
        plan = self.plan
        plan.tensors(m.device)  # made now: a compiled forward must not see the plan's cache change
        forward = functools.partial(forward_views, m.model, plan=plan, chunk=chunk, heads=heads)
        if not compile:
            return forward
        compiled = torch.compile(forward, dynamic=False)

        def run(eeg: torch.Tensor, spect: torch.Tensor) -> torch.Tensor:
            key = (m.name, eeg.shape[0], plan.views, heads)
            if key not in self._compiled:  # a new graph: minutes, which a time budget should see in the log
                self._compiled.add(key)
                log.info("torch.compile: member %s compiles a graph for %d rows x views %s", m.name, eeg.shape[0],
                         ",".join(plan.views))
            return compiled(eeg, spect)
        return run

    def _montage(self, electrodes: torch.Tensor) -> torch.Tensor:
        """(B, 19, T) -> the fast path's (B, 24, T) `none` montage, or the reference path's (B, V, 24, T) views."""
        if self.fast:
            return bipolar_views(electrodes, ("none",))[:, 0]
        return bipolar_views(electrodes, self.views)

    def batch_size(self, batch_size: int | str = "auto") -> int:
        """`auto`: what fits the GPUs' memory (`runtime.auto_batch_size`); else a positive integer."""
        if batch_size == "auto":
            return auto_batch_size([(m.arch, m.model, m.device) for m in self.members], len(self.views),
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

        On a CUDA out-of-memory error (cuBLAS and cuDNN allocation failures too) the failed pass's memory is freed
        and its rows run in passes of half as many, down to one row (still out of memory: NaN logits, so the row
        falls back); the size that fits is kept for the rest of the run, logged once per size.
        """
        n = len(electrodes)
        size = min(n, self.rows_per_pass or n)
        parts, start = [], 0
        while start < n:
            stop = min(start + size, n)
            logits = self._pass(electrodes[start:stop], spect[start:stop], stats, heads)
            if logits is not None:
                parts.append(logits)
                start = stop
            elif size == 1:
                log.error("CUDA out of memory even for one row on %s (%d members x %d views): the row falls back",
                          ",".join(map(str, self.devices)), len(self.members), len(self.views))
                head_dim = (len(HEADS),) if heads else ()
                parts.append(torch.full((len(self.members), 1, len(self.views), *head_dim, 6), float("nan")))
                start = stop
            else:
                size = self._pass_size[0] = (size + 1) // 2
                log.warning("CUDA out of memory at %d rows per pass: running %d rows per pass from now on, in halves "
                            "(lower --batch-size)", stop - start, size)
        return torch.cat(parts, dim=1)

    def _pass(self, electrodes: torch.Tensor, spect: torch.Tensor, stats: RunStats | None, heads: bool
              ) -> torch.Tensor | None:
        """(M, n, V, 6) logits of every member on every device, or None when a device ran out of memory: then the
        failed pass's tensors (held by the error's frames) are freed once this handler is left, before a retry."""
        try:
            done: dict[int, torch.Tensor] = {}
            work = {d: self._runner(d, electrodes, spect, stats, heads) for d in self.devices}
            for part in self._pool.map(work).values():
                done.update(part)
            return torch.stack([done[i] for i in range(len(self.members))])
        except Exception as e:  # noqa: BLE001  filtered below; anything else propagates
            if not is_out_of_memory(e):
                raise
        free_memory(self.devices)
        return None

    def _member_pass(self, i: int, eeg: torch.Tensor, spect: torch.Tensor, heads: bool) -> torch.Tensor:
        """Member i's logits; where its fused WaveNet levels fail (a late compile or launch error, not a lack of
        memory) the member switches to the merged convs for good, with one warning, and runs this batch again."""
        m = self.members[i]
        forward = self._member_forward(m, False, True) if heads else self._forwards[i]
        try:
            return forward(eeg, spect).float()
        except FusedKernelError as e:
            reason = str(e)
        set_backend(m.model, "merged")
        log.warning("member %s: the fused WaveNet kernel failed on %s (%s); it runs the merged gate convs from now "
                    "on, starting with this batch again", m.name, m.device, reason)
        return forward(eeg, spect).float()

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
                        outs.append(self._member_pass(i, eeg, s, heads))
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
                     strict: bool = False, heads: bool = False, route: Route | None = None,
                     after_batch: Callable[[int, int], object] | None = None, cuts: Sequence[int] = ()
                     ) -> Iterator[tuple[list[int], torch.Tensor, list[tuple[Problem, ...]]]]:
        """Per batch of the table rows `rows` (default: all, in order): (row indices, (M, n, V, 6) logits, each
        row's problems). An unusable input is an all-NaN window and a problem (`fallback`), or with `strict` an
        error. `heads`: (M, n, V, 4, 6) logits of every head (`member_logits`). `route(first row)`: the ensemble
        (a `subset` of this one) that predicts a batch, asked when the batch arrives (default: this one);
        `after_batch(rows, first row)` once the batch has been consumed (the time budget's tracker); `cuts`:
        positions in `rows` where a batch must start (`loader.batches`).

        On GPUs the last, smaller batch is padded to the batch size (to whole passes after an out-of-memory
        error): every pass has one shape, so cuDNN's benchmark mode picks its kernels once.
        """
        rows = list(range(len(comp))) if rows is None else list(rows)
        size = self.batch_size(batch_size)
        cuda = any(d.type == "cuda" for d in self.devices)
        stats = stats if stats is not None else RunStats()
        bar = tqdm(total=len(rows), desc="hms_infer", unit="row", disable=not progress)
        loader = (((index, problems), electrodes, spect) for index, electrodes, spect, problems
                  in batches(comp, size, num_workers, pin_memory=cuda, rows=rows, strict=strict, cuts=cuts))
        try:
            for (index, problems), logits in self.stream_logits(
                    loader, size, stats, heads, None if route is None else lambda meta: route(int(meta[0][0]))):
                bar.update(len(index))
                yield index.tolist(), logits, problems
                if after_batch is not None:
                    after_batch(len(index), int(index[0]))
        finally:
            bar.close()  # before any message

    def stream_logits(self, loader: Iterator[tuple[T, torch.Tensor, torch.Tensor]], batch_size: int,
                      stats: RunStats, heads: bool = False, route: Callable[[T], "Ensemble"] | None = None
                      ) -> Iterator[tuple[T, torch.Tensor]]:
        """Per `(meta, electrodes (n, 19, T), spect (n, 10, 300, 100))` of `loader`: `(meta, (M, n, V, 6) logits)`
        (`heads`: see `member_logits`), with the time waited for input, the first batch's and the wall time in
        `stats`. `route(meta)`: the ensemble (a `subset` of this one) that computes a batch (default: this one).

        On GPUs a batch smaller than `batch_size` is padded to it (to whole passes after an out-of-memory error):
        every pass has one shape, so cuDNN's benchmark mode picks its kernels once.
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
            active = self if route is None else route(meta)
            passes = active.rows_per_pass
            whole = batch_size if passes is None else min(batch_size, -(-n // passes) * passes)
            if cuda and n < whole:
                pad = [n - 1] * (whole - n)
                electrodes, spect = torch.cat([electrodes, electrodes[pad]]), torch.cat([spect, spect[pad]])
            logits = active.member_logits(electrodes, spect, stats, heads)[:, :n]
            stats.rows += n
            stats.batches += 1
            if stats.batches == 1:
                stats.first_batch_s = time.perf_counter() - start
            yield meta, logits
        stats.wall_s += time.perf_counter() - start

    def batch_probs(self, comp: Competition, rows: Sequence[int] | None = None, batch_size: int | str = "auto",
                    num_workers: int | str = "auto", progress: bool = True, stats: RunStats | None = None,
                    strict: bool = False, route: Route | None = None,
                    after_batch: Callable[[int, int], object] | None = None, cuts: Sequence[int] = ()
                    ) -> Iterator[tuple[list[int], np.ndarray, dict[int, list[Problem]]]]:
        """Per batch (see `batch_logits`, whose options these are): (row indices, (n, 6) blended probabilities in
        `CLASSES` order, the problems of each row that has some). Each batch is blended by the ensemble that
        predicted it; a row whose probabilities are not finite gets NaN and a `model` problem (with `strict`: an
        error)."""
        for index, logits, problems in self.batch_logits(comp, rows, batch_size, num_workers, progress, stats,
                                                         strict=strict, route=route, after_batch=after_batch,
                                                         cuts=cuts):
            p = (self if route is None else route(index[0])).blend(logits)
            found: dict[int, list[Problem]] = {}
            for i, row_problems, row_probs in zip(index, problems, p):
                if not np.isfinite(row_probs).all():
                    what = f"{comp.table_name} row {i} (eeg_id {comp.rows[i].eeg_id})"
                    if strict:
                        raise HMSInputError(f"{what}: the models gave no finite probabilities")
                    row_probs[:] = np.nan
                    row_problems = (*row_problems, ("model", what, "the models gave no finite probabilities"))
                if row_problems:
                    found[i] = list(row_problems)
            yield index, p, found

    def predict_rows(self, comp: Competition, rows: Sequence[int] | None = None, batch_size: int | str = "auto",
                     num_workers: int | str = "auto", progress: bool = True, stats: RunStats | None = None,
                     strict: bool = False, route: Route | None = None,
                     after_batch: Callable[[int, int], object] | None = None
                     ) -> tuple[np.ndarray, dict[int, list[Problem]]]:
        """(len(rows), 6) probabilities in `CLASSES` order of the table rows `rows` (default: all), in order, and
        the problems of each table row that has some (`fallback`): `batch_probs` gathered."""
        rows = list(range(len(comp))) if rows is None else list(rows)
        where = {r: k for k, r in enumerate(rows)}
        probs = np.zeros((len(rows), 6))
        found: dict[int, list[Problem]] = {}
        for index, p, problems in self.batch_probs(comp, rows, batch_size, num_workers, progress, stats, strict,
                                                   route, after_batch):
            probs[[where[i] for i in index]] = p
            found.update(problems)
        return probs, found

    def predict(self, test_dir: str | Path | Competition, batch_size: int | str = "auto",
                num_workers: int | str = "auto", progress: bool = True) -> pd.DataFrame:
        """Submission frame (Kaggle columns), one row per table row in order; rows without usable input follow
        the fallback policy (`fallback`; `hms_infer.predict` also reports them)."""
        comp = test_dir if isinstance(test_dir, Competition) else Competition(test_dir, "test")
        probs, problems = self.predict_rows(comp, None, batch_size, num_workers, progress)
        probs, _ = apply_policy(probs, problems, self.fallback)
        return to_submission([r.eeg_id for r in comp.rows], probs)
