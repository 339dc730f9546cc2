"""Charts as inline SVG for the HTML report: accuracy curves (with a shaded band) and horizontal bars.

Every chart is a string of SVG meant to sit inside an HTML page: its colours are CSS classes
(``s0``…``s7``, ``band``, ``axis``) that the page's stylesheet sets, so that dark mode and
printing restyle it. Every data point is a ``<circle>`` or ``<rect>`` whose ``<title>`` holds its
numbers: a browser shows them when the pointer rests on the point, and screen readers read them.
Text is escaped here; callers pass plain strings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from advgrad.core.text import printable

PALETTE_SIZE = 8  # series colours s0…s7 (the page's CSS), reused in turn beyond that


# Unicode noncharacters (U+FDD0–U+FDEF and the last two code points of planes 1–16): HTML forbids
# them in a document, even as character references; printable() already takes U+FFFE and U+FFFF.
_NONCHARACTERS = re.compile(
    "[\ufdd0-\ufdef" + "".join(chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(1, 17)) + "]"
)


def _escape_code(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def text(value: object) -> str:
    """A string from a report, safe as SVG or HTML text and attribute value: control characters
    escaped (:func:`advgrad.core.text.printable`), noncharacters written as ``\\ufdd0``, then ``<``,
    ``&`` and quotes."""
    shown = _NONCHARACTERS.sub(_escape_code, printable(value))
    return escape(shown, quote=True)


@dataclass
class Point:
    """One point of a series: ``x`` and ``y`` in data units (y a share in [0, 1]) and the words
    its tooltip shows."""

    x: float
    y: float
    tip: str


@dataclass
class Series:
    """A line through ``points``; ``style`` is ``solid``, ``dashed`` or ``thick``; ``marker`` is
    ``circle`` or ``square``; ``point_class`` names its points' class (tests count them)."""

    name: str
    points: list[Point]
    color: int = 0
    style: str = "solid"
    marker: str = "circle"
    point_class: str = "pt"
    data: dict[str, str] = field(default_factory=dict)  # data-* attributes of the line's group


@dataclass
class Frame:
    """Where the data go in the drawing: the plot area inside ``width`` × ``height`` and the x range."""

    x_lo: float
    x_hi: float
    width: int = 640
    height: int = 340
    left: int = 52
    right: int = 16
    top: int = 14
    bottom: int = 54

    def px(self, x: float) -> float:
        span = (self.x_hi - self.x_lo) or 1.0
        return self.left + (x - self.x_lo) / span * (self.width - self.left - self.right)

    def py(self, y: float) -> float:
        return self.top + (1.0 - y) * (self.height - self.top - self.bottom)


def _num(value: float) -> str:
    return f"{value:.1f}"


def _axes(frame: Frame, x_ticks: Sequence[tuple[float, str]], x_label: str, y_label: str) -> list[str]:
    """Grid lines every 20%, the y labels, the x ticks with their labels and both axis titles."""
    parts = []
    for k in range(0, 101, 20):
        y = frame.py(k / 100)
        parts.append(
            f'<line class="grid" x1="{frame.left}" x2="{frame.width - frame.right}" y1="{_num(y)}" y2="{_num(y)}"/>'
            f'<text class="tick" x="{frame.left - 6}" y="{_num(y + 4)}" text-anchor="end">{k}%</text>'
        )
    base = frame.py(0)
    for value, label in x_ticks:
        x = frame.px(value)
        parts.append(f'<line class="axis" x1="{_num(x)}" x2="{_num(x)}" y1="{_num(base)}" y2="{_num(base + 5)}"/>')
        if label:
            parts.append(
                f'<text class="tick" x="{_num(x)}" y="{_num(base + 18)}" text-anchor="middle">{text(label)}</text>'
            )
    parts.append(
        f'<line class="axis" x1="{frame.left}" x2="{frame.width - frame.right}" y1="{_num(base)}" y2="{_num(base)}"/>'
        f'<text class="label" x="{_num((frame.left + frame.width - frame.right) / 2)}" y="{frame.height - 8}" '
        f'text-anchor="middle">{text(x_label)}</text>'
        f'<text class="label" transform="translate(13 {_num((frame.top + base) / 2)}) rotate(-90)" '
        f'text-anchor="middle">{text(y_label)}</text>'
    )
    return parts


def _marker(series: Series, frame: Frame, p: Point) -> str:
    x, y = frame.px(p.x), frame.py(p.y)
    tip = f"<title>{text(p.tip)}</title>"
    if series.marker == "square":
        return (
            f'<rect class="{series.point_class}" x="{_num(x - 4)}" y="{_num(y - 4)}" width="8" height="8" '
            f'tabindex="0">{tip}</rect>'
        )
    return f'<circle class="{series.point_class}" cx="{_num(x)}" cy="{_num(y)}" r="4.5" tabindex="0">{tip}</circle>'


