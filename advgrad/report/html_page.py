"""The frame every HTML page of advgrad shares: one self-contained document (inline stylesheet,
one small inline script, no request to anywhere), tables, sections and the paragraphs of the
shipped docs.

The stylesheet reads well from phone width up, prints (no navigation, every ``<details>`` opened,
black on white), and follows the reader's dark mode (``prefers-color-scheme``). The script does
two things and the page works without it: headers of a ``sortable`` table become buttons that
sort its rows, and printing opens every ``<details>``. Every string that comes from a report
passes :func:`advgrad.report.svg.text` (control characters escaped, then HTML-escaped).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from advgrad.report.svg import text

STYLE = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1d2330;--muted:#5b6472;--line:#d0d7de;--card:#f6f8fa;
--ok:#1a7f37;--warn:#9a6700;--fail:#cf222e;--band:rgba(26,127,55,.16);
--c0:#0969da;--c1:#cf222e;--c2:#1a7f37;--c3:#8250df;--c4:#bc4c00;--c5:#0a7b83;--c6:#bf3989;--c7:#57606a}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9da7b3;--line:#30363d;
--card:#161b22;--ok:#3fb950;--warn:#d29922;--fail:#f85149;--band:rgba(63,185,80,.2);
--c0:#58a6ff;--c1:#ff7b72;--c2:#3fb950;--c3:#d2a8ff;--c4:#ffa657;--c5:#39c5cf;--c6:#ff80c8;--c7:#8b949e}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:72rem;padding:1rem;background:var(--bg);color:var(--fg);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
h1{font-size:1.5rem;margin:.2rem 0 .6rem}h2{font-size:1.2rem;margin:2rem 0 .6rem;border-bottom:1px solid var(--line)}
h3{font-size:1rem;margin:1.2rem 0 .4rem}
a{color:var(--c0)}code,pre{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:var(--card);padding:.6rem;overflow-x:auto;white-space:pre-wrap;word-break:break-word}
nav ul{display:flex;flex-wrap:wrap;gap:.3rem 1rem;list-style:none;padding:0;margin:0 0 .5rem}
.head{display:grid;grid-template-columns:repeat(auto-fit,minmax(13rem,1fr));gap:.6rem;margin:0}
.head div{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.5rem .7rem}
.head dt{font-size:.8rem;color:var(--muted)}.head dd{margin:0;word-break:break-word}
.big{font-size:1.6rem;font-weight:600}
.verdict{font-weight:600;padding:.5rem .7rem;border-radius:6px;border:1px solid currentColor;margin:.8rem 0}
.ok{color:var(--ok)}.warn{color:var(--warn)}.fail{color:var(--fail)}.na{color:var(--muted)}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.3rem 0 1rem;font-variant-numeric:tabular-nums;min-width:min(100%,26rem)}
caption{text-align:left;color:var(--muted);font-size:.85rem;padding:.2rem 0}
th,td{border-bottom:1px solid var(--line);padding:.25rem .6rem;text-align:right;vertical-align:top}
th[scope=row],td.text,th.text{text-align:left}thead th{border-bottom:2px solid var(--line)}
tr.regressed td,tr.regressed th{background:rgba(207,34,46,.12)}
th button{font:inherit;font-weight:600;color:inherit;background:none;border:0;padding:0;cursor:pointer}
th[aria-sort=ascending] button::after{content:" ▲"}th[aria-sort=descending] button::after{content:" ▼"}
.chart-box{margin:0 0 1rem}.chart{width:100%;max-width:44rem;height:auto;display:block}
.chart text{fill:var(--fg);font-size:14px}.chart .tick{fill:var(--muted);font-size:13px}
.grid{stroke:var(--line);stroke-width:1}.axis{stroke:var(--muted);stroke-width:1}
.ref{stroke:var(--muted);stroke-width:1.2;stroke-dasharray:4 4}.band{fill:var(--band);stroke:none}
.s0{--c:var(--c0)}.s1{--c:var(--c1)}.s2{--c:var(--c2)}.s3{--c:var(--c3)}.s4{--c:var(--c4)}.s5{--c:var(--c5)}
.s6{--c:var(--c6)}.s7{--c:var(--c7)}
.series polyline{fill:none;stroke:var(--c);stroke-width:2}.series.dashed polyline{stroke-dasharray:6 4}
.series.thick polyline{stroke-width:4}.series circle,.series rect{fill:var(--c);stroke:var(--bg);stroke-width:1.5}
.series circle:hover,.series circle:focus{r:7}.series rect:hover,.series rect:focus{stroke:var(--fg)}
.bar{fill:var(--c1)}.bar.muted{fill:var(--c7);opacity:.5}
.legend{display:flex;flex-wrap:wrap;gap:.2rem 1.2rem;list-style:none;padding:0;margin:.3rem 0;font-size:.9rem}
.key{display:inline-block;width:1.6rem;height:.25rem;margin-right:.4rem;vertical-align:middle;background:var(--c)}
.key.dashed{background:repeating-linear-gradient(90deg,var(--c) 0 6px,transparent 6px 10px)}
.key.band{height:.8rem;background:var(--band)}.key.ref{background:repeating-linear-gradient(90deg,var(--muted) 0 4px,transparent 4px 8px)}
.gallery{display:flex;flex-wrap:wrap;gap:.6rem;margin:.4rem 0 1rem}
.ex{margin:0;padding:.4rem;background:var(--card);border:1px solid var(--line);border-radius:6px;width:7.4rem;font-size:.78rem}
.ex img{display:block;width:6.5rem;height:auto;image-rendering:pixelated;margin:0 auto .2rem;border:1px solid var(--line)}
.ex figcaption{text-align:center;word-break:break-word}
.side{display:grid;grid-template-columns:repeat(auto-fit,minmax(18rem,1fr));gap:1rem}
details{margin:.3rem 0}summary{cursor:pointer}.doc{color:var(--muted);font-size:.9rem}
.status{font-weight:600;white-space:nowrap}
@media print{body{max-width:none;background:#fff;color:#000;font-size:11pt}nav{display:none}
h2{break-after:avoid}figure,table,.ex{break-inside:avoid}.verdict{border-width:2px}
pre{white-space:pre-wrap}th button{pointer-events:none}}
"""

