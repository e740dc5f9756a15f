"""hms_infer: inference for the 15th-place HMS harmful-brain-activity ensemble.

    import hms_infer
    frame = hms_infer.predict("test_dir", out="submission.csv", manifest="weights_manifest.yaml")
    ens = hms_infer.Ensemble.from_manifest("weights_manifest.yaml", device="cuda")
    result = hms_infer.evaluate(table="train_folds.csv", sets=[("oof", "cfg_1", "cfg_1_oof.csv")])

Every command has its API function in `hms_infer.tasks` (`hms_infer.tasks.parity.parity`,
`hms_infer.tasks.fit_weights.fit_weights`, `hms_infer.tasks.report.make_report`, ...); `hms_infer.report.figure`
draws one row in a notebook, `Ensemble.timeline` and `hms_infer.report.timeline_figure` a whole recording. The
library logs (logger `hms_infer`): `logging.basicConfig(level=logging.INFO)` shows a run's summary lines,
`logging.getLogger("hms_infer").setLevel(logging.ERROR)` silences them.
"""
from .constants import CLASSES, SUBMISSION_HEADER
from .data import Competition
from .blending import blend
from .ensemble import Ensemble
from .errors import HMSInputError
from .manifest import Manifest, Member, load_manifest
from .models import PRESETS, ArchConfig, HMSModel, create_model
from .montage import VIEWS
from .options import RunOptions
from .tasks.evaluate import evaluate
from .tasks.predict import predict

__version__ = "0.4.0"
__all__ = [
    "CLASSES", "SUBMISSION_HEADER", "VIEWS", "Competition", "Ensemble", "blend", "predict", "evaluate",
    "HMSInputError", "Manifest", "Member", "load_manifest", "PRESETS", "ArchConfig", "HMSModel", "create_model",
    "RunOptions",
]
