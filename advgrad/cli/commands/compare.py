"""``advgrad compare``: did robustness regress between two reports?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from advgrad.cli import report_options as r
from advgrad.cli import shared_options as o
from advgrad.cli.common import emit_json, emit_text
from advgrad.cli.console import handle_errors, info, out, warn
from advgrad.cli.outputs import STDOUT
from advgrad.core.errors import ExitCode, UsageError
from advgrad.io.output_paths import check_output_paths
from advgrad.report.comparison import points_change, render_comparison_markdown, verdict_line, where
from advgrad.report.fmt import eps_label, pct
from advgrad.report.html_compare import render_comparison_html
from advgrad.report.table import plain
from advgrad.verdicts.gates import parse_share
from advgrad.verdicts.regressions import Comparison, compare_reports, read_report


def comparison_table(comparison: Comparison) -> Table:
    """One row per shared point: accuracies, change in percentage points, the drop allowed there
    and the verdict. Clean accuracy is the first row, once."""
    table = Table()
    for col in ("attack", "ε", "baseline", "new", "change (points)", "allowed drop", "result"):
        table.add_column(col, justify="left" if col in ("attack", "result") else "right")
    for p in comparison.points:
        verdict = "REGRESSED" if p.regressed else ("improved" if p.change > p.allowed else "ok")
        table.add_row(
            plain(p.attack),  # names and labels from the report files
            plain("—" if p.eps is None else eps_label(p.eps, p.eps_label)),
            pct(p.baseline),
            pct(p.new),
            points_change(p.change),
            f"{100 * p.allowed:.1f}",
            verdict,
            style="red" if p.regressed else None,
        )
    return table


def parse_max_drop(text: str) -> float | None:
    """``auto`` (None: each point's sampling noise) or a share: ``0.02``, ``2%``."""
    return None if str(text).strip().lower() == "auto" else parse_share(text, "--max-drop")


@handle_errors
def compare_command(
    baseline: Annotated[Path, typer.Argument(help="The reference report (advgrad eval --json).", show_default=False)],
    new: Annotated[Path, typer.Argument(help="The report to check against it.", show_default=False)],
    max_drop: Annotated[
        str,
        typer.Option(
            "--max-drop",
            help="Largest drop in accuracy allowed at a point: a share "
            "(0.02), a percentage (2%), or auto: twice the binomial standard error "
            "of the point's accuracy on the report's samples, so that sampling noise "
            "is not a regression (`advgrad docs ci`).",
        ),
    ] = "auto",
    json_out: o.JsonOpt = None,
    markdown: r.MarkdownOpt = None,
    html: r.HtmlOpt = None,
) -> None:
    """Compare two robustness reports; exit 1 when accuracy dropped by more than --max-drop at any
    point both hold (clean accuracy once, and each attack at each ε > 0).

    The verdict is one line on stderr, pass or fail. --markdown writes the table for a
    pull-request comment. Exit 2 when a report cannot be read or the two cannot be compared
    (different threat models, no shared point).

    Example: advgrad compare baseline.json report.json --markdown comment.md

    Example: advgrad compare baseline.json report.json --max-drop 2%

    Example: advgrad compare baseline.json report.json --html comparison.html
    """
    drop = parse_max_drop(max_drop)
    files = {"--json": json_out, "--markdown": markdown, "--html": html}
    to_stdout = [option for option, path in files.items() if path is not None and str(path) == STDOUT]
    if len(to_stdout) > 1:
        raise UsageError(f"only one output can go to stdout ('-'), got {' and '.join(to_stdout)}")
    check_output_paths(files, {"BASELINE": baseline, "NEW": new})
    reports = read_report(baseline), read_report(new)
    comparison = compare_reports(*reports, drop, names=(str(baseline), str(new)))
    for message in comparison.warnings:
        warn(message)
    used_stdout = emit_json(json_out, comparison.to_dict())
    if markdown is not None:
        used_stdout = emit_text(markdown, render_comparison_markdown(comparison)) or used_stdout
    if html is not None:
        used_stdout = emit_text(html, render_comparison_html(comparison, *reports)) or used_stdout
    if not used_stdout:
        out.print(comparison_table(comparison))
    for p in comparison.regressions:
        info(
            f"regression: {where(p)}: {pct(p.baseline)} → {pct(p.new)} ({points_change(p.change)} points; at "
            f"most {100 * p.allowed:.1f} allowed)"
        )
    info(verdict_line(comparison))
    if comparison.regressions:
        raise typer.Exit(int(ExitCode.GATE_FAILED))
