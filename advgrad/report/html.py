"""The report as one self-contained HTML page (``advgrad eval --html``, ``certify --html``,
``advgrad.write_report(report, "r.html")``).

Top to bottom: the headline (model, data, threat model, clean accuracy and the verdict of the
gates and sanity checks), the curves (accuracy against ε with the certified band, and the common
corruptions), the tables, the sanity checks with the paragraph of docs/checks.md that explains
each, an example gallery, and the run's configuration and versions. Charts are inline SVG whose
points carry their numbers as tooltips; images are PNG ``data:`` URIs; nothing is fetched.
"""

from __future__ import annotations

from advgrad.core.results import AttackCurve, CurvePoint, RobustnessReport
from advgrad.report.fmt import curves_title, norm_sub, norm_symbol, num, pct
from advgrad.report.html_gallery import class_label, gallery
from advgrad.report.html_page import Cell, doc_section, facts, html_table, json_block, page, percent
from advgrad.report.plot import reference_point, sandwich, tick_labels
from advgrad.report.svg import Point, Series, line_chart, text
from advgrad.verdicts.checks import NOT_APPLICABLE, PASSED, WARNING, fired
from advgrad.verdicts.gates import describe_gate

STATUS = {PASSED: ("✔ passed", "ok"), WARNING: ("⚠ warning", "warn"), NOT_APPLICABLE: ("– not applicable", "na")}
MAX_CLASS_ROWS = 200  # rows of the per-class table; the rest is counted in its caption


def model_name(report: RobustnessReport) -> str:
    return str(report.model.get("description") or report.model.get("source") or "model")


def data_name(report: RobustnessReport) -> str:
    return str(report.data.get("description") or report.data.get("source") or "data")


def threat_text(report: RobustnessReport) -> str:
    """``L∞`` (``, targeted (random)``); ``none (common corruptions only)`` without attacks."""
    if not report.attacks:
        return "none (common corruptions only)"
    target = report.config.get("target")
    return norm_symbol(report.norm) + (f", targeted ({target})" if target else "")


def verdict(report: RobustnessReport) -> tuple[str, str]:
    """(sentence, css class): failed gates first, then fired checks, else all clear."""
    failed = [g for g in report.gates if not g["passed"]]
    warned = [c["name"] for c in fired(report.checks)]
    applicable = sum(c["status"] != NOT_APPLICABLE for c in report.checks)
    gates = f"{len(report.gates) - len(failed)} of {len(report.gates)} gates passed" if report.gates else "no gates"
    checks = (
        f"{len(warned)} sanity check{'s' if len(warned) != 1 else ''} fired ({', '.join(warned)})"
        if warned
        else f"all {applicable} applicable sanity checks passed"
    )
    if failed:
        return f"FAILED: {gates}; {checks}.", "fail"
    if warned:
        return f"Read the warnings: {gates}; {checks}: the numbers are probably too good.", "warn"
    return f"Passed: {gates}; {checks}.", "ok"


def headline(report: RobustnessReport) -> str:
    """The cards at the top and the verdict line."""
    items = [
        ("Model", model_name(report)),
        ("Data", f"{data_name(report)} ({report.n_samples} samples evaluated)"),
        ("Threat model", threat_text(report)),
        ("Clean accuracy", f"{pct(report.clean_accuracy)} ({report.clean_correct}/{report.n_samples})"),
    ]
    attacked = [c for c in report.attacks.values() if c.kind != "certified"]
    if attacked:
        eps = report.eps[-1]
        worst = min(attacked, key=lambda c: c.points[-1].accuracy)
        items.append(
            (f"Under attack at ε={report.eps_label(eps)}", f"{pct(worst.points[-1].accuracy)} ({worst.attack})")
        )
    certified = [c for c in report.attacks.values() if c.kind == "certified"]
    if certified:
        items.append((f"Certified at ε={report.eps_label(report.eps[-1])}", pct(certified[0].points[-1].accuracy)))
    if report.corruptions is not None:
        items.append(("Mean corruption accuracy", pct(report.corruptions.mean_accuracy)))
    sentence, css = verdict(report)
    return (
        facts(items, ids={"Clean accuracy": "clean-accuracy"})
        + f'<p class="verdict {css}" id="verdict" role="status">{text(sentence)}</p>'
    )


