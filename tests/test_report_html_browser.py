"""The HTML pages in a real browser: headless Chromium (Debian's ``chromium``) loads the page of
each kind of run — a default eval (450 samples, fgsm and pgd), certify, eval with corruptions, a
table's eval, and compare — and the DOM after load must hold the headline and one curve point per
attack × ε, with no console error, no uncaught exception and no request beyond the page's own
file. Also: the page reads at phone width, follows dark mode, prints without its navigation, sorts
its tables, and a default eval's page stays under 2 MB. Without a browser the browser tests skip
and say so (`apt-get install chromium`); .ci/run installs it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from browser import Browser, find_chromium
from helpers import invoke
from html_pages import CORRUPTION_POINT, POINT

pytestmark = pytest.mark.slow  # a browser process and real runs: seconds each

TWO_MB = 2_000_000
PHONE_WIDTH = 390  # CSS pixels of a phone held upright


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set ADVGRAD_CHROMIUM)")
    opened = Browser(executable)
    yield opened
    opened.close()


def _run(folder, name: str, *args) -> tuple:
    """``advgrad ARGS --html NAME.html --json NAME.json`` → (page path, report dict)."""
    page, report = folder / f"{name}.html", folder / f"{name}.json"
    result = invoke([*args, "--html", page, "--json", report])
    assert result.exit_code == 0, result.stderr
    return page, json.loads(report.read_text())


def _table(folder) -> list[str]:
    """A CSV of 4 features whose label is a + c > 1, and a linear model that gets every row right."""
    import torch

    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, size=(40, 4))
    y = (x[:, 0] + x[:, 2] > 1.0).astype(int)
    rows = ["a,b,c,d,label"] + [
        ",".join(f"{v:.4f}" for v in row) + f",{label}" for row, label in zip(x, y, strict=True)
    ]
    (folder / "t.csv").write_text("\n".join(rows) + "\n")
    w = torch.tensor([[-5.0, 0.0, -5.0, 0.0], [5.0, 0.0, 5.0, 0.0]])
    torch.save({"fc.weight": w, "fc.bias": torch.tensor([5.0, -5.0])}, folder / "w.pt")
    return ["--data", folder / "t.csv", "--model", "table_models:linear", "--model-arg", "features=4",
            "--weights", folder / "w.pt"]  # fmt: skip


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """name → (page, report dict or None) for each kind of run."""
    folder = tmp_path_factory.mktemp("pages")
    found = {
        "eval": _run(folder, "eval", "eval"),  # the default: 450 digits, fgsm and pgd, six ε
        "certify": _run(folder, "certify", "certify", "--method", "ibp", "--eps", "0,0.01,0.02", "--limit", "60"),
        "corruptions": _run(
            folder,
            "corruptions",
            "eval",
            "--attack",
            "fgsm",
            "--eps",
            "0,0.1",
            "--limit",
            "40",
            "--corruptions",
            "gaussian_noise,brightness",
        ),  # fmt: skip
        "table": _run(folder, "table", "eval", "--attack", "fgsm,pgd", "--eps", "0,0.1,0.3", *_table(folder)),
    }
    new = json.loads(json.dumps(found["eval"][1]))
    new["attacks"]["pgd"]["points"][2]["accuracy"] = 0.0  # a regression at pgd's third ε
    (folder / "new.json").write_text(json.dumps(new))
    page = folder / "compare.html"
    result = invoke(["compare", folder / "eval.json", folder / "new.json", "--html", page])
    assert result.exit_code == 1, result.stderr
    found["compare"] = (page, None)
    return found


def _points(report: dict) -> int:
    return len(report["attacks"]) * len(report["eps"])


@pytest.mark.parametrize("kind", ["eval", "certify", "corruptions", "table", "compare"])
def test_page_loads_clean_in_chromium(browser, pages, kind):
    page, report = pages[kind]
    loaded = browser.load(page)
    assert loaded.errors == []
    assert loaded.fetched == []  # nothing beyond the file and its data: URIs
    assert loaded.requests and loaded.requests[0] == loaded.url
    expected = _points(pages["eval"][1]) * 2 if kind == "compare" else _points(report)
    assert len(POINT.findall(loaded.dom)) == expected
    assert browser.evaluate("document.querySelectorAll('svg .pt title').length") == expected
    if report is not None:
        clean = browser.evaluate("document.getElementById('clean-accuracy').textContent")
        assert clean == f"{100 * report['clean_accuracy']:.1f}% ({report['clean_correct']}/{report['n_samples']})"
    if kind == "corruptions":
        assert len(CORRUPTION_POINT.findall(loaded.dom)) == 3 * 5  # two corruptions and the mean, 5 severities
    if kind == "table":
        assert browser.evaluate("document.querySelectorAll('rect.bar').length") > 0
    if kind == "compare":
        assert browser.evaluate("document.querySelectorAll('tr.regressed').length") == 1


def test_default_eval_page_is_small(pages):  # no browser needed
    page, report = pages["eval"]
    assert report["n_samples"] == 450
    assert page.stat().st_size < TWO_MB
    assert page.read_text(encoding="utf-8").count('<figure class="ex">') == 16  # the gallery: 8 per attack


def test_default_eval_headline(browser, pages):
    page, report = pages["eval"]
    browser.load(page)
    headline = browser.evaluate("document.querySelector('header').innerText")
    assert f"{100 * report['clean_accuracy']:.1f}%" in headline and "L∞" in headline
    assert browser.evaluate("document.getElementById('verdict').textContent").startswith("Passed")
    assert browser.evaluate("document.querySelectorAll('figure.ex img').length") == 3 * 16  # 8 per attack


def test_headers_sort_their_table(browser, pages):
    browser.load(pages["eval"][0])
    first_column = "Array.from(document.querySelector('table.sortable tbody').rows).map(r => r.cells[1].textContent)"
    before = browser.evaluate(first_column)
    browser.evaluate("document.querySelector('table.sortable thead th:nth-child(2) button').click()")
    ascending = browser.evaluate(first_column)
    assert ascending == sorted(before, key=lambda t: float(t.rstrip("%"))) != before
    browser.evaluate("document.querySelector('table.sortable thead th:nth-child(2) button').click()")
    assert browser.evaluate(first_column) == ascending[::-1]


def _emulate(browser, *, width: int = 1000, media: str = "", dark: bool = False) -> None:
    browser.call(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}
    )
    features = [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]
    browser.call("Emulation.setEmulatedMedia", {"media": media, "features": features})


@pytest.mark.parametrize("kind", ["eval", "compare", "table"])
def test_page_reads_at_phone_width(browser, pages, kind):
    _emulate(browser, width=PHONE_WIDTH)
    try:
        browser.load(pages[kind][0])
        assert browser.evaluate("document.documentElement.scrollWidth") <= PHONE_WIDTH  # wide tables scroll inside
        assert browser.evaluate("document.querySelector('svg.chart').getBoundingClientRect().width") <= PHONE_WIDTH
    finally:
        _emulate(browser)


def test_dark_mode_and_print(browser, pages):
    background = "getComputedStyle(document.body).backgroundColor"
    browser.load(pages["eval"][0])
    assert browser.evaluate(background) == "rgb(255, 255, 255)"
    _emulate(browser, dark=True)
    try:
        browser.load(pages["eval"][0])
        assert browser.evaluate(background) == "rgb(13, 17, 23)"
        _emulate(browser, media="print", dark=True)
        assert browser.evaluate("getComputedStyle(document.querySelector('nav')).display") == "none"
        assert browser.evaluate(background) == "rgb(255, 255, 255)"  # paper is white
    finally:
        _emulate(browser)


def test_images_have_alt_texts_and_tables_headers(browser, pages):
    browser.load(pages["eval"][0])
    assert browser.evaluate("Array.from(document.images).every(i => i.alt.length > 0 && i.complete)")
    assert browser.evaluate("Array.from(document.images).every(i => i.naturalWidth === 8)")  # decoded PNGs
    assert browser.evaluate("Array.from(document.querySelectorAll('thead th')).every(th => th.scope === 'col')")
    assert browser.evaluate("document.documentElement.lang") == "en"


def test_screenshot(browser, pages, tmp_path):
    browser.load(pages["eval"][0])
    shot = tmp_path / "page.png"
    browser.screenshot(shot, 1000, 1200)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a drawn page, not a blank one
