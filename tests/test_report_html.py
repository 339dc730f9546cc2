"""The HTML report (advgrad/report/html*.py): valid HTML5 (html5lib, strict), self-contained (nothing
a browser would fetch), every string from a report escaped, the numbers of the report in its
curves and tables, a bounded gallery, and the pages of compare and attack. The same pages in a
real browser: tests/test_report_html_browser.py."""

from __future__ import annotations

import re
import zlib

import html5lib
import numpy as np
import pytest
import torch
from html_pages import (
    CORRUPTION_POINT,
    POINT,
    attack_report,
    certified_report,
    comparison,
    corruption_report,
    image_examples,
    table_report,
)

from advgrad.evaluation.generate import AdversarialSet, AttackSummary
from advgrad.report.html import render_html
from advgrad.report.html_attack import render_attack_html
from advgrad.report.html_compare import render_comparison_html
from advgrad.report.html_gallery import GALLERY_BUDGET
from advgrad.report.html_page import doc_section
from advgrad.report.pngdata import png_bytes, shrink

TWO_MB = 2_000_000


def parse(page: str):
    """The document as an ElementTree; html5lib in strict mode raises on the first parse error."""
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(page)


def elements(root, name: str) -> list:
    """Every element named ``name``, in the HTML namespace or SVG's (html5lib keeps SVG's)."""
    return [e for e in root.iter() if isinstance(e.tag, str) and e.tag.rsplit("}", 1)[-1] == name]


def attack_page() -> str:
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.9
    result = AdversarialSet(x, x + 0.05, torch.tensor([1, 2, 3, 4, 5]), torch.tensor([1, 2, 3, 4, 0]),
                            torch.tensor([0, 2, 3, 1, 0]), None)  # fmt: skip
    summary = AttackSummary("pgd", "inf", 0.05, 5, 0.8, 0.4, 4, 2, 0.5, 0.05, 0.05, None, 0.1, "0.05")
    return render_attack_html(summary, result, model="m", data="d", params={"steps": 10}, seed=0)


PAGES = {
    "attacks": lambda: render_html(attack_report()),
    "certified": lambda: render_html(certified_report()),
    "corruptions": lambda: render_html(corruption_report()),
    "corruptions-only": lambda: render_html(corruption_report(attacks=False)),
    "table": lambda: render_html(table_report()),
    "compare": lambda: render_comparison_html(*comparison()),
    "attack": attack_page,
}


@pytest.mark.parametrize("kind", list(PAGES))
def test_every_page_is_valid_html5(kind):
    page = PAGES[kind]()
    root = parse(page)
    assert root.get("lang") == "en"
    assert root.find("head/title").text
    assert root.find(".//h1") is not None and root.find(".//main") is not None


def test_the_strict_parser_does_reject_broken_html():
    with pytest.raises(html5lib.html5parser.ParseError):
        parse("<!DOCTYPE html><html><body><p>a</div></body></html>")


@pytest.mark.parametrize("kind", list(PAGES))
def test_nothing_on_the_page_is_fetched(kind):
    page = PAGES[kind]()
    root = parse(page)
    for element in root.iter():
        assert not str(element.get("src", "data:")).startswith(("http", "//", "file")), element.get("src")
        if element.get("src") is not None:
            assert element.get("src").startswith("data:image/png;base64,")
        if element.get("href") is not None:
            assert element.get("href").startswith("#"), element.get("href")
        assert element.tag not in ("link", "iframe", "object", "embed", "base")
    assert "url(" not in page and "@import" not in page and "fetch(" not in page and "XMLHttpRequest" not in page
    assert len(root.findall(".//script")) == 1 and root.find(".//script").get("src") is None


def test_the_headline_and_the_curves_hold_the_reports_numbers():
    report = attack_report()
    page = render_html(report)
    root = parse(page)
    assert root.find(".//*[@id='clean-accuracy']").text == "95.0% (95/100)"
    assert len(POINT.findall(page)) == len(report.attacks) * len(report.eps)  # one point per attack × ε
    tips = [t.text for t in elements(root, "title")]
    assert "pgd at ε=8/255: accuracy 47.0% (47/100); success rate 50.5%; mean ‖δ‖∞ 0.01569" in tips
    verdict = root.find(".//*[@id='verdict']")
    assert verdict.get("class") == "verdict fail" and verdict.text.startswith("FAILED: 1 of 2 gates passed")


