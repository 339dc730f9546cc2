"""``advgrad compare``: did robustness regress between two reports?"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from advgrad.cli import report_options as r
from advgrad.cli import shared_options as o
from advgrad.cli.common import emit_json
from advgrad.cli.console import handle_errors, info, out, warn
from advgrad.cli.outputs import STDOUT
from advgrad.core.errors import ExitCode, UsageError
from advgrad.io.files import write_text
from advgrad.io.output_paths import check_output_paths
from advgrad.report.comparison import points_change, render_comparison_markdown, verdict_line, where
from advgrad.report.fmt import eps_label, pct
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
) -> None:
    """Compare two robustness reports; exit 1 when accuracy dropped by more than --max-drop at any
    point both hold (clean accuracy once, and each attack at each ε > 0).

    The verdict is one line on stderr, pass or fail. --markdown writes the table for a
    pull-request comment. Exit 2 when a report cannot be read or the two cannot be compared
    (different threat models, no shared point).

    Example: advgrad compare baseline.json report.json --markdown comment.md

    Example: advgrad compare baseline.json report.json --max-drop 2%
    """
    drop = parse_max_drop(max_drop)
    if json_out is not None and markdown is not None and str(json_out) == str(markdown) == STDOUT:
        raise UsageError("only one output can go to stdout ('-'), got --json and --markdown")
    check_output_paths({"--json": json_out, "--markdown": markdown}, {"BASELINE": baseline, "NEW": new})
    comparison = compare_reports(read_report(baseline), read_report(new), drop, names=(str(baseline), str(new)))
    for message in comparison.warnings:
        warn(message)
    used_stdout = emit_json(json_out, comparison.to_dict())
    if markdown is not None:
        text = render_comparison_markdown(comparison)
        if str(markdown) == STDOUT:
            sys.stdout.write(text)
            used_stdout = True
        else:
            write_text(markdown, text)
            info(f"wrote {markdown}")
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
