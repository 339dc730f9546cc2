"""The Markdown report (advgrad/report/markdown.py) parses, and its tables hold the report's numbers."""

from __future__ import annotations

from markdown_it import MarkdownIt
from report_helpers import crafted

from advgrad.report.markdown import render_markdown
from advgrad.verdicts.checks import run_checks


def tables(text: str) -> list[list[list[str]]]:
    """Every table of a Markdown text as rows of cell texts (header first), parsed by markdown-it."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    found, rows, row, inside = [], [], [], False
    for tok in tokens:
        if tok.type == "table_open":
            rows = []
        elif tok.type == "tr_open":
            row = []
        elif tok.type in ("th_open", "td_open"):
            inside = True
        elif tok.type == "inline" and inside:
            row.append(tok.content)
            inside = False
        elif tok.type == "tr_close":
            rows.append(row)
        elif tok.type == "table_close":
            found.append(rows)
    return found


def sample_report():
    report = crafted({"fgsm": [95, 60, 20], "pgd": [95, 47, 0]}, eps=(0.0, 8 / 255, 0.5))
    report.checks = run_checks(report)
    report.gates = [
        {"gate": "pgd@8/255=0.40", "attack": "pgd", "eps": 8 / 255, "threshold": 0.4, "accuracy": 0.47, "passed": True},
        {"gate": "fgsm@0.5=0.3", "attack": "fgsm", "eps": 0.5, "threshold": 0.3, "accuracy": 0.2, "passed": False},
    ]
    return report


def test_markdown_parses_into_the_expected_tables():
    text = render_markdown(sample_report())
    found = tables(text)
    assert len(found) == 5  # accuracy, attacks, model passes, gates, checks
    accuracy = found[0]
    assert accuracy[0] == ["ε", "fgsm", "pgd"]
    assert accuracy[1:] == [["0", "95.0%", "95.0%"], ["8/255", "60.0%", "47.0%"], ["0.5", "20.0%", "0.0%"]]
    passes = found[2]
    assert passes[0] == ["curve", "ε", "forward", "backward"]
    assert [r[:2] for r in passes[1:4]] == [["`fgsm`", "0"], ["`fgsm`", "8/255"], ["`fgsm`", "0.5"]]
    gates = found[3]
    assert [r[0] for r in gates[1:]] == ["`pgd@8/255=0.40`", "`fgsm@0.5=0.3`"]
    assert "pass" in gates[1][3] and "FAIL" in gates[2][3]
    checks = found[4]
    assert len(checks) == 12 and all(len(r) == 3 for r in checks)  # a header row and eleven checks
    assert "Clean accuracy: **95.0%** (95/100)" in text
    assert "### Gates: 1 passed, 1 failed" in text


def test_pipes_in_cells_do_not_break_tables():
    report = crafted({"a|b": [95, 60, 20]})
    report.checks = []
    found = tables(render_markdown(report))
    assert found[0][0] == ["ε", "a|b"]
    assert all(len(r) == 2 for r in found[0])


def test_fired_check_is_visible():
    report = crafted({"pgd": [95, 60, 70]})
    report.checks = run_checks(report)
    text = render_markdown(report)
    assert "### Sanity checks: 1 warning" in text and "advgrad docs checks" in text
    row = next(r for r in tables(text)[-1] if r[0] == "`accuracy-rises-with-eps`")
    assert "warning" in row[1]