def test_the_accuracy_table_sorts_by_the_numbers_it_shows():
    root = parse(render_html(attack_report()))
    table = root.find(".//table")
    assert "sortable" in table.get("class")
    assert [th.text for th in table.findall("thead/tr/th")] == ["ε", "fgsm", "pgd"]
    rows = [[c.text for c in tr] for tr in table.findall("tbody/tr")]
    assert rows == [["0", "95.0%", "95.0%"], ["8/255", "60.0%", "47.0%"], ["0.1", "20.0%", "0.0%"]]
    assert [tr[0].get("scope") for tr in table.findall("tbody/tr")] == ["row"] * 3
    assert [float(tr[2].get("data-v")) for tr in table.findall("tbody/tr")] == [0.95, 0.47, 0.0]


def test_a_certified_curve_draws_the_band_and_square_points():
    report = certified_report()
    page = render_html(report)
    assert len(POINT.findall(page)) == 2 * 3 and page.count('<rect class="pt"') == 3
    root = parse(page)
    band = [p for p in elements(root, "polygon") if p.get("class") == "band"]
    assert len(band) == 1
    assert "crown (certified)" in page and "Certified at ε=0.1" in page


def test_corruptions_get_their_chart_and_table():
    page = render_html(corruption_report())
    assert len(CORRUPTION_POINT.findall(page)) == 3 * 3  # two corruptions and the mean, three severities
    assert len(POINT.findall(page)) == 3
    assert "gaussian_noise, severity 2: 70.0%" in page and "Mean corruption accuracy" in page
    only = render_html(corruption_report(attacks=False))
    assert len(POINT.findall(only)) == 0 and "none (common corruptions only)" in only


def test_checks_carry_status_message_and_the_docs_paragraph():
    report = attack_report()
    root = parse(render_html(report))
    for check in report.checks:
        block = root.find(f".//details[@id='check-{check['name']}']")
        assert block is not None, check["name"]
        assert check["message"] in "".join(block.find("summary").itertext())
        assert block.findall("p"), check["name"]  # the paragraphs of docs/checks.md
    assert "sign of gradient masking" in render_html(report)  # iterative-weaker-than-single-step's section


def test_doc_section_reads_the_shipped_checks_doc():
    paragraphs = doc_section("checks", "zero-gradients")
    assert paragraphs and "<code>--loss margin</code>" in " ".join(paragraphs)
    assert doc_section("checks", "no-such-check") == [] and doc_section("no-such-doc", "x") == []


def test_the_gallery_shows_labels_scale_and_alt_texts():
    root = parse(render_html(attack_report()))
    cards = root.findall(".//figure[@class='ex']")
    assert len(cards) == 6  # 3 per attack
    alts = [img.get("alt") for img in cards[0].findall("img")]
    assert alts[0] == "original, true class 8" and alts[2] == "adversarial example, classified as 1"
    assert alts[1].startswith("perturbation amplified ×16 around mid-grey")  # 0.5 / (8/255) ≈ 16
    assert "8 → 1" in "".join(cards[0].find("figcaption").itertext())


def test_a_table_gets_bars_per_feature():
    page = render_html(table_report())
    root = parse(page)
    bars = [r for r in elements(root, "rect") if "bar" in (r.get("class") or "")]
    assert len(bars) == 2 * 4  # two attacks, four features
    assert "age: mean |δ| 7.2 in its units, 10.00% of its range" in page
    assert sum("muted" in r.get("class") for r in bars) == 2  # visits: ε weight 0


def _big_gallery(shape) -> str:
    report = attack_report(("fgsm", "pgd", "bim", "mifgsm"), examples=8)
    report.examples = image_examples(list(report.attacks), 8, shape=shape)  # noise: the worst case for PNG
    return render_html(report)


def test_large_images_are_shown_small():
    page = _big_gallery((3, 224, 224))
    assert len(page.encode()) < TWO_MB
    assert "Images are shown at most 64 pixels a side" in page
    sizes = {len(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)}
    assert max(sizes) < 4 * 64 * 64 * 3 / 3 + 1000  # base64 of at most 64×64 RGB, barely compressed


def test_the_gallery_stops_at_its_budget_and_says_so():
    page = _big_gallery((3, 64, 64))  # shown as they are: 32 cards of incompressible noise exceed the budget
    assert len(page.encode()) < TWO_MB
    shown = page.count('<figure class="ex">')
    assert 0 < shown < 32
    left = [int(n) for n in re.findall(r"(\d+) more examples? left out", page)]
    assert sum(left) == 32 - shown
    images = sum(len(m) for m in re.findall(r'src="(data:[^"]+)"', page))
    assert GALLERY_BUDGET - 60_000 < images <= GALLERY_BUDGET  # up to the budget, less than one card short


