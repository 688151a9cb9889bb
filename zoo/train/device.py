"""Device and mixed-precision choice (auto-detected, so the same code runs on CPU and GPU)."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """"auto" -> cuda if available, else mps (Apple), else cpu; anything else as torch.device."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device='auto' or 'cpu'")
    return dev


def resolve_amp(amp: bool | str | None, device: torch.device) -> bool:
    """Mixed precision: "auto" -> on for CUDA only. True on a non-CUDA device is turned off with
    a warning (CPU autocast to bfloat16 is slower than float32 for these convnets on most CPUs)."""
    if amp is None or amp == "auto":
        return device.type == "cuda"
    if isinstance(amp, str):
        if amp.lower() not in ("true", "false", "1", "0", "on", "off"):
            raise ValueError(f"amp must be 'auto', True or False, got {amp!r}")
        amp = amp.lower() in ("true", "1", "on")
    if amp and device.type != "cuda":
        log.warning("amp=True ignored on %s: mixed precision is only used on CUDA", device)
        return False
    return bool(amp)