def _tip(report: RobustnessReport, curve: AttackCurve, point: CurvePoint) -> str:
    where = f"{curve.attack} at ε={report.eps_label(point.eps)}"
    if curve.kind == "certified":
        return f"{where} (certified): {pct(point.accuracy)}, {point.robust}/{report.n_samples} samples certified"
    norm = f"; mean ‖δ‖{norm_sub(report.norm)} {num(point.mean_norm)}" if point.mean_norm is not None else ""
    return (
        f"{where}: accuracy {pct(point.accuracy)} ({point.robust}/{report.n_samples}); "
        f"success rate {pct(point.success_rate)}{norm}"
    )


def curve_chart(report: RobustnessReport) -> str:
    """Accuracy against ε, one series per curve (certified dashed, square markers), the band
    between the certified and the strongest attacked curve, and clean accuracy."""
    series = [
        Series(
            f"{name} (certified)" if curve.kind == "certified" else name,
            [Point(p.eps, p.accuracy, _tip(report, curve, p)) for p in curve.points],
            color=k,
            style="dashed" if curve.kind == "certified" else "solid",
            marker="square" if curve.kind == "certified" else "circle",
            data={"attack": name, "kind": curve.kind},
        )
        for k, (name, curve) in enumerate(report.attacks.items())
    ]
    band = sandwich(report)
    shares = None if band is None else (band[0], [v / 100 for v in band[1]], [v / 100 for v in band[2]])
    return line_chart(
        series,
        x_range=(min(report.eps), max(report.eps)),
        x_ticks=list(zip(report.eps, tick_labels(report), strict=True)),
        x_label=f"ε ({norm_symbol(report.norm)})",
        y_label="accuracy",
        title=f"{curves_title(report)[:1].upper()}{curves_title(report)[1:]} against ε",
        description=f"{len(series)} curves over {len(report.eps)} values of ε; clean accuracy "
        f"{pct(report.clean_accuracy)}.",
        band=shares,
        band_tip="certified … attacked: the true robust accuracy lies in this band",
        reference=(report.clean_accuracy, f"clean: {pct(report.clean_accuracy)}"),
        chart_id="curves",
    )


def corruption_chart(report: RobustnessReport) -> str:
    """Accuracy against severity for each corruption and their mean (thick)."""
    results = report.corruptions
    assert results is not None
    series = [
        Series(
            name,
            [
                Point(s, results.accuracy(name, s) or 0.0, f"{name}, severity {s}: {pct(results.accuracy(name, s))}")
                for s in results.severities
            ],
            color=k,
            point_class="cpt",
        )
        for k, name in enumerate(results.names)
    ]
    series.append(
        Series(
            f"mean ({pct(results.mean_accuracy)})",
            [
                Point(s, results.mean_at(s), f"mean at severity {s}: {pct(results.mean_at(s))}")
                for s in results.severities
            ],
            color=7,
            style="thick",
            point_class="cpt",
        )
    )
    return line_chart(
        series,
        x_range=(min(results.severities), max(results.severities)),
        x_ticks=[(s, str(s)) for s in results.severities],
        x_label="severity",
        y_label="accuracy",
        title="Accuracy under common corruptions against severity",
        description=f"{len(results.names)} corruptions and their mean; mean corruption accuracy "
        f"{pct(results.mean_accuracy)}.",
        reference=(report.clean_accuracy, f"clean: {pct(report.clean_accuracy)}"),
        chart_id="corruptions",
    )


def accuracy_table(report: RobustnessReport) -> str:
    header = ["ε"] + [f"{n} (certified)" if c.kind == "certified" else n for n, c in report.attacks.items()]
    rows = [
        [Cell(report.eps_label(e), e)] + [percent(c.points[j].accuracy) for c in report.attacks.values()]
        for j, e in enumerate(report.eps)
    ]
    certified = any(c.kind == "certified" for c in report.attacks.values())
    what = "Accuracy under each attack and certified accuracy" if certified else "Accuracy under each attack"
    return html_table(header, rows, caption=f"{what} at each ε")


