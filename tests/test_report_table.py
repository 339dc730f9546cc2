"""The terminal table reads what the report says about each attack, not the registry."""

from __future__ import annotations

from report_helpers import crafted
from rich.console import Console

from advgrad.report.table import report_table


def _text(report) -> str:
    console = Console(width=120, record=True, color_system=None)
    console.print(report_table(report))
    return console.export_text()


def test_median_row_follows_the_curves_kind():
    # "mystery" is no registered attack: its kind, stored in the report, is what counts
    report = crafted({"mystery": [95, 40, 10], "pgd": [95, 50, 20]}, kinds={"mystery": "minimal"})
    report.attacks["mystery"].median_norm = 0.125
    lines = [line for line in _text(report).splitlines() if "median ‖δ‖∞" in line]
    assert len(lines) == 1 and "0.125" in lines[0]


def test_no_median_row_for_a_curve_the_report_calls_bounded():
    # named like a registered minimal attack, but the report says it ran as a bounded one
    report = crafted({"deepfool": [95, 40, 10]}, kinds={"deepfool": "gradient"})
    assert "median" not in _text(report)
