"""The example gallery of the HTML pages: for images, cards of original, perturbation (amplified
around mid-grey, the factor named) and adversarial example with true → predicted labels; for
tables, bars of the mean change per feature.

Images are PNG ``data:`` URIs (:mod:`advgrad.report.pngdata`), shrunk to at most 64 pixels a side,
and the gallery stops adding cards once it holds :data:`GALLERY_BUDGET` characters, saying how many
it left out: a page stays small enough to attach to a CI run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from advgrad.core.results import RobustnessReport
from advgrad.core.threat import per_sample_norm
from advgrad.report.feature_bars import example_tables, mean_change
from advgrad.report.fmt import norm_sub
from advgrad.report.images import amplification
from advgrad.report.plot import example_blocks
from advgrad.report.pngdata import MAX_SIDE, png_data_uri
from advgrad.report.svg import Bar, bar_chart, text

GALLERY_BUDGET = 900_000  # characters of images a page's gallery holds at most
MAX_FEATURE_BARS = 60  # features a bar chart shows (those changed the most); the rest are counted


@dataclass
class Item:
    """One example: input and adversarial input (C×H×W in [0, 1]), labels as shown, and the
    words before the labels (``ε=8/255``)."""

    x: Tensor
    x_adv: Tensor
    true: str
    pred: str
    note: str = ""


def class_label(names: Sequence[str] | None, k: int) -> str:
    """``3`` or ``3 (cat)`` when the class has a name."""
    return f"{k} ({names[k]})" if names and 0 <= k < len(names) else str(k)


def times(factor: float) -> str:
    """``×12`` or ``×1.5``: an amplification as a reader says it."""
    return f"×{factor:.0f}" if factor >= 10 else f"×{factor:.2g}"


def _card(item: Item, factor: float, norm: str) -> str:
    delta = item.x_adv - item.x
    size = float(per_sample_norm(delta[None], norm)[0])
    visible = (0.5 + factor * delta).clamp(0, 1)
    fooled = item.pred != item.true
    images = [
        (item.x, f"original, true class {item.true}"),
        (visible, f"perturbation amplified {times(factor)} around mid-grey, ‖δ‖{norm_sub(norm)} = {size:.3g}"),
        (item.x_adv, f"adversarial example, classified as {item.pred}"),
    ]
    imgs = "".join(f'<img src="{png_data_uri(img)}" alt="{text(alt)}">' for img, alt in images)
    css = "fail" if fooled else "ok"
    caption = (
        f'{text(item.note + ": " if item.note else "")}<span class="{css}">{text(item.true)} → {text(item.pred)}</span>'
        f"<br>‖δ‖{norm_sub(norm)} = {size:.3g}"
    )
    return f'<figure class="ex">{imgs}<figcaption>{caption}</figcaption></figure>'


def image_cards(items: Sequence[Item], norm: str, budget: list[int]) -> str:
    """A legend naming the amplification and one card per item while they fit in ``budget`` (a
    one-element list of characters left, shared by the page's blocks)."""
    factor = amplification(max((float((i.x_adv - i.x).abs().amax()) for i in items), default=0.0))
    cards = []
    for item in items:
        card = _card(item, factor, norm)
        if len(card) > budget[0]:
            budget[0] = 0  # the blocks after this one show no card either
            break
        budget[0] -= len(card)
        cards.append(card)
    legend = (
        f"Each card, top to bottom: the original, the perturbation δ = x_adv − x amplified {times(factor)} "
        f"around mid-grey (grey: no change), the adversarial example; then true → predicted class."
    )
    shrunk = any(max(i.x.shape[-2:]) > MAX_SIDE for i in items)
    if shrunk:
        legend += f" Images are shown at most {MAX_SIDE} pixels a side."
    left = len(items) - len(cards)
    if left:
        legend += f" {left} more example{'s' if left != 1 else ''} left out to keep the page small."
    return f'<p class="doc">{text(legend)}</p><div class="gallery">{"".join(cards)}</div>'


def feature_chart(names, x: Tensor, x_adv: Tensor, lower, upper, fixed, *, title: str, chart_id: str) -> str:
    """Bars of the mean change per feature (as a share of its range; label in its own units),
    the :data:`MAX_FEATURE_BARS` largest when there are more, immutable features grey."""
    raw, share = mean_change(x, x_adv, lower, upper)
    order = sorted(range(len(names)), key=lambda i: -float(share[i]))
    shown = sorted(order[:MAX_FEATURE_BARS])
    top = max((float(share[i]) for i in shown), default=0.0) or 1.0
    held = set(fixed)
    bars = [
        Bar(
            f"{names[i]} (fixed)" if i in held else str(names[i]),
            float(share[i]) / top,
            f"{float(raw[i]):.3g}",
            f"{names[i]}: mean |δ| {float(raw[i]):.4g} in its units, {100 * float(share[i]):.2f}% of its range",
            muted=i in held,
        )
        for i in shown
    ]
    note = "" if len(shown) == len(names) else f" ({len(shown)} of {len(names)} features: those changed the most)"
    chart = bar_chart(bars, title=title, description="mean |x_adv − x| per feature" + note, chart_id=chart_id)
    legend = (
        "Bar: mean |x_adv − x| as a share of the feature's range (the longest bar is the largest); label: the same "
        f"in the feature's units; grey: immutable features{note}."
    )
    return f'<p class="doc">{text(legend)}</p>{chart}'


def gallery(report: RobustnessReport) -> str:
    """One block per attack of the run: image cards, or feature bars for a table; empty when
    the run kept no examples at all."""
    blocks = example_blocks(report)
    if not any(examples for _, examples in blocks):
        return ""
    names = report.model.get("class_names") or report.data.get("class_names")
    budget = [GALLERY_BUDGET]
    parts = []
    for k, (attack, examples) in enumerate(blocks):
        parts.append(f"<h3>{text(attack)}: {len(examples)} adversarial example{'s' if len(examples) != 1 else ''}</h3>")
        if not examples:
            parts.append('<p class="doc">No adversarial example found.</p>')
        elif examples[0].x.dim() == 1:  # a table's rows: bars per feature
            feature_names, x, x_adv, lower, upper, fixed = example_tables(examples, report.data.get("table"))
            title = f"{attack}: mean change per feature over {len(examples)} adversarial examples"
            parts.append(feature_chart(feature_names, x, x_adv, lower, upper, fixed, title=title, chart_id=f"bars{k}"))
        else:
            items = [
                Item(e.x, e.x_adv, class_label(names, e.y), class_label(names, e.pred), f"ε={report.eps_label(e.eps)}")
                for e in examples
            ]
            parts.append(image_cards(items, report.norm, budget))
    return "".join(parts)
