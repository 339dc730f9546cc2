"""One checker for every numeric option, so each bad value gets the same one-line refusal.

A number an option takes must be finite (NaN and ±∞ make every comparison false, so they slip
through range checks written as ``value < 0``) and in its range; a whole-number option takes a
whole number only (a bool is not one, nor is 2.5). The command line, the config file and the
attacks' parameter dataclasses all call :func:`check_number`.
"""

from __future__ import annotations

import math
from typing import Any

from advgrad.core.errors import UsageError, param_label

#: the largest float32 (torch.finfo(torch.float32).max): bounds, box edges and their widths must stay
#: below it, or the float32 maps built on them overflow to ±∞ and then NaN
FLOAT32_MAX = 3.4028234663852886e38


def check_number(
    value: Any,
    name: str,
    *,
    integer: bool = False,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
) -> None:
    """Raise :class:`UsageError` naming ``name`` unless ``value`` is a finite number (a whole one
    with ``integer``) with ``value ≥ minimum``, ``value > above`` and ``value ≤ maximum`` for each
    bound given. A Python name (``steps``) is a parameter: the error names it in backquotes and in
    its ``params``, so that the CLI shows its flag; other text (``--steps``, a config key) is shown
    as given."""
    label, params = param_label(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "a whole number" if integer else "a number"
        raise UsageError(f"{label} must be {kind}, got {_shown(value)}", params=params)
    if integer and not isinstance(value, int):
        raise UsageError(f"{label} must be a whole number, got {_shown(value)}", params=params)
    if isinstance(value, float) and not math.isfinite(value):  # an int is finite, however large
        raise UsageError(f"{label} must be a finite number, got {value}", params=params)
    if minimum is not None and value < minimum:
        raise UsageError(f"{label} must be ≥ {minimum:g}, got {_g(value)}", params=params)
    if above is not None and value <= above:
        raise UsageError(f"{label} must be > {above:g}, got {_g(value)}", params=params)
    if maximum is not None and value > maximum:
        raise UsageError(f"{label} must be ≤ {maximum:g}, got {_g(value)}", params=params)


def _g(value: float) -> str:
    """``value`` as ``:g`` writes it, or, for an int too large for a float (a file may hold one),
    words that say so."""
    if isinstance(value, int) and abs(value) > 10**300:
        return "a number beyond ±1e+300"
    return f"{value:g}"


def _shown(value: Any) -> str:
    """A value as the user wrote it: ``true`` rather than ``True`` (TOML), strings quoted."""
    text = str(value).lower() if isinstance(value, bool) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."  # a crafted file's long value stays one short line
