"""Fused GPU kernels (Triton). Importing a kernel module needs Triton; `models.wavenet_fast` falls back without it."""