SCRIPT = """
document.querySelectorAll("table.sortable thead th").forEach(function (th) {
  var b = document.createElement("button");
  b.type = "button";
  while (th.firstChild) b.appendChild(th.firstChild);
  th.appendChild(b);
  b.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], k = th.cellIndex;
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    th.closest("tr").querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    var key = function (r) {
      var c = r.cells[k], v = c && c.getAttribute("data-v");
      return v === null || v === undefined ? (c ? c.textContent : "") : parseFloat(v);
    };
    Array.prototype.slice.call(body.rows)
      .sort(function (p, q) { var x = key(p), y = key(q); return (x < y ? -1 : x > y ? 1 : 0) * dir; })
      .forEach(function (r) { body.appendChild(r); });
  });
});
window.addEventListener("beforeprint", function () {
  document.querySelectorAll("details").forEach(function (d) { d.open = true; });
});
"""


@dataclass(frozen=True)
class Cell:
    """A table cell: what it shows (plain text, escaped when rendered; ``markup`` when it is
    already HTML) and the number its column sorts by (None: sorts by the text)."""

    shown: str
    sort: float | None = None
    markup: bool = False
    css: str = ""

    def html(self, tag: str, scope: str = "") -> str:
        attrs = f' scope="{scope}"' if scope else ""
        if self.sort is not None:
            attrs += f' data-v="{self.sort:.9g}"'
        if self.css:
            attrs += f' class="{self.css}"'
        return f"<{tag}{attrs}>{self.shown if self.markup else text(self.shown)}</{tag}>"


def percent(value: float | None) -> Cell:
    """A share shown as ``47.0%``, sorting by its value (missing: ``—``, sorted first)."""
    if value is None:
        return Cell("—", float("-inf"))
    return Cell(f"{100 * value:.1f}%", value)


