"""Formatting numbers the same way in every renderer."""

from __future__ import annotations

from fractions import Fraction

from advgrad.geometry import get_geometry


def eps_label(eps: float) -> str:
    """``0.0313725`` → ``8/255 (0.0314)``; plain decimals stay as they are."""
    frac = Fraction(eps).limit_denominator(1000)
    if frac.denominator in (255, 127, 510, 1020) and abs(float(frac) - eps) < 1e-9 and eps != 0:
        return f"{frac.numerator}/{frac.denominator} ({eps:.4g})"
    return f"{eps:.4g}"


def norm_sub(norm: str) -> str:
    """The subscript that names a norm: ‖δ‖∞, ‖δ‖₂, ‖δ‖₁."""
    return get_geometry(norm).symbol


def norm_symbol(norm: str) -> str:
    """The name of a threat model's norm for people: L∞, L2, L1."""
    return get_geometry(norm).label


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"
