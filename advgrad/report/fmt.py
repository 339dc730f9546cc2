"""Formatting numbers the same way in every renderer."""

from __future__ import annotations

from advgrad.core.eps import default_eps_label
from advgrad.core.geometry import get_geometry


def eps_label(eps: float, given: str | None = None) -> str:
    """How every renderer prints an ε: as the user wrote it (``given``, e.g. ``8/255``), else
    ``8/255`` for a fraction of 255 and the shortest decimal otherwise (``0.1``)."""
    return given if given else default_eps_label(eps)


def norm_sub(norm: str) -> str:
    """The subscript that names a norm: ‖δ‖∞, ‖δ‖₂, ‖δ‖₁."""
    return get_geometry(norm).symbol


def norm_symbol(norm: str) -> str:
    """The name of a threat model's norm for people: L∞, L2, L1."""
    return get_geometry(norm).label


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def num(value: float | None, digits: int = 4) -> str:
    """``value`` in ``digits`` significant digits; −0.0 (a loss of exactly 0 is −log 1) as ``0``."""
    return "—" if value is None else f"{value + 0.0:.{digits}g}"