def _row(row: Sequence[Cell], text_columns: Sequence[int]) -> str:
    """A body row: the first cell is the row's header; ``text_columns`` are aligned left."""
    out = []
    for k, c in enumerate(row):
        cell = Cell(c.shown, c.sort, c.markup, (c.css + " text").strip() if k and k in text_columns else c.css)
        out.append(cell.html("th", "row") if k == 0 else cell.html("td"))
    return "".join(out)


def html_table(
    header: Sequence[str | Cell],
    rows: Sequence[Sequence[str | Cell]],
    *,
    caption: str,
    sortable: bool = True,
    row_classes: Sequence[str] = (),
    text_columns: Sequence[int] = (0,),
) -> str:
    """A table whose first cell in each row is its row header (``<th scope="row">``), columns
    headed ``<th scope="col">``, in a wrapper that scrolls sideways at phone width. ``text_columns``
    are aligned left."""
    cells = [[c if isinstance(c, Cell) else Cell(str(c)) for c in row] for row in rows]
    head = "".join(
        (h if isinstance(h, Cell) else Cell(str(h), css="text" if k in text_columns else "")).html("th", "col")
        for k, h in enumerate(header)
    )
    body = []
    for i, row in enumerate(cells):
        css = f' class="{row_classes[i]}"' if i < len(row_classes) and row_classes[i] else ""
        body.append(f"<tr{css}>{_row(row, text_columns)}</tr>")
    cls = ' class="sortable"' if sortable and len(rows) > 1 else ""
    return (
        f'<div class="scroll"><table{cls}><caption>{text(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def section(anchor: str, title: str, body: str) -> str:
    """A ``<section>`` with an ``<h2>`` the navigation links to."""
    return f'<section id="{anchor}" aria-labelledby="{anchor}-h"><h2 id="{anchor}-h">{text(title)}</h2>{body}</section>'


def facts(items: Sequence[tuple[str, str]], *, ids: dict[str, str] | None = None) -> str:
    """The headline's cards: a ``<dl>`` of (label, value) pairs; ``ids`` gives a value an id (tests find it)."""
    ids = ids or {}
    cards = []
    for label, value in items:
        attr = f' id="{ids[label]}"' if label in ids else ""
        big = ' class="big"' if label in ids else ""
        cards.append(f"<div><dt>{text(label)}</dt><dd{attr}{big}>{text(value)}</dd></div>")
    return f'<dl class="head">{"".join(cards)}</dl>'


def json_block(summary: str, data: object) -> str:
    """A closed ``<details>`` holding ``data`` as indented JSON."""
    body = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    return f"<details><summary>{text(summary)}</summary><pre>{text(body)}</pre></details>"


def _inline_markdown(paragraph: str) -> str:
    """A paragraph of the docs as HTML: escaped, then ``code`` and **bold** marked up."""
    html = text(" ".join(line.strip() for line in paragraph.splitlines()))
    html = re.sub(r"`([^`]+)`", r"<code>\1</code>", html)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", html)


def doc_section(topic: str, heading: str) -> list[str]:
    """The paragraphs (as HTML) under ``## heading`` of the shipped doc ``topic`` (docs/TOPIC.md);
    empty when the docs are not shipped or the section is missing."""
    from advgrad.core.errors import UsageError
    from advgrad.io.shipped import shipped_doc

    try:
        source = shipped_doc(topic).read_text()
    except (UsageError, OSError):
        return []
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", source, flags=re.M | re.S)
    if match is None:
        return []
    return [_inline_markdown(p) for p in re.split(r"\n\s*\n", match.group(1).strip()) if p.strip()]


def page(title: str, heading: str, sections: Sequence[tuple[str, str, str]], headline: str, footer: str) -> str:
    """The whole document: ``<h1>`` ``heading``, the ``headline`` block, a navigation list and
    each (anchor, title, body) section; ``footer`` closes it."""
    nav = "".join(f'<li><a href="#{a}">{text(t)}</a></li>' for a, t, _ in sections)
    body = "".join(section(a, t, b) for a, t, b in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{text(title)}</title><style>{STYLE}</style></head>"
        f'<body><header id="headline"><h1>{text(heading)}</h1>{headline}'
        f'<nav aria-label="Sections"><ul>{nav}</ul></nav></header>'
        f'<main>{body}</main><footer><p class="doc">{footer}</p></footer>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )
