"""Choosing the device a run uses."""

from __future__ import annotations

import torch

from advgrad.core.errors import UsageError


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``; ``cuda`` (the current GPU, as
    ``cuda:N``) or ``cuda:N`` (must exist)."""
    text = (name or "auto").strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(
                "`device` cuda was asked for but no CUDA GPU is available; use `device` cpu or auto", params="device"
            )
        try:
            device = torch.device(text)
        except RuntimeError:
            raise UsageError(f"bad device {name!r}: use auto, cpu, cuda or cuda:N") from None
        if device.index is None:  # an explicit index: generators and reports name the same GPU
            device = torch.device("cuda", torch.cuda.current_device())
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"{name} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device
    raise UsageError(f"bad device {name!r}: use auto, cpu, cuda or cuda:N")
