"""JUnit XML (advgrad/report/junit.py): one test case per gate; parsed with the standard library."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from report_helpers import crafted
from typer.testing import CliRunner

from advgrad.cli import app
from advgrad.report.junit import render_junit
from advgrad.verdicts.checks import run_checks


def report_with(gates, robust=None):
    report = crafted(robust or {"fgsm": [95, 60, 20], "pgd": [95, 47, 0]}, eps=(0.0, 0.1, 0.5))
    report.checks = run_checks(report)
    report.gates = [
        {"gate": g, "attack": g.split("@")[0], "eps": 0.1, "threshold": t, "accuracy": a, "passed": a >= t}
        for g, t, a in gates
    ]
    return report


def suites(xml: str) -> dict[str, ET.Element]:
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    return {s.get("name"): s for s in root.findall("testsuite")}


def test_one_test_case_per_gate():
    xml = render_junit(
        report_with([("pgd@0.1=0.4", 0.4, 0.47), ("fgsm@0.1=0.7", 0.7, 0.6), ("pgd@0.1=0.5", 0.5, 0.47)])
    )
    gates = suites(xml)["advgrad.verdicts.gates"]
    cases = gates.findall("testcase")
    assert [c.get("name") for c in cases] == ["pgd@0.1=0.4", "fgsm@0.1=0.7", "pgd@0.1=0.5"]
    assert [c.find("failure") is not None for c in cases] == [False, True, True]
    assert gates.get("tests") == "3" and gates.get("failures") == "2"
    assert "60.00% < required 70.00%" in cases[1].find("failure").get("message")
    root = ET.fromstring(xml)
    assert root.get("failures") == "2"


def test_checks_fail_only_under_strict():
    # accuracy rises from 60% to 70%, and stays at 70% at ε = 0.5: two checks fire
    report = report_with([], robust={"pgd": [95, 60, 70]})
    lenient = suites(render_junit(report))["advgrad.verdicts.checks"]
    strict = suites(render_junit(report, strict=True))["advgrad.verdicts.checks"]
    assert lenient.get("failures") == "0" and strict.get("failures") == "2"
    failing = {c.get("name") for c in strict.findall("testcase") if c.find("failure") is not None}
    assert failing == {"accuracy-rises-with-eps", "accuracy-at-large-eps"}
    skipped = {c.get("name") for c in lenient.findall("testcase") if c.find("skipped") is not None}
    assert failing <= skipped
    assert len(strict.findall("testcase")) == 11
    assert suites(render_junit(report))["advgrad.verdicts.gates"].get("tests") == "0"


def test_cli_writes_parsable_junit(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVGRAD_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "out" / "junit.xml"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--attack",
            "fgsm",
            "--eps",
            "0,0.5",
            "--limit",
            "20",
            "--junit",
            str(path),
            "--fail-under",
            "fgsm@0=0.9",
            "--fail-under",
            "fgsm@0.5=0.99",
        ],
    )
    assert result.exit_code == 1
    gates = suites(path.read_text(encoding="utf-8"))["advgrad.verdicts.gates"]
    assert [c.get("name") for c in gates.findall("testcase")] == ["fgsm@0=0.9", "fgsm@0.5=0.99"]
    assert gates.get("failures") == "1"
