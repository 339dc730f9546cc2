"""The comparison of two reports as one HTML page (``advgrad compare --html``): the verdict on
top, both runs' curves on one chart (baseline dashed, new solid), the table of shared points with
the regressions marked, and the two runs side by side (headline, accuracy table, checks,
versions)."""

from __future__ import annotations

from advgrad.core.results import RobustnessReport
from advgrad.report.comparison import points_change, tolerance_text, verdict_line
from advgrad.report.fmt import eps_label, norm_symbol, pct
from advgrad.report.html import STATUS, accuracy_table, data_name, model_name, threat_text, verdict
from advgrad.report.html_page import Cell, facts, html_table, json_block, page, percent
from advgrad.report.svg import Point, Series, line_chart, text
from advgrad.verdicts.regressions import Comparison


def _series(report: RobustnessReport, which: str, style: str, colors: dict[str, int]) -> list[Series]:
    found = []
    for name, curve in report.attacks.items():
        color = colors.setdefault(name.lower(), len(colors))
        points = [
            Point(p.eps, p.accuracy, f"{which}: {name} at ε={report.eps_label(p.eps)}: {pct(p.accuracy)}")
            for p in curve.points
        ]
        found.append(Series(f"{name} ({which})", points, color=color, style=style, data={"run": which, "attack": name}))
    return found


def both_curves(baseline: RobustnessReport, new: RobustnessReport) -> str:
    """One chart: each attack's baseline curve dashed and its new curve solid, in one colour."""
    colors: dict[str, int] = {}
    series = _series(baseline, "baseline", "dashed", colors) + _series(new, "new", "solid", colors)
    ticks = {e: baseline.eps_label(e) for e in baseline.eps}
    for e in new.eps:
        ticks.setdefault(e, new.eps_label(e))
    values = sorted(ticks)
    return line_chart(
        series,
        x_range=(values[0], values[-1]),
        x_ticks=[(e, ticks[e]) for e in values],
        x_label=f"ε ({norm_symbol(baseline.norm)})",
        y_label="accuracy",
        title="Accuracy under attack: baseline (dashed) and new (solid)",
        description=f"{len(baseline.attacks)} baseline curves and {len(new.attacks)} new curves.",
        reference=(new.clean_accuracy, f"clean (new): {pct(new.clean_accuracy)}"),
        chart_id="both",
    )


def changes_table(comparison: Comparison) -> str:
    """Every shared point: accuracies, change in points, the drop allowed and the verdict; the
    regressed rows marked (class ``regressed``)."""
    rows, classes = [], []
    for p in comparison.points:
        if p.regressed:
            mark = Cell("✘ REGRESSED", 0, css="status fail")
        elif p.change > p.allowed:
            mark = Cell("▲ improved", 2, css="status ok")
        else:
            mark = Cell("✔ ok", 1, css="status ok")
        rows.append(
            [
                p.attack,
                Cell("—", -1) if p.eps is None else Cell(eps_label(p.eps, p.eps_label), p.eps),
                percent(p.baseline),
                percent(p.new),
                Cell(points_change(p.change), p.change),
                Cell(f"{100 * p.allowed:.1f}", p.allowed),
                mark,
            ]
        )
        classes.append("regressed" if p.regressed else "")
    return html_table(
        ["attack", "ε", "baseline", "new", "change (points)", "allowed drop", "result"],
        rows,
        caption=f"Every point both reports hold; a regression is {tolerance_text(comparison)}",
        row_classes=classes,
        text_columns=(0, 6),
    )


def _run_column(label: str, path: str, report: RobustnessReport) -> str:
    sentence, css = verdict(report)
    items = [
        ("Report", path),
        ("Model", model_name(report)),
        ("Data", f"{data_name(report)} ({report.n_samples} samples)"),
        ("Threat model", threat_text(report)),
        ("Clean accuracy", f"{pct(report.clean_accuracy)} ({report.clean_correct}/{report.n_samples})"),
    ]
    checks = html_table(
        ["check", "status"],
        [[c["name"], Cell(STATUS.get(c["status"], (c["status"], ""))[0])] for c in report.checks],
        caption=f"Sanity checks of the {label}",
        text_columns=(0, 1),
        sortable=False,
    )
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items() if k in ("advgrad", "torch", "python"))
    return (
        f"<div><h3>{text(label.capitalize())}</h3>{facts(items)}"
        f'<p class="verdict {css}">{text(sentence)}</p>'
        f"{accuracy_table(report) if report.attacks else ''}{checks}"
        f'<p class="doc">{text(versions)}</p>{json_block("Configuration", report.config)}</div>'
    )


def render_comparison_html(
    comparison: Comparison,
    baseline: RobustnessReport,
    new: RobustnessReport,
    *,
    title: str = "advgrad robustness comparison",
) -> str:
    """The whole comparison page."""
    regressed = bool(comparison.regressions)
    worst = min(comparison.points, key=lambda p: p.change)
    items = [
        ("Baseline", f"{comparison.baseline}: {pct(baseline.clean_accuracy)} clean"),
        ("New", f"{comparison.new}: {pct(new.clean_accuracy)} clean"),
        ("Regressions", f"{len(comparison.regressions)} of {len(comparison.points)} points"),
        ("Largest change", f"{points_change(worst.change)} points"),
    ]
    headline = facts(items, ids={"Regressions": "regressions"}) + (
        f'<p class="verdict {"fail" if regressed else "ok"}" id="verdict" role="status">'
        f"{text(verdict_line(comparison))}</p>"
    )
    warnings = "".join(f'<li class="warn">{text(w)}</li>' for w in comparison.warnings)
    changes = changes_table(comparison) + (f"<ul>{warnings}</ul>" if warnings else "")
    sections = []
    if baseline.attacks or new.attacks:
        sections.append(("curves", "Robustness curves", both_curves(baseline, new)))
    sections += [
        ("changes", "Changes", changes),
        (
            "runs",
            "The two runs side by side",
            f'<div class="side">{_run_column("baseline", comparison.baseline, baseline)}'
            f"{_run_column('new', comparison.new, new)}</div>",
        ),
    ]
    footer = "Written by advgrad compare. One self-contained file: it opens offline and fetches nothing."
    return page(title, title + (": regressed" if regressed else ": no regression"), sections, headline, footer)
