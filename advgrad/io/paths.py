"""Checks on the paths users give, shared by the model, weights and data loaders."""

from __future__ import annotations

import stat
from pathlib import Path

from advgrad.errors import AdvgradError

_SPECIAL = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
)


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
        mode = p.stat().st_mode
        kind = next((name for test, name in _SPECIAL if test(mode)), "not a regular file")
        raise error(f"{path} is {kind}; expected {expected}")
    return p
