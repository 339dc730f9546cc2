"""Terminal tables (Rich) for reports, attack summaries and gradients."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from advgrad.core.results import RobustnessReport
from advgrad.core.text import printable
from advgrad.evaluation.generate import AttackSummary
from advgrad.report.fmt import accuracy_cell, curve_heading, curves_title, eps_label, norm_sub, norm_symbol, num, pct


def plain(text: object) -> Text:
    """A cell that shows ``text`` as written, whatever console prints it: control characters
    escaped (:func:`advgrad.core.text.printable`), ``[red]`` not read as markup."""
    return Text(printable(text))


def report_heading(report: RobustnessReport) -> str:
    """One line of context printed above the table."""
    clean = f"clean accuracy {pct(report.clean_accuracy)} ({report.clean_correct}/{report.n_samples})"
    if not report.attacks:  # common corruptions alone: no threat model applies
        return f"{clean} · {curves_title(report)}:"
    return f"{clean} · threat model {norm_symbol(report.norm)} · {curves_title(report)}:"


def report_table(report: RobustnessReport) -> Table:
    """Accuracy under each attack (columns) at each ε (rows)."""
    table = Table()
    table.add_column("ε", justify="right")
    mixed = len({curve.kind == "certified" for curve in report.attacks.values()}) > 1
    for name, curve in report.attacks.items():
        table.add_column(plain(curve_heading(name, curve) if mixed else name), justify="right")
    for j, eps in enumerate(report.eps):
        row = [report.eps_label(eps)]
        for curve in report.attacks.values():
            row.append(accuracy_cell(curve.points[j], report.n_samples, report.clean_correct))
        table.add_row(*row)
    minimal = [curve.kind == "minimal" for curve in report.attacks.values()]  # as the report says
    if any(minimal):
        # Minimal-perturbation attacks: the median norm of the smallest adversarial example found
        # ("—" when fewer than half of the samples were fooled at all).
        table.add_section()
        table.add_row(
            f"median ‖δ‖{norm_sub(report.norm)}",
            *(num(c.median_norm) if m else "" for c, m in zip(report.attacks.values(), minimal, strict=True)),
        )
    if any(curve.abstained is not None for curve in report.attacks.values()):
        # Randomized smoothing: samples without a certificate at any radius (not counted above).
        table.add_section()
        table.add_row(
            "abstained",
            *("" if c.abstained is None else f"{c.abstained}/{report.n_samples}" for c in report.attacks.values()),
        )
    return table


def corruption_table(report: RobustnessReport) -> Table | None:
    """Accuracy under each common corruption (rows) at each severity (columns), with the means
    per corruption, per severity and over all (the mean corruption accuracy); None without corruptions."""
    results = report.corruptions
    if results is None:
        return None
    table = Table(title="accuracy under common corruptions, by severity", title_justify="left")
    table.add_column("corruption", no_wrap=True)
    for severity in results.severities:
        table.add_column(str(severity), justify="right")
    table.add_column("mean", justify="right")
    for name in results.names:
        table.add_row(
            plain(name), *(pct(results.accuracy(name, s)) for s in results.severities), pct(results.mean_of(name))
        )
    table.add_section()
    table.add_row("mean", *(pct(results.mean_at(s)) for s in results.severities), pct(results.mean_accuracy))
    return table


def cost_table(report: RobustnessReport) -> Table:
    """Time and work per attack (forward and backward model passes over samples, in all and at each ε
    when there are several) and per certification method (the margin bounds it computed, one per
    sample and ε; smoothing's noisy copies are model passes), and the run's totals."""
    kinds = {curve.kind == "certified" for curve in report.attacks.values()}
    bounds = any(curve.bounds_computed is not None for curve in report.attacks.values())
    first = {frozenset({True}): "method", frozenset({True, False}): "attack / method"}.get(frozenset(kinds), "attack")
    work = "forward passes (samples) or bounds" if bounds else "forward passes (samples)"
    table = Table()
    for col in (first, "parameters", "seconds", work, "backward passes (samples)"):
        table.add_column(col, justify="left" if col in (first, "parameters") else "right")
    for name, curve in report.attacks.items():
        params = ", ".join(f"{k}={v}" for k, v in curve.params.items() if v is not None)
        done = f"{curve.forward_samples:,}" if curve.bounds_computed is None else f"{curve.bounds_computed:,} bounds"
        table.add_row(plain(name), plain(params), f"{curve.seconds:.2f}", done, f"{curve.backward_samples:,}")
        for stage in curve.stages or []:
            table.add_row(
                f"  stage {plain(stage['name'])}",
                f"fooled {stage['fooled']:,}",
                "",
                f"{stage['forward_samples']:,}",
                f"{stage['backward_samples']:,}",
            )
        if len(curve.points) > 1 and curve.bounds_computed is None:
            for point in curve.points:
                label = f"  at ε={plain(report.eps_label(point.eps))}"
                table.add_row(label, "", "", f"{point.forward_samples:,}", f"{point.backward_samples:,}")
    if report.corruptions is not None:
        results = report.corruptions
        table.add_row(
            "corruptions",
            f"{len(results.names)} × {len(results.severities)} severities",
            f"{results.seconds:.2f}",
            f"{results.forward_samples:,}",
            "0",
        )
    if report.passes:
        p = report.passes
        table.add_row(
            "clean pass and checks", "", "", f"{p['clean_forward_samples']:,}", f"{p['clean_backward_samples']:,}"
        )
        table.add_row("run total", "", "", f"{p['forward_samples']:,}", f"{p['backward_samples']:,}")
    return table


def summary_table(summary: AttackSummary) -> Table:
    """The one-attack summary printed by ``advgrad attack``."""
    table = Table(show_header=False)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(
        "attack",
        plain(f"{summary.attack}, {norm_symbol(summary.norm)}, ε = {eps_label(summary.eps, summary.eps_label)}"),
    )
    table.add_row("samples", f"{summary.n_samples}")
    table.add_row("clean accuracy", pct(summary.clean_accuracy))
    table.add_row("accuracy under attack", pct(summary.accuracy))
    what = "reached target" if summary.target is not None else "fooled"
    table.add_row(f"success rate ({what})", f"{pct(summary.success_rate)} ({summary.successes}/{summary.attacked})")
    table.add_row(f"mean ‖δ‖{norm_sub(summary.norm)}", num(summary.mean_norm))
    table.add_row(f"max ‖δ‖{norm_sub(summary.norm)}", num(summary.max_norm))
    if summary.target is not None:
        table.add_row("target", plain(summary.target))
    table.add_row("seconds", f"{summary.seconds:.2f}")
    return table


def gradient_table(rows: list[dict], limit: int = 20, saved_to: str | None = None) -> Table:
    """Per-sample gradient norms; ``rows`` hold index, label, pred, loss, l1, l2, linf. The caption
    says where the rest are: in ``saved_to`` (the --out file) or how to keep them."""
    table = Table()
    for col in ("#", "label", "pred", "loss", "‖∇ₓJ‖₁", "‖∇ₓJ‖₂", "‖∇ₓJ‖∞"):
        table.add_column(col, justify="right")
    for row in rows[:limit]:
        table.add_row(
            str(row["index"]),
            str(row["label"]),
            str(row["pred"]),
            num(row["loss"]),
            num(row["l1"]),
            num(row["l2"]),
            num(row["linf"]),
        )
    if len(rows) > limit:
        where = f"all are in {saved_to}" if saved_to else "--out FILE or --json FILE keeps them all"
        table.caption = f"first {limit} of {len(rows)} samples; {where}"
    return table