def test_markup_in_names_is_escaped():
    evil = '<script>alert("x")</script>&\'"'
    report = attack_report()
    report.attacks = {evil if k == "pgd" else k: v for k, v in report.attacks.items()}
    report.examples = {evil: report.examples["pgd"]}
    report.model = {"description": '<b>M&M\'s "model"</b>', "class_names": ["<cat>", "a&b", '"q"'] + ["x"] * 7}
    report.data["description"] = "data\x1b[2J<i>\ufdd0\ud800"  # a control, markup, a noncharacter, a surrogate
    page = render_html(report)
    page.encode("utf-8")  # writable as UTF-8
    root = parse(page)
    assert len(root.findall(".//script")) == 1  # only the page's own
    assert evil not in page and "<b>" not in page and "<i>" not in page and "<cat>" not in page
    assert root.find(".//dd").text == '<b>M&M\'s "model"</b>'  # shown as written
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#x27;&quot;" in page
    assert "data\\x1b[2J&lt;i&gt;\\ufdd0\\ud800" in page and "\x1b" not in page
    labels = [th.text for th in root.iter("th") if th.get("scope") == "row" and th.text and "(" in th.text]
    assert "0 (<cat>)" in labels and "1 (a&b)" in labels
    assert root.find(".//figure[@class='ex']/img").get("alt") == "original, true class 8 (x)"


def test_markup_in_the_compared_file_names_is_escaped():
    found, baseline, new = comparison()
    found.baseline = "<img src=x onerror=alert(1)>.json"
    page = render_comparison_html(found, baseline, new)
    parse(page)
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;.json" in page


def test_comparison_marks_the_regressions_and_draws_both_runs():
    found, baseline, new = comparison()
    page = render_comparison_html(found, baseline, new)
    root = parse(page)
    regressed = [tr for tr in root.iter("tr") if tr.get("class") == "regressed"]
    assert len(regressed) == 1 and [c.text for c in regressed[0]][:4] == ["pgd", "8/255", "47.0%", "30.0%"]
    assert len(POINT.findall(page)) == (len(baseline.attacks) + len(new.attacks)) * 3
    assert root.find(".//*[@id='verdict']").get("class") == "verdict fail"
    assert page.count('data-run="baseline"') == 2 and page.count('data-run="new"') == 2


def test_the_attack_page_shows_the_fooled_samples():
    page = attack_page()
    root = parse(page)
    cards = root.findall(".//figure[@class='ex']")
    assert len(cards) == 2  # samples 0 and 3: correct before, wrong after
    assert [c.find("figcaption").text for c in cards] == ["#0: ", "#3: "]
    assert root.find(".//*[@id='clean-accuracy']").text == "80.0%"


def test_png_encoder_round_trips_exact_pixels():
    from io import BytesIO

    from PIL import Image

    img = torch.tensor([[[0.0, 1.0, 0.5], [0.25, 0.75, 1.0]]])  # 1×2×3, grey
    data = png_bytes(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    decoded = Image.open(BytesIO(data))
    assert decoded.mode == "L" and decoded.size == (3, 2)
    assert np.asarray(decoded).tolist() == [[0, 255, 128], [64, 191, 255]]
    rgb = torch.rand(3, 5, 4, generator=torch.Generator().manual_seed(1))
    decoded = Image.open(BytesIO(png_bytes(rgb)))
    assert decoded.mode == "RGB"
    assert np.asarray(decoded).tolist() == (rgb * 255).round().to(torch.uint8).permute(1, 2, 0).tolist()
    assert zlib.crc32(data[12:29]) == int.from_bytes(data[29:33], "big")  # IHDR's CRC


def test_large_images_are_shrunk_by_area_averaging():
    img = torch.zeros(3, 128, 256)
    img[:, :, 128:] = 1.0
    small = shrink(img)
    assert small.shape == (3, 32, 64)
    assert float(small[:, :, :32].max()) == 0.0 and float(small[:, :, 32:].min()) == 1.0
    assert shrink(torch.rand(1, 8, 8)).shape == (1, 8, 8)


def test_write_report_writes_html(tmp_path):
    import advgrad

    path = advgrad.write_report(attack_report(), tmp_path / "r.html")
    parse(path.read_text(encoding="utf-8"))
    assert (
        advgrad.write_report(attack_report(), tmp_path / "r.page", format="html")
        .read_text()
        .startswith("<!DOCTYPE html>")
    )
