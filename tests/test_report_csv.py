"""CSV output (advgrad/report/csvfile.py): one row per attack and ε, plus clean accuracy."""

from __future__ import annotations

import csv
import io

from report_helpers import crafted

from advgrad.report.csvfile import COLUMNS, render_csv


def test_rows_hold_the_report_numbers():
    report = crafted({"fgsm": [95, 60, 20], "pgd": [95, 47, 0]}, eps=(0.0, 8 / 255, 0.5))
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert list(rows[0]) == COLUMNS
    assert len(rows) == 1 + 2 * 3
    assert rows[0]["attack"] == "clean" and float(rows[0]["accuracy"]) == 0.95
    pgd = [r for r in rows if r["attack"] == "pgd"]
    assert [float(r["eps"]) for r in pgd] == [0.0, 8 / 255, 0.5]  # exact round trip
    assert [int(r["robust"]) for r in pgd] == [95, 47, 0]
    assert [float(r["accuracy"]) for r in pgd] == [0.95, 0.47, 0.0]
    assert pgd[0]["mean_norm"] == "" and float(pgd[2]["max_norm"]) == 0.5
    assert all(r["n_samples"] == "100" for r in rows)


def test_eps_and_accuracy_are_spelt_the_same_in_every_row():
    """ε = 0 is ``0.0`` in the clean row as in the attacks' rows (it was ``0`` there), so that a
    spreadsheet or ``grep ',0.0,'`` sees one value; numbers are Python's shortest round-trip text."""
    report = crafted({"fgsm": [95, 60, 20]}, eps=(0.0, 2 / 255, 0.5))
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert [r["eps"] for r in rows] == ["0.0", "0.0", repr(2 / 255), "0.5"]
    assert all(r["accuracy"] == repr(float(r["accuracy"])) for r in rows)
