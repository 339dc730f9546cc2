"""The report's gates (and sanity checks) as JUnit XML, for CI dashboards.

One ``<testcase>`` per ``--fail-under`` gate in the suite ``advgrad.verdicts.gates``: a failing gate is a
``<failure>``. The sanity checks form the suite ``advgrad.verdicts.checks``: a check that fired is a
``<failure>`` under ``--strict`` (where it fails the run) and a ``<skipped>`` with the warning
otherwise; a check with nothing to look at is ``<skipped>`` too.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from advgrad.core.results import RobustnessReport
from advgrad.core.text import printable
from advgrad.verdicts.gates import describe_gate


def _suite(root: ET.Element, name: str, timestamp_seconds: float) -> ET.Element:
    return ET.SubElement(root, "testsuite", name=name, time=f"{timestamp_seconds:.3f}")


def _count(suite: ET.Element) -> None:
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(c.find("failure") is not None for c in cases)))
    suite.set("skipped", str(sum(c.find("skipped") is not None for c in cases)))
    suite.set("errors", "0")


def render_junit(report: RobustnessReport, *, strict: bool = False) -> str:
    """JUnit XML text (UTF-8) with the suites ``advgrad.verdicts.gates`` and ``advgrad.verdicts.checks``."""
    root = ET.Element("testsuites", name="advgrad")
    gates = _suite(root, "advgrad.verdicts.gates", report.timing.get("total_seconds", 0.0))
    for g in report.gates:
        case = ET.SubElement(gates, "testcase", classname="advgrad.verdicts.gates", name=g["gate"])
        if not g["passed"]:
            ET.SubElement(case, "failure", type="gate", message=describe_gate(g))
    _count(gates)
    checks = _suite(root, "advgrad.verdicts.checks", 0.0)
    for c in report.checks:
        case = ET.SubElement(checks, "testcase", classname="advgrad.verdicts.checks", name=c["name"])
        if c["status"] == "warning":
            tag = "failure" if strict else "skipped"
            element = ET.SubElement(
                case, tag, message=f"warning: {c['message']} (see `advgrad docs checks`, section {c['name']})"
            )
            if strict:
                element.set("type", "sanity-check")
        elif c["status"] == "not-applicable":
            ET.SubElement(case, "skipped", message=f"not applicable: {c['message']}")
    _count(checks)
    for attr in ("tests", "failures", "skipped", "errors"):
        root.set(attr, str(sum(int(s.get(attr, "0")) for s in root.findall("testsuite"))))
    ET.indent(root)
    # ElementTree writes control characters as they are, which XML forbids: escape them
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        + printable(ET.tostring(root, encoding="unicode"), newlines=True)
        + "\n"
    )
