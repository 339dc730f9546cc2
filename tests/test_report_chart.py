"""The terminal chart (advgrad/report/chart.py): markers where the accuracies are."""

from __future__ import annotations

from report_helpers import crafted

from advgrad.report.chart import MARKERS, text_chart


def grid(chart: str) -> list[str]:
    return [line.split("│", 1)[1] if "│" in line else "" for line in chart.splitlines()[:11]]


def test_markers_sit_at_their_accuracy_and_eps():
    report = crafted({"a": [100, 50, 0]}, eps=(0.0, 0.5, 1.0), clean=100)
    chart = text_chart(report, width=21, height=11)
    rows = grid(chart)
    marker = MARKERS[0]
    assert rows[0].find(marker) == 0  # 100% at ε = 0: top-left
    assert rows[5].find(marker) == 10  # 50% at the middle ε: middle row, middle column
    assert rows[10].find(marker) == 20  # 0% at the largest ε: bottom-right
    assert sum(r.count(marker) for r in rows) == 3
    assert "100%" in chart.splitlines()[0] and "0%" in chart.splitlines()[10]
    assert "a" in chart.splitlines()[-1]  # legend


def test_one_marker_per_attack_in_the_legend():
    report = crafted({"fgsm": [95, 60, 20], "pgd": [95, 40, 0], "apgd": [95, 30, 0]})
    legend = text_chart(report).splitlines()[-1]
    for k, name in enumerate(report.attacks):
        assert f"{MARKERS[k]} {name}" in legend
