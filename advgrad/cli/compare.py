"""``advgrad compare``: did robustness regress between two reports?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from advgrad.cli import options as o
from advgrad.cli.common import emit_json
from advgrad.cli.console import err, handle_errors, out, warn
from advgrad.cli.paths import check_output_paths
from advgrad.compare import Comparison, compare_reports, read_report
from advgrad.errors import ExitCode
from advgrad.gates import parse_share
from advgrad.report.fmt import eps_label, pct


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def comparison_table(comparison: Comparison) -> Table:
    """One row per shared point: accuracies, change in percentage points, verdict."""
    table = Table()
    for col in ("attack", "ε", "baseline", "new", "change (points)", "result"):
        table.add_column(col, justify="left" if col in ("attack", "result") else "right")
    for p in comparison.points:
        verdict = "REGRESSED" if p.regressed else ("improved" if p.change > 0 else "ok")
        table.add_row(p.attack, "—" if p.eps is None else eps_label(p.eps), pct(p.baseline), pct(p.new),
                      _points(p.change), verdict, style="red" if p.regressed else None)
    return table


@handle_errors
def compare_command(
    baseline: Annotated[Path, typer.Argument(help="The reference report (advgrad eval --json).", show_default=False)],
    new: Annotated[Path, typer.Argument(help="The report to check against it.", show_default=False)],
    max_drop: Annotated[str, typer.Option("--max-drop", help="Largest allowed drop in accuracy at any shared point, as "
                                          "a share (0.02) or percentage (2%).")] = "0",
    json_out: o.JsonOpt = None,
) -> None:
    """Compare two robustness reports; exit 1 when accuracy dropped by more than --max-drop at any
    point both hold (clean accuracy, and each attack at each ε).

    Exit 2 when a report cannot be read or the two cannot be compared (different threat models,
    no shared point).

    Example: advgrad compare baseline.json report.json --max-drop 0.02
    """
    check_output_paths({"--json": json_out}, {"BASELINE": baseline, "NEW": new})
    drop = parse_share(max_drop, "--max-drop")
    comparison = compare_reports(read_report(baseline), read_report(new), drop, names=(str(baseline), str(new)))
    for message in comparison.warnings:
        warn(message)
    if not emit_json(json_out, comparison.to_dict()):
        out.print(comparison_table(comparison))
    for p in comparison.regressions:
        where = "clean accuracy" if p.eps is None else f"{p.attack} at ε={p.eps:g}"
        err.print(f"regression: {where}: {pct(p.baseline)} → {pct(p.new)} ({_points(p.change)} points; at most "
                  f"{100 * drop:.1f} allowed)", markup=False)
    if comparison.regressions:
        raise typer.Exit(int(ExitCode.GATE_FAILED))
