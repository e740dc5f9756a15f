"""hms_infer: inference for the 15th-place HMS harmful-brain-activity ensemble.

    import hms_infer
    frame = hms_infer.predict("test_dir", out="submission.csv", manifest="weights_manifest.yaml")
    ens = hms_infer.Ensemble.from_manifest("weights_manifest.yaml", device="cuda")
    result = hms_infer.evaluate(table="train_folds.csv", sets=[("oof", "cfg_1", "cfg_1_oof.csv")])
    eeg = hms_infer.read_recording("patient01.edf")   # the 19 electrodes in µV at 200 Hz (the recordings extra)

Every command has its API function in `hms_infer.tasks` (`hms_infer.tasks.parity.parity`,
`hms_infer.tasks.fit_weights.fit_weights`, `hms_infer.tasks.report.make_report`, ...); `hms_infer.report.figure`
draws one row in a notebook, `hms_infer.timeline.timeline_frame` and `hms_infer.report.timeline_figure` a whole
recording. The library logs (logger `hms_infer`): `logging.basicConfig(level=logging.INFO)` shows a run's summary
lines, `logging.getLogger("hms_infer").setLevel(logging.ERROR)` silences them.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.6.0"
# The public names, each imported from its module on first use (PEP 562): `import hms_infer`, `--help` and
# `--version` import neither torch nor timm.
_EXPORTS: dict[str, str] = {
    "CLASSES": "constants", "SUBMISSION_HEADER": "constants", "VIEWS": "montage", "Competition": "data",
    "Ensemble": "ensemble", "blend": "blending", "predict": "tasks.predict", "evaluate": "tasks.evaluate",
    "HMSInputError": "errors", "Manifest": "manifest", "Member": "manifest", "load_manifest": "manifest",
    "PRESETS": "models", "ArchConfig": "models", "HMSModel": "models", "create_model": "models",
    "RunOptions": "options", "read_recording": "recordings.reader",
}
__all__ = [  # written out (not `list(_EXPORTS)`): static tools (type checkers, the docs' API reference) read it
    "CLASSES", "SUBMISSION_HEADER", "VIEWS", "Competition", "Ensemble", "blend", "predict", "evaluate",
    "HMSInputError", "Manifest", "Member", "load_manifest", "PRESETS", "ArchConfig", "HMSModel", "create_model",
    "RunOptions", "read_recording",
]

if TYPE_CHECKING:  # what the names are, for type checkers and the layout test's import graph
    from .blending import blend
    from .constants import CLASSES, SUBMISSION_HEADER
    from .data import Competition
    from .ensemble import Ensemble
    from .errors import HMSInputError
    from .manifest import Manifest, Member, load_manifest
    from .models import PRESETS, ArchConfig, HMSModel, create_model
    from .montage import VIEWS
    from .options import RunOptions
    from .recordings.reader import read_recording
    from .tasks.evaluate import evaluate
    from .tasks.predict import predict


def __getattr__(name: str) -> Any:
    """A public name, imported from its module the first time it is read (then kept as a module attribute)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
