"""``--html FILE`` on eval, certify, attack and compare: the page is written (atomically, like every
output), parses as HTML5, holds the run's numbers; '-' sends it to stdout; bad paths are refused
before the run with one line and exit 2."""

from __future__ import annotations

import json

import html5lib
from helpers import assert_bad_input, invoke
from html_pages import POINT

SMALL = ["--limit", "24", "--eps", "0,0.1"]


def valid(text: str) -> str:
    html5lib.HTMLParser(strict=True).parse(text)
    return text


def test_eval_writes_the_page_beside_the_json(tmp_path):
    page, report = tmp_path / "r.html", tmp_path / "r.json"
    result = invoke(["eval", *SMALL, "--html", page, "--json", report])
    assert result.exit_code == 0, result.stderr
    text = valid(page.read_text(encoding="utf-8"))
    data = json.loads(report.read_text())
    assert f"{100 * data['clean_accuracy']:.1f}%" in text
    assert len(POINT.findall(text)) == len(data["attacks"]) * len(data["eps"])
    assert data["config"]["outputs"]["html"] == str(page)
    assert f"wrote {page}" in result.stderr


def test_certify_writes_the_page(tmp_path):
    page = tmp_path / "c.html"
    result = invoke(["certify", "--method", "ibp", *SMALL, "--html", page])
    assert result.exit_code == 0, result.stderr
    text = valid(page.read_text(encoding="utf-8"))
    assert "ibp (certified)" in text and len(POINT.findall(text)) == 2


def test_attack_writes_the_page(tmp_path):
    page = tmp_path / "a.html"
    result = invoke(["attack", "--eps", "0.1", "--limit", "24", "--html", page])
    assert result.exit_code == 0, result.stderr
    text = valid(page.read_text(encoding="utf-8"))
    assert "accuracy under attack" in text and text.count('<figure class="ex">') > 0


def test_compare_writes_the_page_also_when_it_fails(tmp_path):
    base = tmp_path / "base.json"
    assert invoke(["eval", *SMALL, "--json", base]).exit_code == 0
    data = json.loads(base.read_text())
    data["attacks"]["pgd"]["points"][1]["accuracy"] = 0.0  # a regression at pgd, ε = 0.1
    new = tmp_path / "new.json"
    new.write_text(json.dumps(data))
    page = tmp_path / "cmp.html"
    result = invoke(["compare", base, new, "--html", page])
    assert result.exit_code == 1
    text = valid(page.read_text(encoding="utf-8"))
    assert text.count('<tr class="regressed">') == 1 and "REGRESSED" in text


def test_the_page_can_go_to_stdout(tmp_path):
    result = invoke(["eval", *SMALL, "--html", "-"])
    assert result.exit_code == 0, result.stderr
    assert valid(result.stdout).startswith("<!DOCTYPE html>")


def test_bad_html_paths_are_refused_before_the_run(tmp_path):
    assert_bad_input(invoke(["eval", *SMALL, "--html", tmp_path]), "--html")
    same = tmp_path / "r.out"
    assert_bad_input(invoke(["eval", *SMALL, "--html", same, "--json", same]), "--html")
    assert_bad_input(invoke(["eval", *SMALL, "--html", "-", "--json", "-"]), "--json and --html")
    assert_bad_input(invoke(["attack", "--html", "-", "--json", "-"]), "--json and --html")
    assert_bad_input(invoke(["eval", *SMALL, "--robustbench-json", tmp_path]), "--robustbench-json")
    assert not list(tmp_path.iterdir())
