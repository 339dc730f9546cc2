"""The report as Markdown, ready for a CI job summary or a pull-request comment. Names that came
from files (model descriptions, attack names of a report read back) have their control characters
escaped (:func:`advgrad.core.text.printable`)."""

from __future__ import annotations

import json

from advgrad.core.results import RobustnessReport
from advgrad.core.text import printable
from advgrad.report.fmt import accuracy_cell, curve_heading, curves_title, num, pct
from advgrad.report.table import norm_symbol

STATUS = {"passed": "✅ passed", "warning": "⚠️ warning", "not-applicable": "➖ not applicable"}


def _cell(value: object) -> str:
    """Table-cell text: pipes escaped, no line breaks."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """A GitHub-flavoured table; ``align`` has one letter per column, l or r (default: the first
    column left, the others right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = {"l": ":--", "r": "--:"}
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join(rule[a] for a in align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _corruptions(report: RobustnessReport) -> list[str]:
    """The section on common corruptions: accuracy per corruption and severity, and the means."""
    results = report.corruptions
    if results is None:
        return []
    lines = [
        "",
        "### Accuracy under common corruptions",
        "",
        f"Mean corruption accuracy: **{pct(results.mean_accuracy)}** "
        f"({len(results.names)} corruptions × {len(results.severities)} severities)",
        "",
    ]
    rows = [
        [f"`{name}`", *(pct(results.accuracy(name, s)) for s in results.severities), pct(results.mean_of(name))]
        for name in results.names
    ]
    rows.append(["mean", *(pct(results.mean_at(s)) for s in results.severities), pct(results.mean_accuracy)])
    return lines + _table(["corruption", *(f"severity {s}" for s in results.severities), "mean"], rows)


def _attack_sections(report: RobustnessReport) -> list[str]:
    """The accuracy table of the attacks (and certified curves) at each ε, and what each cost."""
    title = curves_title(report)
    lines = ["", f"### {title[:1].upper()}{title[1:]}", ""]
    rows = [
        [report.eps_label(e)]
        + [accuracy_cell(c.points[j], report.n_samples, report.clean_correct) for c in report.attacks.values()]
        for j, e in enumerate(report.eps)
    ]
    mixed = len({c.kind == "certified" for c in report.attacks.values()}) > 1
    headings = [curve_heading(name, c) if mixed else name for name, c in report.attacks.items()]
    lines += _table(["ε", *headings], rows)
    lines += ["", "### Attacks", ""]
    attack_rows = []
    for name, curve in report.attacks.items():
        params = ", ".join(f"{k}={v}" for k, v in curve.params.items() if v is not None)
        largest = curve.points[-1]
        attack_rows.append(
            [
                f"`{name}`",
                curve.kind,
                params or "—",
                "—" if curve.kind == "certified" else pct(largest.success_rate),  # a bound fools no sample
                num(largest.mean_norm),
                f"{curve.seconds:.2f}",
            ]
        )
    lines += _table(
        [
            "attack",
            "kind",
            "parameters",
            f"success at ε={report.eps_label(report.eps[-1])}",
            "mean ‖δ‖ there",
            "seconds",
        ],
        attack_rows,
        align="lllrrr",
    )
    return lines + _cost_section(report)


def _cost_section(report: RobustnessReport) -> list[str]:
    """Forward and backward sample-passes per curve and ε, and the run's totals."""
    rows = [
        [f"`{name}`", report.eps_label(p.eps), f"{p.forward_samples:,}", f"{p.backward_samples:,}"]
        for name, curve in report.attacks.items()
        for p in curve.points
    ]
    for name, curve in report.attacks.items():
        rows.append([f"`{name}`", "all", f"{curve.forward_samples:,}", f"{curve.backward_samples:,}"])
        rows += [
            [
                f"`{name}` stage `{stage['name']}` (fooled {stage['fooled']:,})",
                "all",
                f"{stage['forward_samples']:,}",
                f"{stage['backward_samples']:,}",
            ]
            for stage in curve.stages or []
        ]
    if report.passes:
        p = report.passes
        rows.append(
            ["clean pass and checks", "—", f"{p['clean_forward_samples']:,}", f"{p['clean_backward_samples']:,}"]
        )
        rows.append(["**run total**", "—", f"{p['forward_samples']:,}", f"{p['backward_samples']:,}"])
    heading = ["", "### Model passes (samples)", ""]
    return heading + _table(["curve", "ε", "forward", "backward"], rows, align="llrr")


def render_markdown(report: RobustnessReport, *, title: str = "advgrad robustness report") -> str:
    """Heading with the run's context, the accuracy table, gates, checks and the configuration."""
    model = report.model.get("description") or report.model.get("source") or "model"
    data = report.data.get("description") or report.data.get("source") or "data"
    threat = (
        f"**Threat model:** {norm_symbol(report.norm)}"
        + (f", targeted ({report.config['target']})" if report.config.get("target") else "")
        + " · "
        if report.attacks
        else ""  # common corruptions alone: no threat model applies
    )
    lines = [
        f"## {title}",
        "",
        f"**Model:** {model}  ",
        f"**Data:** {data} — {report.n_samples} samples evaluated  ",
        f"{threat}**seed** {report.seed} · advgrad {report.versions.get('advgrad', '?')}",
        "",
        f"Clean accuracy: **{pct(report.clean_accuracy)}** ({report.clean_correct}/{report.n_samples})",
    ]
    if report.attacks:
        lines += _attack_sections(report)
    lines += _corruptions(report)
    if report.gates:
        failed = sum(not g["passed"] for g in report.gates)
        lines += ["", f"### Gates: {len(report.gates) - failed} passed, {failed} failed", ""]
        gate_rows = [
            [f"`{g['gate']}`", pct(g["accuracy"]), pct(g["threshold"]), "✅ pass" if g["passed"] else "❌ FAIL"]
            for g in report.gates
        ]
        lines += _table(["gate", "accuracy", "required", "result"], gate_rows)
    if report.checks:
        warned = sum(c["status"] == "warning" for c in report.checks)
        lines += ["", f"### Sanity checks: {warned} warning{'s' if warned != 1 else ''}", ""]
        check_rows = [[f"`{c['name']}`", STATUS.get(c["status"], c["status"]), c["message"]] for c in report.checks]
        lines += _table(["check", "status", "finding"], check_rows, align="lll")
        if warned:
            lines += ["", "A warning means the numbers above are probably too good; see `advgrad docs checks`."]
    context = {"config": report.config, "seed": report.seed, "versions": report.versions}
    lines += [
        "",
        "<details><summary>Configuration and versions</summary>",
        "",
        "```json",
        json.dumps(context, indent=2, ensure_ascii=False, default=str),  # controls: escaped below
        "```",
        "",
        "</details>",
        "",
    ]
    return printable("\n".join(lines), newlines=True)  # names from files: no control characters
