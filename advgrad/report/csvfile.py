"""The report as CSV: one row per attack and ε (plus one for clean accuracy), and one per common
corruption and severity (kind ``corruption``, the ε cells empty, ``severity`` filled; a last row
``corruption-mean`` holds the mean corruption accuracy), for spreadsheets."""

from __future__ import annotations

import csv
import io

from advgrad.core.results import RobustnessReport
from advgrad.core.text import printable

COLUMNS = [
    "attack",
    "kind",
    "norm",
    "eps",
    "accuracy",
    "robust",
    "n_samples",
    "success_rate",
    "mean_norm",
    "max_norm",
    "eps_label",
    "severity",
]


def render_csv(report: RobustnessReport) -> str:
    """CSV text with a header row; empty cells where a value does not exist (no norm yet)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerow(
        [
            "clean",
            "",
            report.norm,
            repr(0.0),  # written as every other row's ε: the shortest repr of a float
            repr(report.clean_accuracy),
            report.clean_correct,
            report.n_samples,
            "",
            "",
            "",
            "0",
            "",
        ]
    )
    for name, curve in report.attacks.items():
        for p in curve.points:
            writer.writerow(
                [
                    name,
                    curve.kind,
                    report.norm,
                    repr(p.eps),
                    repr(p.accuracy),
                    p.robust,
                    report.n_samples,
                    repr(p.success_rate),
                    "" if p.mean_norm is None else repr(p.mean_norm),
                    "" if p.max_norm is None else repr(p.max_norm),
                    report.eps_label(p.eps),
                    "",
                ]
            )
    results = report.corruptions
    if results is not None:
        for c in results.points:
            writer.writerow(
                [c.corruption, "corruption", "", "", repr(c.accuracy), c.correct, report.n_samples]
                + [""] * 4
                + [c.severity]
            )
        writer.writerow(
            ["corruption-mean", "corruption", "", "", repr(results.mean_accuracy), "", report.n_samples] + [""] * 5
        )
    return printable(buffer.getvalue(), newlines=True)  # names with control characters escaped