def _line(series: Series, frame: Frame) -> str:
    path = " ".join(f"{_num(frame.px(p.x))},{_num(frame.py(p.y))}" for p in series.points)
    data = "".join(f' data-{k}="{text(v)}"' for k, v in series.data.items())
    markers = "".join(_marker(series, frame, p) for p in series.points)
    return (
        f'<g class="series s{series.color % PALETTE_SIZE} {series.style}"{data}>'
        f'<polyline points="{path}"/>{markers}</g>'
    )


def _band(frame: Frame, band: tuple[list[float], list[float], list[float]], tip: str) -> str:
    xs, low, high = band
    upper = [f"{_num(frame.px(x))},{_num(frame.py(h))}" for x, h in zip(xs, high, strict=True)]
    lower = [f"{_num(frame.px(x))},{_num(frame.py(lo))}" for x, lo in zip(reversed(xs), reversed(low), strict=True)]
    return f'<polygon class="band" points="{" ".join(upper + lower)}"><title>{text(tip)}</title></polygon>'


def _legend(series: Sequence[Series], extra: Sequence[tuple[str, str]]) -> str:
    """The legend as HTML under the chart (it wraps at phone width, unlike SVG text)."""
    items = [
        f'<li><span class="key s{s.color % PALETTE_SIZE} {s.style}" aria-hidden="true"></span>{text(s.name)}</li>'
        for s in series
    ]
    items += [f'<li><span class="key {css}" aria-hidden="true"></span>{text(name)}</li>' for css, name in extra]
    return f'<ul class="legend">{"".join(items)}</ul>'


def line_chart(
    series: Sequence[Series],
    *,
    x_range: tuple[float, float],
    x_ticks: Sequence[tuple[float, str]],
    x_label: str,
    y_label: str,
    title: str,
    description: str,
    band: tuple[list[float], list[float], list[float]] | None = None,
    band_tip: str = "",
    reference: tuple[float, str] | None = None,
    chart_id: str = "chart",
) -> str:
    """A ``<figure>`` with an SVG of accuracy (0–100%) against x for each series, an optional
    shaded ``band`` (x, lower and upper shares) and a dashed horizontal ``reference`` line (a share
    and its name), followed by an HTML legend. ``title`` and ``description`` name the chart for
    screen readers."""
    frame = Frame(*x_range)
    parts = _axes(frame, x_ticks, x_label, y_label)
    extra = []
    if band is not None and band[0]:
        parts.append(_band(frame, band, band_tip))
        extra.append(("band", band_tip.split(":")[0]))
    if reference is not None:
        y = frame.py(reference[0])
        parts.append(
            f'<line class="ref" x1="{frame.left}" x2="{frame.width - frame.right}" y1="{_num(y)}" y2="{_num(y)}">'
            f"<title>{text(reference[1])}</title></line>"
        )
        extra.append(("ref", reference[1].split(":")[0]))
    parts += [_line(s, frame) for s in series]
    svg = (
        f'<svg class="chart" viewBox="0 0 {frame.width} {frame.height}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{chart_id}-t">{text(title)}</title><desc id="{chart_id}-d">{text(description)}</desc>'
        f"{''.join(parts)}</svg>"
    )
    return f'<figure class="chart-box">{svg}{_legend(series, extra)}</figure>'


@dataclass
class Bar:
    """One bar: its label, its length as a share in [0, 1], the text after it and its tooltip;
    ``muted`` draws it grey (an immutable feature)."""

    label: str
    share: float
    value: str
    tip: str
    muted: bool = False


def bar_chart(bars: Sequence[Bar], *, title: str, description: str, chart_id: str = "bars") -> str:
    """Horizontal bars, one row per :class:`Bar`, labels on the left: reads at phone width and
    holds long feature names. Each bar is a ``<rect class="bar">`` with a ``<title>``."""
    row, label_width, width = 18, 170, 640
    height = row * len(bars) + 8
    span = width - label_width - 70
    parts = []
    for k, bar in enumerate(bars):
        y = 4 + k * row
        length = max(0.0, min(1.0, bar.share)) * span
        css = "bar muted" if bar.muted else "bar"
        name = bar.label if len(bar.label) <= 26 else bar.label[:25] + "…"
        parts.append(
            f'<text class="tick" x="{label_width - 6}" y="{y + 12}" text-anchor="end">{text(name)}</text>'
            f'<rect class="{css}" x="{label_width}" y="{y + 2}" width="{_num(max(length, 0.5))}" height="{row - 5}">'
            f"<title>{text(bar.tip)}</title></rect>"
            f'<text class="tick" x="{_num(label_width + length + 4)}" y="{y + 12}">{text(bar.value)}</text>'
        )
    return (
        f'<svg class="chart bars" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{chart_id}-t">{text(title)}</title><desc id="{chart_id}-d">{text(description)}</desc>'
        f"{''.join(parts)}</svg>"
    )
