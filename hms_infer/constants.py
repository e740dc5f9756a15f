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

# Clinical recordings (`hms_infer.recordings`, `timeline --recording`): EDF/BDF/BrainVision/EEGLAB/FIF/... via MNE.
# Labels are compared case-insensitively after removing a known prefix and reference suffix; the modern 10-10 names
# of four electrodes are the competition's older ones (MNE's own alias table maps T5/T6 to T9/T10: not used here).
LABEL_PREFIXES: tuple[str, ...] = ("EEG ", "EEG-", "EEG_", "POL ", "POL-")
LABEL_REFERENCES: tuple[str, ...] = ("-REF", "-LE", "-RE", "-AVG", "-AV", "-AR", "-M1", "-M2", "-A1", "-A2",
                                     "-A12", "-LINKED", "-CAR")
ELECTRODE_ALIASES: dict[str, str] = {"T7": "T3", "T8": "T4", "P7": "T5", "P8": "T6"}
RECORDING_MIN_FS = 100.0  # Hz: below this, a recording cannot give the 200-Hz signal the models were trained on
RATE_MAX_FACTOR = 1000  # resampling to 200 Hz as up / down with down <= this (a rate like 333.33 Hz: the nearest)
RECORDING_CHECK_SPANS = 16  # a channel flat or NaN in every one of this many evenly spread 10-s spans is flat
RECORDING_CHECK_SPAN_S = 10.0
RECORDING_BLOCK_S = 60.0  # seconds of 200-Hz signal read (and resampled) at a time: memory does not grow with length
RECORDING_CHUNK_WINDOWS = 1800  # windows per resumable part of a recording's segment (1 h at stride 2)
# Multitaper reconstruction of the Kaggle spectrogram (Chronux-style, `recordings.multitaper`): 4-s windows every
# 2 s, 3 DPSS tapers with time-half-bandwidth NW = 2, a 1024-point FFT, the bins k * 200 / 1024 for k = 3..102 (the
# Kaggle columns' frequencies), each region the mean of its four bipolar chains' linear power.
MULTITAPER_WINDOW_S = 4.0
MULTITAPER_STEP_S = 2.0
MULTITAPER_TAPERS = 3
MULTITAPER_NW = 2.0
MULTITAPER_NFFT = 1024
MULTITAPER_FIRST_BIN = 3
# Kaggle's column names are f"{0.59 + 0.195 i:.2f}" (i = 0..99), a rounded grid that is not the bins' k * 200 / 1024
# (the names differ from them by up to 0.032 Hz, 0.16 of a bin; each name's nearest bin is k = 3 + i).
KAGGLE_FIRST_HZ, KAGGLE_STEP_HZ = 0.59, 0.195
# `multitaper-check`: Pearson r of log power per band (Hz, lower bound included)
MULTITAPER_BANDS: dict[str, tuple[float, float]] = {"delta": (0.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0),
                                                    "beta": (13.0, float("inf"))}
# The spectrogram's four regions as the Kaggle files define them: each the mean of four bipolar chains `a - b`.
SPECT_REGION_CHAINS: dict[str, tuple[tuple[str, str], ...]] = {
    "LL": (("Fp1", "F7"), ("F7", "T3"), ("T3", "T5"), ("T5", "O1")),
    "RL": (("Fp2", "F8"), ("F8", "T4"), ("T4", "T6"), ("T6", "O2")),
    "RP": (("Fp2", "F4"), ("F4", "C4"), ("C4", "P4"), ("P4", "O2")),
    "LP": (("Fp1", "F3"), ("F3", "C3"), ("C3", "P3"), ("P3", "O1")),
}
# Burden and trends (`recordings.burden`): a window counts towards the seizure burden when p(seizure) > this; a
# recording's page lists at most TREND_MAX_WINDOW_ROWS windows (evenly thinned) and writes the texts of at most
# TREND_MAX_ANNOTATION_TEXTS annotations on its figure (more: their lines only).
SEIZURE_BURDEN_THRESHOLD = 0.5
TREND_MAX_WINDOW_ROWS = 5000
TREND_MAX_ANNOTATION_TEXTS = 40
HEAD_CHOICES: tuple[str, ...] = ("all", "eeg")  # `all`: head_all; `eeg`: head_eeg + head_1d (no spectrogram)
SPECTROGRAM_SOURCES: tuple[str, ...] = ("kaggle", "multitaper")
