"""Formatting numbers the same way in every renderer."""

from __future__ import annotations

from advgrad.core.eps import default_eps_label
from advgrad.core.geometry import get_geometry
from advgrad.core.results import AttackCurve, RobustnessReport


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


def curves_title(report: RobustnessReport) -> str:
    """What the curves are, in certification's words where it is there: accuracy under attack (an
    upper bound on robust accuracy), certified accuracy (a lower bound), both, or the smoothed
    classifier's certified accuracy."""
    if not report.attacks:
        return "common corruptions"
    kinds = {curve.kind == "certified" for curve in report.attacks.values()}
    if any(curve.abstained is not None for curve in report.attacks.values()):
        return "certified accuracy of the smoothed classifier (ε is the L2 radius)"
    if kinds == {True}:
        if all(_decides(curve) for curve in report.attacks.values()):
            return "robust accuracy: verified–not falsified, or exact"
        return "certified accuracy (a lower bound on robust accuracy)"
    if kinds == {True, False}:
        return "accuracy under attack (an upper bound) and certified (a lower bound)"
    return "accuracy under attack"


def curve_heading(name: str, curve: AttackCurve) -> str:
    """A curve's column heading: its name, and for a verified bound beside attacks ``(lower bound)`` (its
    accuracy is a lower bound on the robust accuracy; the attacks' are upper bounds)."""
    if curve.kind == "certified" and curve.abstained is None:
        return f"{name} (verified–not falsified)" if _decides(curve) else f"{name} (lower bound)"
    return name


def _decides(curve: AttackCurve) -> bool:
    """Branch and bound's curves count falsified samples too: a band, not a bound."""
    return any(point.falsified is not None for point in curve.points)


def accuracy_cell(point, n_samples: int, clean_correct: int) -> str:
    """A curve's accuracy at one ε as tables show it. Branch and bound's points (``falsified``
    counted) show the band verified–not falsified in which the true robust accuracy lies, or
    ``exact`` where no sample is undecided and the two meet."""
    if point.falsified is None:
        return pct(point.accuracy)
    if point.undecided(clean_correct) == 0:
        return f"{pct(point.accuracy)} exact"
    return f"{pct(point.accuracy)}–{pct((clean_correct - point.falsified) / n_samples)}"
