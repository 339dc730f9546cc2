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


def test_coinciding_curves_stay_visible():
    """Markers of several curves in one cell show the overlap symbol (one marker used to hide the
    others); curves equal at every ε are named together; every attack stays in the legend."""
    from advgrad.report.chart import OVERLAP

    report = crafted({"fgsm": [95, 60, 20], "pgd": [95, 40, 0], "apgd-ce": [95, 40, 0], "square": [95, 40, 0]})
    chart = text_chart(report, width=21, height=11)
    rows = grid(chart)
    assert rows[0][0] == OVERLAP  # 95% (the top row) at ε = 0: all four
    assert rows[6][10] == OVERLAP and rows[4][10] == MARKERS[0]  # 40%: three of them; fgsm's 60% alone
    assert MARKERS[1] not in "".join(rows) and MARKERS[2] not in "".join(rows)  # pgd and apgd-ce never alone
    assert "pgd = apgd-ce = square at every ε" in chart
    legend = chart.splitlines()[-1]
    assert all(f"{MARKERS[k]} {name}" in legend for k, name in enumerate(report.attacks))
    assert f"{OVERLAP} several at one point" in legend
    assert OVERLAP not in text_chart(crafted({"a": [100, 50, 0]}, eps=(0.0, 0.5, 1.0), clean=100), width=21)
