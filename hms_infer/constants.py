"""Domain constants of the HMS competition and of the 15th-place training code (SPEC §1-2).

Everything that names an electrode, a bipolar pair, a brain flip, a class or a window size is defined here once.
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

# The 24 bipolar signals `first - second`, in model channel order: three chains of 8.
BIPOLAR_PAIRS: tuple[tuple[str, str], ...] = (
    # chain A (temporal)
    ("O1", "T5"), ("T5", "T3"), ("T3", "F7"), ("F7", "Fp1"),
    ("O2", "T6"), ("T6", "T4"), ("T4", "F8"), ("F8", "Fp2"),
    # chain B (parasagittal)
    ("O1", "P3"), ("P3", "C3"), ("C3", "F3"), ("F3", "Fp1"),
    ("O2", "P4"), ("P4", "C4"), ("C4", "F4"), ("F4", "Fp2"),
    # transverse
    ("Fz", "F7"), ("Fz", "F8"), ("Cz", "T3"), ("Cz", "T4"),
    ("Pz", "T5"), ("Pz", "T6"), ("P3", "P4"), ("F3", "F4"),
)
N_CHAINS = 3
CHAIN_SIZE = 8


def _swaps(*pairs: tuple[str, str]) -> dict[str, str]:
    out = {a: b for a, b in pairs}
    out.update({b: a for a, b in pairs})
    return out


LEFT_RIGHT: dict[str, str] = _swaps(
    ("Fp1", "Fp2"), ("F3", "F4"), ("C3", "C4"), ("P3", "P4"),
    ("F7", "F8"), ("T3", "T4"), ("T5", "T6"), ("O1", "O2"),
)
FRONT_BACK: dict[str, str] = _swaps(
    ("Fp1", "O1"), ("Fp2", "O2"), ("F3", "P3"), ("F4", "P4"),
    ("Fz", "Pz"), ("F7", "T5"), ("F8", "T6"),
)
# TTA views: the electrode renamings applied in order (left-right first, then front-back).
FLIPS: dict[str, tuple[dict[str, str], ...]] = {
    "none": (),
    "lr": (LEFT_RIGHT,),
    "fb": (FRONT_BACK,),
    "lrfb": (LEFT_RIGHT, FRONT_BACK),
}
VIEWS: tuple[str, ...] = tuple(FLIPS)

# §2.2 Competition spectrogram
SPECT_REGIONS: tuple[str, ...] = ("LL", "RL", "RP", "LP")  # stacking order
SPECT_FREQS = 100  # columns per region
SPECT_FRAMES = 300  # 2-second frames in the 10-minute window
SPECT_SPAN_S = 598  # last frame time - first frame time in a window
SPECT_CLIP_LOG = (-7.0, 10.0)  # clip to [e^-7, e^10] before the log
SPECT_NORM_CLIP = 16.0
SPECT_CHANNELS = len(SPECT_REGIONS) + 6  # 4 regions + 6 pairwise differences

# The visual report (`hms_infer.report`): the labelled window is the central 10 s of the 50-s EEG window and of
# the 10-minute spectrogram window; one figure per row, REPORT_FIGSIZE inches at REPORT_DPI.
LABEL_WINDOW_S = 10
REPORT_FIGSIZE = (16.0, 11.0)
REPORT_DPI = 100
# Time budget (budget.py): the order in which TTA views are dropped when a run would not finish in time, the
# budget kernel.py gives a Kaggle run (HMS_TIME_BUDGET_S; Kaggle stops a notebook at 9 h), and how many steady
# batches (after a level's first, which carries warm-up / compile time) a projection needs.
TTA_DROP_ORDER: tuple[str, ...] = ("lrfb", "fb", "lr")
KAGGLE_TIME_BUDGET_S = 8 * 3600.0
BUDGET_STEADY_BATCHES = 2
# Whole recordings (`timeline`): windows every TIMELINE_STRIDE_S seconds (the spectrograms' own resolution); a
# recording's label rows whose spectrogram-minus-EEG offsets differ by more than TIMELINE_SHIFT_TOLERANCE_S disagree;
# resumable parts of TIMELINE_CHUNK_RECORDINGS whole recordings; one page per recording, TIMELINE_FIGSIZE inches.
TIMELINE_STRIDE_S = 2.0
TIMELINE_SHIFT_TOLERANCE_S = 1e-6
TIMELINE_CHUNK_RECORDINGS = 32
TIMELINE_FIGSIZE = (16.0, 8.0)
