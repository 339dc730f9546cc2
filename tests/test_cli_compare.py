"""`advgrad compare` (advgrad/verdicts/regressions.py, advgrad/cli/commands/compare.py) on crafted reports."""

from __future__ import annotations

import json

import pytest
from report_helpers import crafted
from typer.testing import CliRunner

from advgrad.cli import app
from advgrad.core.errors import AdvgradError
from advgrad.verdicts.regressions import compare_reports, read_report

runner = CliRunner()


def write(path, report) -> str:
    path.write_text(json.dumps(report.to_dict() if hasattr(report, "to_dict") else report))
    return str(path)


def compare(tmp_path, base, new, *args):
    return runner.invoke(
        app, ["compare", write(tmp_path / "base.json", base), write(tmp_path / "new.json", new), *args]
    )


BASE = {"fgsm": [95, 60, 20], "pgd": [95, 50, 10]}


def test_identical_reports_pass(tmp_path):
    result = compare(tmp_path, crafted(BASE), crafted(BASE), "--max-drop", "0.02")
    assert result.exit_code == 0, result.output
    assert "REGRESSED" not in result.stdout and "pgd" in result.stdout


def test_a_drop_beyond_the_tolerance_fails_and_names_the_point(tmp_path):
    new = crafted({"fgsm": [95, 60, 20], "pgd": [95, 47, 10]})  # pgd at ε=0.1: 50% → 47%
    result = compare(tmp_path, crafted(BASE), new, "--max-drop", "0.02")
    assert result.exit_code == 1
    assert "pgd at ε=0.1" in result.stderr and "50.0% → 47.0%" in result.stderr
    assert "fgsm" not in result.stderr
    assert compare(tmp_path, crafted(BASE), new, "--max-drop", "0.03").exit_code == 0  # exactly 3 points: allowed
    assert compare(tmp_path, crafted(BASE), new, "--max-drop", "3%").exit_code == 0
    assert compare(tmp_path, crafted(BASE), new, "--max-drop", "0").exit_code == 1  # no drop allowed
    # the default, auto: on 100 samples at 50% the noise is 2·√(0.25/100) = 10 points, so 3 points pass
    assert compare(tmp_path, crafted(BASE), new).exit_code == 0


def test_improvements_pass_and_clean_accuracy_counts(tmp_path):
    better = crafted({"fgsm": [95, 70, 30], "pgd": [95, 60, 20]})
    assert compare(tmp_path, crafted(BASE), better, "--max-drop", "0").exit_code == 0
    worse_clean = crafted(BASE, clean=90)
    result = compare(tmp_path, crafted(BASE), worse_clean, "--max-drop", "0.02")
    assert result.exit_code == 1 and "clean accuracy" in result.stderr


def test_json_output_lists_every_shared_point(tmp_path):
    new = crafted({"pgd": [95, 40, 10], "apgd": [95, 30, 5]})
    result = compare(tmp_path, crafted(BASE), new, "--max-drop", "0.05", "--json", "-")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    points = {(p["attack"], p["eps"]): p for p in data["points"]}
    assert set(points) == {("clean", None), ("pgd", 0.1), ("pgd", 0.2)}  # fgsm, apgd: not shared; ε=0 is the clean row
    assert points[("pgd", 0.1)]["change"] == pytest.approx(-0.10) and points[("pgd", 0.1)]["regressed"]
    assert not points[("pgd", 0.2)]["regressed"] and data["regressed"] is True
    assert any("fgsm" in w for w in data["warnings"]) and any("apgd" in w for w in data["warnings"])