def attacks_table(report: RobustnessReport) -> str:
    """What each curve is and what it cost: kind, parameters, success at the largest ε, norms, time."""
    last = report.eps_label(report.eps[-1])
    sub = norm_sub(report.norm)
    header = [
        "attack",
        "kind",
        "parameters",
        f"success at ε={last}",
        f"mean ‖δ‖{sub} there",
        "seconds",
        "forward passes",
    ]
    extra_median = any(c.median_norm is not None for c in report.attacks.values())
    extra_abstained = any(c.abstained is not None for c in report.attacks.values())
    header += [f"median ‖δ‖{sub}"] * extra_median + ["abstained"] * extra_abstained
    rows = []
    for name, curve in report.attacks.items():
        params = ", ".join(f"{k}={v}" for k, v in curve.params.items() if v is not None) or "—"
        point = curve.points[-1]
        row = [
            name,
            curve.kind,
            params,
            Cell("—") if curve.kind == "certified" else percent(point.success_rate),
            Cell(num(point.mean_norm), point.mean_norm if point.mean_norm is not None else float("-inf")),
            Cell(f"{curve.seconds:.2f}", curve.seconds),
            Cell(f"{curve.forward_samples:,}", curve.forward_samples),
        ]
        if extra_median:
            row.append(
                Cell(num(curve.median_norm), curve.median_norm if curve.median_norm is not None else float("inf"))
            )
        if extra_abstained:
            row.append(Cell("" if curve.abstained is None else f"{curve.abstained}/{report.n_samples}"))
        rows.append(row)
    return html_table(header, rows, caption="The curves and what each cost", text_columns=(0, 1, 2))


def class_table(report: RobustnessReport) -> str:
    """Samples and clean accuracy per class, and accuracy under each curve at the ε where the
    classes differ the most (:func:`advgrad.report.plot.reference_point`)."""
    ref = reference_point(report)
    header = ["class", "samples", "clean"]
    columns = []
    if ref is not None:
        columns = [(n, c.point_at(ref[1])) for n, c in report.attacks.items() if c.point_at(ref[1]) is not None]
        header += [f"{n} at ε={report.eps_label(ref[1])}" for n, _ in columns]
    clean = report.class_accuracy(report.clean_correct_per_class)
    shown = min(len(report.class_counts), MAX_CLASS_ROWS)
    names = report.model.get("class_names") or report.data.get("class_names")
    rows = []
    for k in range(shown):
        row = [
            Cell(class_label(names, k), k),
            Cell(str(report.class_counts[k]), report.class_counts[k]),
            percent(clean[k]),
        ]
        row += [percent(report.class_accuracy(p.robust_per_class)[k]) for _, p in columns]
        rows.append(row)
    caption = "Accuracy per class (— : no sample of the class)"
    if shown < len(report.class_counts):
        caption += f"; the first {shown} of {len(report.class_counts)} classes (all are in the JSON report)"
    return html_table(header, rows, caption=caption)


def corruption_table(report: RobustnessReport) -> str:
    results = report.corruptions
    assert results is not None
    header = ["corruption"] + [f"severity {s}" for s in results.severities] + ["mean"]
    rows = [
        [name] + [percent(results.accuracy(name, s)) for s in results.severities] + [percent(results.mean_of(name))]
        for name in results.names
    ]
    rows.append(
        [Cell("mean", float("inf"))]
        + [percent(results.mean_at(s)) for s in results.severities]
        + [percent(results.mean_accuracy)]
    )
    return html_table(header, rows, caption="Accuracy under each common corruption at each severity")


def gates_table(report: RobustnessReport) -> str:
    rows = [
        [g["gate"], percent(g["accuracy"]), percent(g["threshold"]), _status_cell(g["passed"]), describe_gate(g)]
        for g in report.gates
    ]
    return html_table(
        ["gate", "accuracy", "required", "result", "what"], rows, caption="--fail-under gates", text_columns=(0, 3, 4)
    )


def _status_cell(passed: bool) -> Cell:
    return Cell("✔ pass" if passed else "✘ FAIL", float(passed), css=f"status {'ok' if passed else 'fail'}")


