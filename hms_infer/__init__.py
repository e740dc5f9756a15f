"""hms_infer: inference for the 15th-place HMS harmful-brain-activity ensemble.

    import hms_infer
    frame = hms_infer.predict("test_dir", out="submission.csv", manifest="weights_manifest.yaml")
    ens = hms_infer.Ensemble.from_manifest("weights_manifest.yaml", device="cuda")

More, each the API of a command: `hms_infer.report.figure` / `make_report` (report), `hms_infer.fitweights.fit_weights`
(fit-weights), `hms_infer.pseudo_labels.pseudo_labels` (pseudo-labels), `hms_infer.parity`, `hms_infer.bench`,
`hms_infer.tasks.timeline.timeline` (timeline; `Ensemble.timeline`, `hms_infer.report.timeline_figure`).
"""
from .constants import CLASSES, SUBMISSION_HEADER, VIEWS
from .data import Competition
from .ensemble import Ensemble, blend, predict
from .errors import HMSInputError
from .manifest import Manifest, Member, load_manifest
from .models import PRESETS, ArchConfig, HMSModel, create_model

__version__ = "0.3.0"
__all__ = [
    "CLASSES", "SUBMISSION_HEADER", "VIEWS", "Competition", "Ensemble", "blend", "predict", "HMSInputError",
    "Manifest", "Member", "load_manifest", "PRESETS", "ArchConfig", "HMSModel", "create_model",
]
