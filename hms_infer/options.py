"""How a command runs the models, as one value: built once (by the CLI, or in a notebook) and handed to every task.

    RunOptions(device="cuda", precision="auto", views=("none", "lr"), batch_size=16)
    RunOptions.of(None, device="cpu")   # the defaults with some fields given by keyword
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from .montage import parse_views


@dataclass(frozen=True)
class RunOptions:
    """device: `auto` (every GPU, else the CPU), `cpu`, `cuda` or a list `cuda:0,cuda:1`; precision: `auto` (fp16
    autocast on GPUs, fp32 on the CPU), `fp32`, `fp16`, `bf16`; views: the TTA views (None: the manifest's);
    batch_size: rows per batch (`auto`: what fits the GPU); num_workers: DataLoader workers (`auto`: cores - 1, at
    most 8); compile: `torch.compile` each member; shard: `i/n` of a run split over processes (None: torchrun's
    rank, else the whole run); progress: tqdm bars."""

    device: str = "auto"
    precision: str = "auto"
    views: tuple[str, ...] | None = None
    batch_size: int | str = "auto"
    num_workers: int | str = "auto"
    compile: bool = False
    shard: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.views is not None:  # `none,lr` (as the CLI's --tta gives it) or a sequence
            object.__setattr__(self, "views", parse_views(self.views, "--tta"))

    @classmethod
    def of(cls, options: "RunOptions | None" = None, **changes: Any) -> "RunOptions":
        """`options` (default: the defaults) with `changes`; a name that is not a field is a TypeError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"unknown run option(s) {unknown}; RunOptions has {sorted(names)}")
        return replace(options or cls(), **changes)
