"""Domain constants of the HMS competition and of the 15th-place training code (SPEC §1-2), and the names the
package's files and options share.

Everything that names an electrode, a class or a window size is defined here once; the montage (bipolar pairs,
chains, brain flips, views) in `montage`.
"""
from __future__ import annotations

# §1 Classes: model logits are in alphabetical order; the submission has its own column order.
# CLASSES is also the training code's label order (its normalised votes; `oof_noisy_student.pkl`).
CLASSES: tuple[str, ...] = ("gpd", "grda", "lpd", "lrda", "other", "seizure")
SUBMISSION_CLASSES: tuple[str, ...] = ("seizure", "lpd", "gpd", "lrda", "grda", "other")
VOTE_COLUMNS: tuple[str, ...] = tuple(f"{c}_vote" for c in SUBMISSION_CLASSES)
SUBMISSION_HEADER: tuple[str, ...] = ("eeg_id", *VOTE_COLUMNS)
# column j of the submission holds model class SUBMISSION_ORDER[j]
SUBMISSION_ORDER: tuple[int, ...] = tuple(CLASSES.index(c) for c in SUBMISSION_CLASSES)
# The model's four heads (SPEC §3): `all` is the prediction, the others see one modality each.
HEADS: tuple[str, ...] = ("all", "spect", "eeg_stft", "eeg_wavenet")

# §2.1 EEG
EEG_FS = 200  # Hz
EEG_WINDOW = 50 * EEG_FS  # 10000 samples
EEG_CLIP = 1024.0
EEG_SCALE = 32.0
EEG_LOWPASS_HZ = 50.0
EEG_LOWPASS_ORDER = 4
EEG_COLUMNS: tuple[str, ...] = (
    "Fp1", "F3", "C3", "P3", "F7", "T3", "T5", "O1", "Fz", "Cz",
    "Pz", "Fp2", "F4", "C4", "P4", "F8", "T4", "T6", "O2", "EKG",
)
ELECTRODES: tuple[str, ...] = EEG_COLUMNS[:-1]  # the 19 scalp electrodes the montage uses

# §2.2 Competition spectrogram
SPECT_REGIONS: tuple[str, ...] = ("LL", "RL", "RP", "LP")  # stacking order
SPECT_FREQS = 100  # columns per region
SPECT_FRAMES = 300  # 2-second frames in the 10-minute window
SPECT_SPAN_S = 598  # last frame time - first frame time in a window
SPECT_CLIP_LOG = (-7.0, 10.0)  # clip to [e^-7, e^10] before the log
SPECT_NORM_CLIP = 16.0
SPECT_CHANNELS = len(SPECT_REGIONS) + 6  # 4 regions + 6 pairwise differences

# Files and choices
MANIFEST_NAME = "weights_manifest.yaml"
# the repository's manifest names its checkpoints `<backbone>_<fold>_SEED.pt`: SEED stands for the training seed
SEED_PLACEHOLDER = "SEED"
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")  # autocast dtypes (`runtime` maps them to torch's)
BLENDS: tuple[str, ...] = ("prob", "logit")

# The visual report (`hms_infer.report`): the labelled window is the central 10 s of the 50-s EEG window and of
# the 10-minute spectrogram window; one figure per row, REPORT_FIGSIZE inches at REPORT_DPI.
LABEL_WINDOW_S = 10
REPORT_FIGSIZE = (16.0, 11.0)
REPORT_DPI = 100
# A report of several rows (without --full): each page's figure as lossy WebP at REPORT_COMPACT_DPI (1360 x 935 px),
# at the first of REPORT_WEBP_QUALITIES whose page (UTF-8 bytes) fits REPORT_PAGE_MAX_BYTES.
REPORT_COMPACT_DPI = 85
REPORT_WEBP_QUALITIES = (55, 45, 35, 25)
REPORT_PAGE_MAX_BYTES = 300_000
# Time budget (budget.py): the order in which TTA views are dropped when a run would not finish in time, the
# budget kernel.py gives a Kaggle run (HMS_TIME_BUDGET_S; Kaggle stops a notebook at 9 h), and how many steady
# batches (after a level's first, which carries warm-up / compile time) a projection needs.
TTA_DROP_ORDER: tuple[str, ...] = ("lrfb", "fb", "lr")
KAGGLE_TIME_BUDGET_S = 8 * 3600.0
BUDGET_STEADY_BATCHES = 2
# parity: the largest |logit difference| that passes (the saved OOF logits came from fp16-mixed inference);
# pseudo-labels: windows per resumable part (about 30 s of a GPU: what a lost process loses at most)
PARITY_TOLERANCE = 0.05
PSEUDO_LABEL_CHUNK_ROWS = 1024
# Evaluation (`evaluate`, evaluation.py): total-vote buckets (inclusive lower, upper bounds; None: no upper bound),
# the default vote threshold (the 15th-place team's CV used the rows with >= 10 votes), equal-width calibration
# bins on [0, 1], bootstrap resamples and the percentile interval, the worst rows listed per set.
VOTE_BUCKETS: tuple[tuple[int, int | None], ...] = ((1, 1), (2, 2), (3, 5), (6, 9), (10, 19), (20, None))
MIN_VOTES = 10
CALIBRATION_BINS = 10
BOOTSTRAP_RESAMPLES = 1000
CI_PERCENTILES = (2.5, 97.5)
WORST_ROWS = 20

# Whole recordings (`timeline`): windows every TIMELINE_STRIDE_S seconds (the spectrograms' own resolution); a
# recording's label rows whose spectrogram-minus-EEG offsets differ by more than TIMELINE_SHIFT_TOLERANCE_S disagree;
# resumable parts of TIMELINE_CHUNK_RECORDINGS whole recordings; one page per recording, TIMELINE_FIGSIZE inches.
TIMELINE_STRIDE_S = 2.0
TIMELINE_SHIFT_TOLERANCE_S = 1e-6
TIMELINE_CHUNK_RECORDINGS = 32
TIMELINE_FIGSIZE = (16.0, 8.0)

# A competition folder without one of its data folders: the error lists at most FOLDER_LISTING of its entries.
FOLDER_LISTING = 12
