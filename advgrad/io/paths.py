"""Checks on the paths users give, shared by the model, weights and data loaders."""

from __future__ import annotations

from pathlib import Path

from advgrad.errors import AdvgradError


def require_file(path: str | Path, expected: str, error: type[AdvgradError]) -> Path:
    """``path`` as a Path when it is an existing regular file; else ``error`` saying what was expected.

    ``expected`` completes "expected ..." in the message, e.g. "a .pt or .npz file holding x and y".
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise error(f"{path}: no such file (expected {expected})")
    if p.is_dir():
        raise error(f"{path} is a directory; expected {expected}")
    if not p.is_file():  # a device or a FIFO: reading it may never end, or fill the memory
        raise error(f"{path} is not a regular file (a device, FIFO or socket); expected {expected}")
    return p
