"""Inference modules of the 15th-place HMS model; module names are the checkpoints' state-dict keys."""
from .config import PRESETS, ArchConfig, StftConfig, WaveNetConfig, resolve_arch
from .hms import BRANCHES, HMSModel, create_model, describe_state_dict, detect_preset

__all__ = ["PRESETS", "ArchConfig", "StftConfig", "WaveNetConfig", "HMSModel", "create_model", "resolve_arch",
           "detect_preset", "describe_state_dict", "BRANCHES"]
