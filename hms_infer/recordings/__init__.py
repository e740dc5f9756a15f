"""Clinical EEG recordings (EDF, BDF, BrainVision, EEGLAB, FIF, ... via MNE): reading, channels, the multitaper
spectrogram, burden."""