def tables(report: RobustnessReport) -> str:
    parts = []
    if report.attacks:
        parts += [accuracy_table(report), attacks_table(report)]
    if report.corruptions is not None:
        parts.append(corruption_table(report))
    if report.class_counts:
        parts.append(class_table(report))
    if report.gates:
        parts.append(gates_table(report))
    return "".join(parts)


def checks_section(report: RobustnessReport) -> str:
    """A table of the checks, then each check's finding with the paragraph of the docs about it."""
    rows = []
    for c in report.checks:
        label, css = STATUS.get(c["status"], (c["status"], ""))
        rows.append(
            [
                Cell(f'<a href="#check-{text(c["name"])}">{text(c["name"])}</a>', markup=True),
                Cell(label, css=f"status {css}"),
                c["message"],
            ]
        )
    warned = len(fired(report.checks))
    intro = (
        f'<p class="verdict warn">{warned} check{"s" if warned != 1 else ""} fired: the numbers above are probably '
        "too good. Read the check before the numbers.</p>"
        if warned
        else ""
    )
    docs = []
    for c in report.checks:
        label, css = STATUS.get(c["status"], (c["status"], ""))
        paragraphs = doc_section("checks", c["name"])
        body = "".join(f'<p class="doc">{p}</p>' for p in paragraphs) or '<p class="doc">See `advgrad docs checks`.</p>'
        details = json_block("the numbers behind it", c.get("details", {})) if c.get("details") else ""
        opened = " open" if c["status"] == WARNING else ""
        docs.append(
            f'<details id="check-{text(c["name"])}"{opened}><summary><span class="status {css}">{text(label)}</span> '
            f"<strong>{text(c['name'])}</strong>: {text(c['message'])}</summary>{body}{details}</details>"
        )
    table = html_table(["check", "status", "finding"], rows, caption="Sanity checks", text_columns=(0, 1, 2))
    source = '<p class="doc">From docs/checks.md (also <code>advgrad docs checks</code>).</p>'
    return intro + table + "<h3>What each check looks for</h3>" + source + "".join(docs)


def configuration(report: RobustnessReport) -> str:
    """Versions, seed and timing as tables; the configuration and diagnostics as JSON."""
    versions = html_table(
        ["package", "version"],
        [[k, str(v)] for k, v in report.versions.items()],
        caption="Versions",
        sortable=False,
        text_columns=(0, 1),
    )
    timing = html_table(
        ["phase", "value"],
        [[k, Cell(f"{v:.2f}" if isinstance(v, float) else str(v), v)] for k, v in report.timing.items()],
        caption=f"Time in seconds (seed {report.seed})",
        sortable=False,
    )
    return (
        f'<div class="side"><div>{versions}</div><div>{timing}</div></div>'
        + json_block("Configuration (the run's options)", report.config)
        + json_block("Model and data", {"model": report.model, "data": report.data})
        + json_block("Diagnostics the checks read", report.diagnostics)
    )


def render_html(report: RobustnessReport, *, title: str = "advgrad robustness report") -> str:
    """The whole page for ``report``."""
    sections = []
    if report.attacks:
        sections.append(("curves", "Robustness curves", curve_chart(report) + _curve_note(report)))
    if report.corruptions is not None:
        sections.append(("corruptions", "Common corruptions", corruption_chart(report)))
    sections.append(("tables", "Tables", tables(report)))
    if report.checks:
        sections.append(("checks", "Sanity checks", checks_section(report)))
    shown = gallery(report)
    if shown:
        sections.append(("gallery", "Examples", shown))
    sections.append(("config", "Configuration and versions", configuration(report)))
    version = report.versions.get("advgrad", "?")
    footer = f"Written by advgrad {text(version)}. One self-contained file: it opens offline and fetches nothing."
    return page(f"{title}: {model_name(report)}", title, sections, headline(report), footer)


def _curve_note(report: RobustnessReport) -> str:
    note = "Rest the pointer on (or tab to) a point for its numbers. An attack's accuracy is an upper bound on the robust accuracy"
    if any(c.kind == "certified" for c in report.attacks.values()):
        note += "; a certified accuracy is a lower bound, and the shaded band between them holds the true value"
    return f'<p class="doc">{text(note)}.</p>'
