"""advgrad/core/text.py: names from files shown with every control character escaped, cut when long,
and listed a few at a time; every report renderer shows them that way (issue 21, items 12-13)."""

from __future__ import annotations

import csv
import io
import unicodedata
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st
from report_helpers import crafted

from advgrad.core.text import printable, short, some_names
from advgrad.report.chart import text_chart
from advgrad.report.csvfile import render_csv
from advgrad.report.junit import render_junit
from advgrad.report.markdown import render_markdown

# What an attacker puts in a class name, a CSV header or an operator type: clear the screen, set
# the window title, a carriage return over what came before, the one-byte CSI, a bidirectional
# override, a NUL that XML forbids, an undecodable byte as Python keeps it, Rich markup.
HOSTILE = "cat\x1b[2J\x1b]0;pwned\x07\rdog\x9b31m\u202etac\x00\udcff[/red][bold]"
BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
RAW = ("\x1b", "\x07", "\r", "\x9b", "\u202e", "\x00", "\udcff")


def assert_escaped(text: str) -> None:
    assert not any(c in text for c in RAW), repr(text)
    assert "\\x1b[2J" in text and "\\u202etac" in text and "[/red][bold]" in text, text


def test_printable_escapes_controls_bidi_and_surrogates_and_keeps_the_rest():
    assert printable(HOSTILE) == ("cat\\x1b[2J\\x1b]0;pwned\\x07\\x0ddog\\x9b31m\\u202etac\\x00\\udcff[/red][bold]")
    assert printable("a\nb\tc\x7f") == "a\\x0ab\\x09c\\x7f"
    assert printable("a\nb", newlines=True) == "a\nb"
    kept = "ε = 8/255, Zürich, 東京, 👨‍👩‍👧, C:\\path"  # letters, emoji joined by ZWJ, backslashes
    assert printable(kept) == kept


@given(st.text())
def test_printable_leaves_nothing_a_terminal_or_xml_obeys(text):
    shown = printable(text)
    assert not [c for c in shown if unicodedata.category(c) in ("Cc", "Cs") or c in BIDI], repr(shown)
    assert printable(shown) == shown  # escaping twice changes nothing
    shown.encode("utf-8")  # no lone surrogate left


def test_short_names_and_lists_name_the_count():
    assert short("x" * 1_000_000) == "x" * 80 + "… (1,000,000 characters)"
    listed = some_names([f"c{i}" for i in range(1_000_000)])
    assert listed == "c0, c1, c2, c3, c4, c5, c6, c7, … (1,000,000 in all)"
    assert some_names(["a\x1b[2J"], 8) == "a\\x1b[2J" and some_names([]) == "none"


def _hostile_report():
    report = crafted({"fgsm": [80, 40, 20], HOSTILE: [80, 30, 10]})
    report.model = {"source": "hf", "description": f"Hugging Face model from {HOSTILE}"}
    report.data = {"source": HOSTILE, "description": HOSTILE}
    report.gates = [{"gate": f"{HOSTILE}@0.1>=50%", "attack": HOSTILE, "accuracy": 0.1, "threshold": 0.5}]
    report.gates[0].update(passed=False, eps=0.1, eps_label="0.1")
    report.checks = [{"name": "flat-curve", "status": "warning", "message": f"{HOSTILE} did not move"}]
    return report


@pytest.mark.parametrize(
    "render",
    [render_markdown, render_csv, lambda r: render_junit(r, strict=True), text_chart],
    ids=["markdown", "csv", "junit", "chart"],
)
def test_every_report_renderer_escapes_names(render):
    text = render(_hostile_report())
    assert_escaped(text)


def test_junit_and_csv_with_hostile_names_stay_parsable():
    report = _hostile_report()
    root = ET.fromstring(render_junit(report, strict=True).encode())  # no character XML forbids
    failures = [f.get("message") for f in root.iter("failure")]
    assert any("\\x1b[2J" in m for m in failures), failures
    rows = list(csv.reader(io.StringIO(render_csv(report))))
    assert {len(r) for r in rows} == {len(rows[0])}
