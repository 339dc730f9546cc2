"""A comparison of two reports (:mod:`advgrad.verdicts.regressions`) as words: the one-line verdict and the
Markdown table for a pull-request comment."""

from __future__ import annotations

from advgrad.core.text import printable
from advgrad.report.fmt import eps_label, pct
from advgrad.report.markdown import _table
from advgrad.verdicts.regressions import Comparison, PointChange


def points_change(value: float) -> str:
    """A change of accuracy in percentage points, signed: ``+1.2``, ``-3.0``."""
    return f"{100 * value:+.1f}"


def tolerance_text(comparison: Comparison) -> str:
    """What counted as a regression: the fixed --max-drop, or the per-point noise of auto."""
    if comparison.max_drop is None:
        return "a drop beyond sampling noise (2 binomial standard errors of each accuracy; --max-drop auto)"
    return f"a drop of more than {100 * comparison.max_drop:.1f} points (--max-drop)"


def verdict_line(comparison: Comparison) -> str:
    """One line: passed or regressed, how many points, the largest drop."""
    worst = min(comparison.points, key=lambda p: p.change)
    largest = f"largest change {points_change(worst.change)} points ({where(worst)})" if worst.change < 0 else "no drop"
    if comparison.regressions:
        k = len(comparison.regressions)
        return (
            f"compare: REGRESSED at {k} of {len(comparison.points)} points; {largest}; "
            f"regression = {tolerance_text(comparison)}"
        )
    return f"compare: passed: no regression at {len(comparison.points)} points; {largest}"


def where(p: PointChange) -> str:
    """``clean accuracy`` or ``pgd at ε=8/255``."""
    return "clean accuracy" if p.eps is None else f"{p.attack} at ε={eps_label(p.eps, p.eps_label)}"


def _mark(p: PointChange) -> str:
    if p.regressed:
        return "❌ regressed"
    return "📈 improved" if p.change > p.allowed else "✅ ok"


def render_comparison_markdown(comparison: Comparison, *, title: str = "advgrad robustness comparison") -> str:
    """A heading with the verdict and a table: attack, ε, baseline, new, Δ (points), verdict."""
    status = "❌ regressed" if comparison.regressions else "✅ no regression"
    lines = [
        f"## {title}: {status}",
        "",
        f"Baseline `{comparison.baseline}` → new `{comparison.new}`. Regression: {tolerance_text(comparison)}.",
        "",
    ]
    rows = [
        [
            p.attack,
            "—" if p.eps is None else eps_label(p.eps, p.eps_label),
            pct(p.baseline),
            pct(p.new),
            points_change(p.change),
            _mark(p),
        ]
        for p in comparison.points
    ]
    lines += _table(["attack", "ε", "baseline", "new", "Δ (points)", "verdict"], rows, align="lrrrrl")
    if comparison.warnings:
        lines += ["", *(f"- ⚠️ {w}" for w in comparison.warnings)]
    return printable("\n".join(lines), newlines=True) + "\n"  # attack names come from the report files
