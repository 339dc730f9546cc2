"""Comparing two robustness reports: did robustness regress?

``advgrad compare BASELINE.json NEW.json --max-drop 0.02`` pairs the points both reports hold —
clean accuracy, and accuracy under each attack at each ε (attacks matched by name, ε with a small
relative tolerance) — and flags every point where the new accuracy is lower than the baseline's
by more than ``max_drop``; without ``max_drop`` (``--max-drop auto``, the default) each point
allows the sampling noise of its accuracy, :func:`noise_tolerance`. Clean accuracy is compared
once: an attack's ε = 0 point is clean accuracy again and is left out. Reports that cannot be
compared (different threat models, nothing in common, not an advgrad report) are errors;
differences that make a comparison less meaningful (other data, other attack parameters) are
warnings.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from advgrad.core.errors import DataError, UsageError
from advgrad.core.results import READABLE_VERSIONS, SCHEMA_NAME, SCHEMA_VERSION, AttackCurve, RobustnessReport
from advgrad.io.paths import open_regular

FLOAT_SLACK = 1e-9  # a drop of exactly max_drop is not a regression, whatever the rounding
NOISE_SE = 2.0  # --max-drop auto allows this many binomial standard errors


def noise_tolerance(accuracy: float, n: int) -> float:
    """The drop ``--max-drop auto`` allows at a point: two binomial standard errors of an accuracy
    ``p`` measured on ``n`` samples, 2·√(p(1−p)/n), and at least one sample (1/n).

    Evaluated on another sample of the same size, a model's accuracy moves by about √(p(1−p)/n)
    (2.4 points at p = 0.5 on 450 samples, 0.5 on 10,000); a drop within two of those is not
    evidence of a regression. With p near 0 or 1 the noise vanishes and one sample is the floor."""
    if n <= 0:
        return 0.0
    return max(NOISE_SE * math.sqrt(max(accuracy * (1 - accuracy), 0.0) / n), 1 / n)


def read_report(path: str | os.PathLike) -> RobustnessReport:
    """A report written by ``advgrad eval --json``; a clear DataError for anything else."""
    path = Path(path)
    try:
        with open_regular(path, "a report written by advgrad eval --json", DataError) as fh:
            data = json.loads(fh.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON report ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_NAME:
        raise DataError(f'{path}: not an advgrad robustness report (no "schema": "{SCHEMA_NAME}")')
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise DataError(f"{path}: report schema version {version!r}; this advgrad reads versions 1 to {SCHEMA_VERSION}")
    try:
        report = RobustnessReport.from_dict(data)
        _check_numbers(report)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: an incomplete or damaged report ({type(exc).__name__}: {exc})") from None
    return report


def _check_numbers(report: RobustnessReport) -> None:
    values = [report.clean_accuracy] + [p.accuracy for c in report.attacks.values() for p in c.points]
    values += [p.eps for c in report.attacks.values() for p in c.points]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError("accuracies and ε values must be numbers")


@dataclass
class PointChange:
    """One point both reports hold. ``attack`` is ``clean`` (and ``eps`` None) for clean accuracy."""

    attack: str
    eps: float | None
    baseline: float
    new: float
    change: float
    regressed: bool
    allowed: float = 0.0  # the largest drop not counted as a regression here
    eps_label: str | None = None  # ε as the baseline's user wrote it (8/255)


@dataclass
class Comparison:
    """Every shared point, whether it regressed, and what made the comparison less meaningful."""

    baseline: str
    new: str
    max_drop: float | None  # None: --max-drop auto, each point's noise (PointChange.allowed)
    points: list[PointChange]
    warnings: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[PointChange]:
        return [p for p in self.points if p.regressed]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "regressed": bool(self.regressions)}


def _change(
    attack: str, eps: float | None, base: float, new: float, max_drop: float | None, n: int, label: str | None = None
) -> PointChange:
    change = new - base
    allowed = noise_tolerance(base, n) if max_drop is None else max_drop
    return PointChange(attack, eps, base, new, change, change < -(allowed + FLOAT_SLACK), allowed, label)


def compare_reports(
    baseline: RobustnessReport,
    new: RobustnessReport,
    max_drop: float | None,
    *,
    names: tuple[str, str] = ("baseline", "new"),
) -> Comparison:
    """Pair the points of ``baseline`` and ``new`` and flag drops larger than ``max_drop`` (None:
    larger than each point's :func:`noise_tolerance`)."""
    if max_drop is not None and not 0 <= max_drop <= 1:
        raise UsageError(f"`max_drop` must be between 0 and 1, got {max_drop:g}", params="max_drop")
    if baseline.norm != new.norm:
        raise UsageError(
            f"the reports use different threat models (L{baseline.norm} and L{new.norm}); "
            "their accuracies cannot be compared"
        )
    warnings = []
    if baseline.n_samples != new.n_samples or baseline.data.get("source") != new.data.get("source"):
        warnings.append(
            f"the reports were measured on different data ({baseline.n_samples} samples of "
            f"{baseline.data.get('source', '?')} and {new.n_samples} of {new.data.get('source', '?')})"
        )
    n = min(baseline.n_samples, new.n_samples)
    points = [_change("clean", None, baseline.clean_accuracy, new.clean_accuracy, max_drop, n)]
    grids: list[str] = []  # ε values only one report measured, per attack
    theirs = {name.lower(): curve for name, curve in new.attacks.items()}
    for name, curve in baseline.attacks.items():
        other = theirs.get(name.lower())
        if other is None:
            warnings.append(f"{name} is only in the baseline")
            continue
        if curve.target != other.target:
            warnings.append(f"{name} has different targets ({curve.target} and {other.target}); not compared")
            continue
        if curve.params != other.params:
            warnings.append(f"{name} ran with different parameters in the two reports")
        for p in curve.points:
            q = other.point_at(p.eps)
            if q is not None and p.eps > 0:  # at ε = 0 an attack's accuracy is the clean row's
                points.append(
                    _change(name, p.eps, p.accuracy, q.accuracy, max_drop, n, p.eps_label or baseline.eps_label(p.eps))
                )
        unshared = _unshared_eps(name, (curve, other), (baseline, new), names)
        if unshared:
            grids.append(unshared)
            warnings.append(f"{unshared}; not compared there")
    for name in new.attacks:
        if name.lower() not in {k.lower() for k in baseline.attacks}:
            warnings.append(f"{name} is only in the new report")
    if baseline.attacks and not any(p.eps for p in points if p.eps is not None):
        detail = f" ({grids[0]}{'; …' if len(grids) > 1 else ''})" if grids else ""
        raise UsageError(
            f"the reports share no (attack, ε) point beyond ε = 0{detail}: run the same attacks at the same ε values"
        )
    return Comparison(names[0], names[1], max_drop, points, warnings)


def _unshared_eps(
    name: str,
    curves: tuple[AttackCurve, AttackCurve],
    reports: tuple[RobustnessReport, RobustnessReport],
    names: tuple[str, str],
) -> str | None:
    """A message naming the ε values, as each report's user wrote them (``2/255``), at which only one
    of the reports measured ``name``, or None."""
    parts = []
    for curve, other, report, where in (
        (curves[0], curves[1], reports[0], names[0]),
        (curves[1], curves[0], reports[1], names[1]),
    ):
        only = [p.eps_label or report.eps_label(p.eps) for p in curve.points if other.point_at(p.eps) is None]
        if only:
            parts.append(f"ε = {', '.join(only)} only in {where}")
    return f"{name}: {'; '.join(parts)}" if parts else None
