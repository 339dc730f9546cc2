"""A small accuracy-against-ε chart drawn with characters, for the terminal."""

from __future__ import annotations

from advgrad.core.results import RobustnessReport
from advgrad.core.text import printable
from advgrad.report.fmt import norm_symbol

MARKERS = "ox+*#@%&"
OVERLAP = "="  # a cell where the markers of several curves fall


def _cell(value: float, lo: float, hi: float, cells: int) -> int:
    if hi <= lo:
        return 0
    return round((value - lo) / (hi - lo) * (cells - 1))


def coinciding(report: RobustnessReport) -> list[list[str]]:
    """Groups of two or more curves with the same accuracy at every ε (``pgd = apgd-ce``), in the
    report's order: the chart can show only one marker where they sit."""
    groups: dict[tuple[float, ...], list[str]] = {}
    for name, curve in report.attacks.items():
        groups.setdefault(tuple(p.accuracy for p in curve.points), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def text_chart(report: RobustnessReport, *, width: int = 48, height: int = 11) -> str:
    """Accuracy (rows, 100% at the top) against ε (columns, to scale), one marker per attack,
    with dots between the points of a curve. Where markers of several curves fall in one cell the
    cell shows :data:`OVERLAP`, and curves equal at every ε are named together under the chart."""
    eps = sorted(report.eps)
    lo, hi = eps[0], eps[-1]
    grid = [[" "] * width for _ in range(height)]
    marked: dict[tuple[int, int], set[int]] = {}

    def row_of(accuracy: float) -> int:
        return height - 1 - _cell(accuracy, 0.0, 1.0, height)

    for k, curve in enumerate(report.attacks.values()):
        pts = sorted((_cell(p.eps, lo, hi, width), p.accuracy) for p in curve.points)
        for (c0, a0), (c1, a1) in zip(pts, pts[1:], strict=False):
            for c in range(c0 + 1, c1):
                r = row_of(a0 + (a1 - a0) * (c - c0) / (c1 - c0))
                if grid[r][c] == " ":
                    grid[r][c] = "·"
        for c, a in pts:
            marked.setdefault((row_of(a), c), set()).add(k)
    for (r, c), curves in marked.items():
        grid[r][c] = MARKERS[min(curves) % len(MARKERS)] if len(curves) == 1 else OVERLAP
    lines = []
    for r, cells in enumerate(grid):
        share = (height - 1 - r) / (height - 1)
        label = f"{round(100 * share):>3d}%" if r in (0, (height - 1) // 2, height - 1) else "    "
        lines.append(f"{label} │" + "".join(cells).rstrip())
    lines.append("     └" + "─" * width)
    axis = [" "] * (width + 12)
    for e in eps:
        text = report.eps_label(e)
        start = min(_cell(e, lo, hi, width), width + 12 - len(text))
        if all(ch == " " for ch in axis[max(start - 1, 0) : start + len(text) + 1]):
            axis[start : start + len(text)] = list(text)
    lines.append("      " + "".join(axis).rstrip() + f"   ε ({norm_symbol(report.norm)})")
    for names in coinciding(report):
        lines.append(f"      {' = '.join(names)} at every ε: one curve here")
    legend = "  ".join(f"{MARKERS[k % len(MARKERS)]} {name}" for k, name in enumerate(report.attacks))
    if any(len(curves) > 1 for curves in marked.values()):
        legend += f"  {OVERLAP} several at one point"
    lines.append("      " + legend)
    return printable("\n".join(lines), newlines=True)