def test_eps_matched_with_tolerance(tmp_path):
    base = crafted(BASE, eps=(0.0, 8 / 255, 16 / 255))
    new = crafted({"fgsm": [95, 60, 20], "pgd": [95, 40, 10]}, eps=(0.0, 0.0314, 0.0627))
    comparison = compare_reports(base, new, 0.02)
    assert [p.eps for p in comparison.points if p.attack == "pgd"] == [8 / 255, 16 / 255]
    assert [p.attack for p in comparison.regressions] == ["pgd"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: "not json at all",
        lambda d: {**d, "schema": "something.else"},
        lambda d: {**d, "schema_version": 99},
        lambda d: {k: v for k, v in d.items() if k != "attacks"},
        lambda d: {**d, "clean_accuracy": "high"},
        lambda d: [1, 2, 3],
    ],
)
def test_unreadable_reports_are_exit_2(tmp_path, mutate):
    good = crafted(BASE).to_dict()
    bad = mutate(good)
    path = tmp_path / "bad.json"
    path.write_text(bad if isinstance(bad, str) else json.dumps(bad))
    result = runner.invoke(app, ["compare", write(tmp_path / "base.json", good), str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "bad.json" in result.stderr


def test_missing_file_and_incompatible_reports_are_exit_2(tmp_path):
    base = write(tmp_path / "base.json", crafted(BASE))
    assert runner.invoke(app, ["compare", base, str(tmp_path / "nope.json")]).exit_code == 2
    assert runner.invoke(app, ["compare", base, str(tmp_path)]).exit_code == 2
    l2 = compare(tmp_path, crafted(BASE), crafted(BASE, norm="2"))
    assert l2.exit_code == 2 and "threat models" in l2.stderr
    disjoint = compare(tmp_path, crafted(BASE), crafted({"apgd": [95, 50, 10]}))
    assert disjoint.exit_code == 2 and "share no" in disjoint.stderr
    assert compare(tmp_path, crafted(BASE), crafted(BASE), "--max-drop", "abc").exit_code == 2


def test_read_report_round_trips_and_ignores_unknown_fields(tmp_path):
    data = crafted(BASE).to_dict()
    data["a_field_from_the_future"] = 1
    data["attacks"]["pgd"]["points"][1]["median_norm"] = 0.05
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    report = read_report(path)
    assert report.attacks["pgd"].points[1].accuracy == 0.5
    with pytest.raises(AdvgradError):
        read_report(tmp_path / "missing.json")


def test_eps_in_only_one_report_are_named(tmp_path):
    base = crafted(BASE, eps=(0.0, 0.1, 0.2))
    new = crafted({"fgsm": [95, 60, 20], "pgd": [95, 50, 10]}, eps=(0.0, 0.1, 0.3))
    result = compare(tmp_path, base, new, "--json", "-")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {(p["attack"], p["eps"]) for p in data["points"]} == {("clean", None), ("fgsm", 0.1), ("pgd", 0.1)}
    lines = [line for line in result.stderr.splitlines() if "pgd:" in line]
    assert len(lines) == 1
    assert "ε = 0.2 only in" in lines[0] and "base.json" in lines[0]
    assert "ε = 0.3 only in" in lines[0] and "new.json" in lines[0]


def test_grids_that_share_only_eps_0_are_exit_2(tmp_path):
    base = crafted(BASE, eps=(0.0, 0.1, 0.2))
    new = crafted(BASE, eps=(0.0, 0.05, 0.3))
    result = compare(tmp_path, base, new)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and "beyond ε = 0" in result.stderr
    assert "0.1, 0.2 only in" in result.stderr and "0.05, 0.3 only in" in result.stderr
    assert "REGRESSED" not in result.stdout and "ok" not in result.stdout
    with pytest.raises(AdvgradError, match="share no"):
        compare_reports(base, new, 0.0)


def test_noise_tolerance_is_two_binomial_standard_errors():
    from advgrad.verdicts.regressions import noise_tolerance

    assert noise_tolerance(0.5, 100) == pytest.approx(0.10)  # 2·√(0.25/100)
    assert noise_tolerance(0.5, 10_000) == pytest.approx(0.01)
    assert noise_tolerance(1.0, 450) == pytest.approx(1 / 450)  # no noise at 100%: one sample
    big = {"fgsm": [9500, 6000, 2000], "pgd": [9500, 5000, 1000]}
    base = crafted(big, n=10_000, clean=9_500)
    new = crafted({**big, "pgd": [9500, 4700, 1000]}, n=10_000, clean=9_500)  # 3 points of 10,000 samples
    comparison = compare_reports(base, new, None)
    assert comparison.max_drop is None and [p.attack for p in comparison.regressions] == ["pgd"]


def test_clean_row_once_not_as_each_attacks_eps_zero(tmp_path):
    result = compare(tmp_path, crafted(BASE), crafted(BASE), "--json", "-")
    data = json.loads(result.stdout)
    assert [(p["attack"], p["eps"]) for p in data["points"]] == [
        ("clean", None),
        ("fgsm", 0.1),
        ("fgsm", 0.2),
        ("pgd", 0.1),
        ("pgd", 0.2),
    ]


def test_one_line_verdict_on_stderr_pass_and_fail(tmp_path):
    passed = compare(tmp_path, crafted(BASE), crafted(BASE))
    assert passed.exit_code == 0
    assert [line for line in passed.stderr.splitlines() if line.startswith("compare:")] == [
        "compare: passed: no regression at 5 points; no drop"
    ]
    new = crafted({"fgsm": [95, 60, 20], "pgd": [95, 47, 10]})
    failed = compare(tmp_path, crafted(BASE), new, "--max-drop", "0.02")
    verdict = [line for line in failed.stderr.splitlines() if line.startswith("compare:")]
    assert failed.exit_code == 1 and len(verdict) == 1
    assert verdict[0].startswith("compare: REGRESSED at 1 of 5 points; largest change -3.0 points (pgd at ε=0.1)")


def test_markdown_table_for_a_pr_comment(tmp_path):
    base = crafted(BASE, eps=(0.0, 8 / 255, 0.1))
    base.eps_labels = ["0", "8/255", "0.1"]
    for point, label in zip(base.attacks["pgd"].points, base.eps_labels, strict=True):
        point.eps_label = label
    new = crafted({"fgsm": [95, 60, 20], "pgd": [95, 40, 10]}, eps=(0.0, 8 / 255, 0.1))
    md = tmp_path / "comment.md"
    result = compare(tmp_path, base, new, "--max-drop", "2%", "--markdown", md)
    assert result.exit_code == 1
    text = md.read_text()
    assert text.startswith("## advgrad robustness comparison: ❌ regressed")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == "| attack | ε | baseline | new | Δ (points) | verdict |"
    assert "| pgd | 8/255 | 50.0% | 40.0% | -10.0 | ❌ regressed |" in rows
    assert "| clean | — | 95.0% | 95.0% | +0.0 | ✅ ok |" in rows
    assert sum(row.startswith("| clean") for row in rows) == 1 and len(rows) == 6  # header + clean + 2×2
    to_stdout = compare(tmp_path, base, new, "--max-drop", "2%", "--markdown", "-")
    assert to_stdout.stdout == text and "┃" not in to_stdout.stdout  # the Markdown alone on stdout


def test_attack_names_from_the_report_files_are_shown_escaped(tmp_path):
    """Issue 21, item 13: the reports are files; names in them reach the terminal and the comment."""
    name = "pgd\x1b[2J\x1b]0;pwned\x07\r\x9b31m\u202e[/bold]"
    base, new = crafted({name: [95, 50, 10]}), crafted({name: [95, 30, 10]})
    table = compare(tmp_path, base, new, "--max-drop", "0.02")
    comment = compare(tmp_path, base, new, "--max-drop", "0.02", "--markdown", "-")
    for result in (table, comment):
        assert result.exit_code == 1, (result.stdout, result.stderr)
        shown = result.stdout + result.stderr
        assert not any(c in shown for c in "\x1b\x07\r\x9b\u202e"), repr(shown)
        assert "pgd\\x1b[2J\\x1b]0;pwned\\x07\\x0d\\x9b31m\\u202e[/bold] at ε=0.1" in result.stderr
    assert "| pgd\\x1b[2J\\x1b]0;pwned\\x07\\x0d\\x9b31m\\u202e[/bold] |" in comment.stdout


def test_eps_in_messages_are_written_as_given(tmp_path):
    """ε values only one report measured are named as its user wrote them (2/255), not 0.007843."""
    base = crafted(BASE, eps=(0.0, 2 / 255, 4 / 255))
    base.eps_labels = ["0", "2/255", "4/255"]
    new = crafted(BASE, eps=(0.0, 2 / 255, 8 / 255))
    new.eps_labels = ["0", "2/255", "8/255"]
    result = compare(tmp_path, base, new)
    assert result.exit_code == 0, result.output
    assert "ε = 4/255 only in" in result.stderr and "ε = 8/255 only in" in result.stderr
    assert "0.0157" not in result.stderr and "0.0314" not in result.stderr
