"""Plots of a report (matplotlib, no display needed): the accuracy-against-ε curve, per-class
accuracy and, for every attack of the run, a block of adversarial examples."""

from __future__ import annotations

import math
import os
import statistics
import textwrap

from advgrad.core.results import AttackCurve, Example, RobustnessReport
from advgrad.report.feature_bars import draw_feature_bars, example_tables
from advgrad.report.fmt import curves_title, norm_symbol
from advgrad.report.images import EXAMPLE_LEGEND, draw_examples
from advgrad.report.mpl import figure_text, pyplot, save_figure

MAX_CLASS_BARS = 20  # more classes than this are shown as a histogram of per-class accuracy
MAX_EXAMPLES = 8  # adversarial examples shown per attack
FEATURE_LEGEND = (
    "Each block (a table): the mean change per feature over the adversarial examples kept for that attack, as a "
    "fraction of the feature's range (bar) and in the feature's units (label); immutable features are grey."
)
MANY_TICKS = 6  # more ε ticks than this are drawn slanted so that their labels do not collide


def run_title(report: RobustnessReport, width: int = 110) -> str:
    """``model · data · n samples, L∞``: what the figure is about, wrapped to ``width`` (the model's
    and the data's descriptions name files: :func:`figure_text`)."""
    model = report.model.get("description") or report.model.get("source") or "model"
    data = report.data.get("description") or report.data.get("source") or "data"
    threat = f", {norm_symbol(report.norm)} threat model" if report.attacks else ""  # none for corruptions alone
    text = f"{model} · {data} · {report.n_samples} evaluated{threat}"
    return figure_text("\n".join(textwrap.wrap(text, width)))


CHAR_WIDTH = 0.017  # width of one tick-label character as a share of the curve's x axis


def tick_labels(report: RobustnessReport) -> list[str]:
    """The ε ticks' labels as the user wrote them (``8/255``); a label that would overlap the one
    before it (ε values close together on a linear axis) is left blank, its tick stays."""
    lo, hi = min(report.eps), max(report.eps)
    span = (hi - lo) or 1.0
    labels, last = [], None
    for e in report.eps:
        text = report.eps_label(e)
        if last is not None and (e - last[0]) / span < CHAR_WIDTH * (len(text) + len(last[1])) / 2 + 0.01:
            labels.append("")
            continue
        labels.append(text)
        last = (e, text)
    return labels


def sandwich(report: RobustnessReport) -> tuple[list[float], list[float], list[float]] | None:
    """ε, certified and attacked accuracy (%) where the report has both: the band where the true
    robust accuracy lies (certified below, the strongest attack at each ε above); None without a
    certified curve or without an attack."""
    certified = [c for c in report.attacks.values() if c.kind == "certified"]
    attacked = [c for c in report.attacks.values() if c.kind != "certified"]
    if not certified or not attacked:
        return None
    xs, low, high = [], [], []
    for point in certified[0].points:
        above = [a for c in attacked if (a := c.accuracy_at(point.eps)) is not None]
        if above:
            xs.append(point.eps)
            low.append(100 * point.accuracy)
            high.append(100 * min(above))
    return (xs, low, high) if xs else None


# Each curve's marker and line style, in turn: curves that coincide stay visible (hollow markers of
# decreasing size, drawn in order, so each one rings the one below it; distinct dashes between them).
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")
TITLE_WIDTH = 48  # characters of an axes title per line: longer ones wrap at word boundaries


def axes_title(text: str) -> str:
    """A title that fits above one panel: capitalised and wrapped at word boundaries."""
    return "\n".join(textwrap.wrap(text[:1].upper() + text[1:], TITLE_WIDTH))


def curve_label(name: str, curve: AttackCurve, both: bool) -> str:
    """The legend's name for a curve; where attacks and a verified bound share the plot, which side of
    the true robust accuracy each one gives."""
    if curve.kind == "certified":
        if curve.abstained is not None:
            return f"{name}: smoothed classifier, certified"
        return f"{name}: certified (lower bound)"
    return f"{name}: attack (upper bound)" if both else name


def curve_styles(count: int) -> list[dict]:
    """Matplotlib styles for ``count`` curves (:data:`MARKERS`, :data:`LINESTYLES`): hollow markers,
    each smaller than the one before, so that equal points show as nested rings."""
    return [
        {
            "marker": MARKERS[k % len(MARKERS)],
            "linestyle": LINESTYLES[k % len(LINESTYLES)],
            "markersize": max(10 - 1.5 * k, 4),
            "markerfacecolor": "none",
            "markeredgewidth": 1.5,
            "alpha": 0.9,
            "zorder": 3 + k,
        }
        for k in range(count)
    ]


def y_limits(report: RobustnessReport, band) -> tuple[float, float]:
    """0–100% on the y axis; with a certified band whose curves all sit high (above 50%), zoomed to
    the data's range so that the band is readable."""
    if band is None:
        return -2, 102
    values = [100 * p.accuracy for c in report.attacks.values() for p in c.points] + [100 * report.clean_accuracy]
    low = min(values)
    if low <= 50:
        return -2, 102
    floor = max(0.0, 5 * math.floor((low - 2) / 5))
    return floor, 100 + max(1.0, (100 - floor) * 0.03)


def _draw_curves(ax, report: RobustnessReport) -> None:
    band = sandwich(report)
    both = band is not None
    if band is not None:
        ax.fill_between(
            band[0], band[1], band[2], color="tab:green", alpha=0.15, label="robust accuracy lies in this band"
        )
    for (name, curve), style in zip(report.attacks.items(), curve_styles(len(report.attacks)), strict=True):
        ax.plot(
            [p.eps for p in curve.points],
            [100 * p.accuracy for p in curve.points],
            label=figure_text(curve_label(name, curve, both)),
            **style,
        )
    ax.axhline(100 * report.clean_accuracy, color="grey", linestyle="--", linewidth=1, label="clean")
    slanted = len(report.eps) > MANY_TICKS
    ax.set_xticks(report.eps, tick_labels(report), rotation=45 if slanted else 0, ha="right" if slanted else "center")
    ax.set_xlabel(f"ε ({norm_symbol(report.norm)})")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(*y_limits(report, band))
    ax.set_title(axes_title(curves_title(report)), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)  # off the data


def corruption_style(k: int) -> dict:
    """The k-th corruption's colour, marker and dashes: ten well-separated colours (tab10) crossed
    with markers and line styles that change at a different period, so that all 15 differ in two ways."""
    return {
        "color": f"C{k % 10}",
        "marker": MARKERS[k % len(MARKERS)],
        "linestyle": LINESTYLES[(k // 10 + k) % len(LINESTYLES)],
        "markersize": 4,
    }


CORRUPTION_SEVERITY = 3  # the severity the row of corrupted examples shows


def _draw_corrupted_row(sub, report: RobustnessReport) -> None:
    """The run's first input and the same input under each corruption of the run at
    :data:`CORRUPTION_SEVERITY`, one panel each, seeded as the run seeded it."""
    from advgrad.corruptions import corrupt
    from advgrad.report.images import show_image

    results = report.corruptions
    names = results.names
    axes = sub.subplots(1, len(names) + 1, squeeze=False)[0]
    show_image(axes[0], results.sample, "clean")
    for ax, name in zip(axes[1:], names, strict=True):
        corrupted = corrupt(results.sample[None], name, CORRUPTION_SEVERITY, seed=report.seed, first=0)[0]
        show_image(ax, corrupted, name.replace("_", " "), fontsize=6)


def _draw_corruptions(ax, report: RobustnessReport) -> None:
    """Accuracy against severity for each common corruption (thin) and their mean (thick)."""
    results = report.corruptions
    if results is None:
        return
    for k, name in enumerate(results.names):
        ys = [100 * (results.accuracy(name, s) or 0.0) for s in results.severities]
        ax.plot(results.severities, ys, linewidth=1.2, label=name, **corruption_style(k))
    means = [100 * results.mean_at(s) for s in results.severities]
    ax.plot(results.severities, means, linewidth=3, color="black", label=f"mean ({100 * results.mean_accuracy:.1f}%)")
    ax.axhline(100 * report.clean_accuracy, color="grey", linestyle="--", linewidth=1, label="clean")
    ax.set_xticks(results.severities)
    ax.set_xlabel("severity")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title("Common corruptions")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7, frameon=False)


def reference_point(report: RobustnessReport) -> tuple[str, float] | None:
    """The attack and ε the per-class panel shows: where the per-class accuracies differ the
    most (largest standard deviation over the classes that have samples); among equals the
    smaller ε, then the stronger attack. Without any spread, the middle non-zero ε and the
    strongest attack there."""
    nonzero = [e for e in report.eps if e > 0]
    if not nonzero or not report.attacks:
        return None
    best, best_key = None, None
    for name, curve in report.attacks.items():
        for point in curve.points:
            if point.eps <= 0:
                continue
            shares = [a for a in report.class_accuracy(point.robust_per_class) if a is not None]
            spread = statistics.pstdev(shares) if len(shares) > 1 else 0.0
            key = (round(spread, 12), -point.eps, -point.accuracy)
            if best_key is None or key > best_key:
                best, best_key = (name, point.eps), key
    if best_key is not None and best_key[0] > 0:
        return best
    eps = nonzero[(len(nonzero) - 1) // 2]
    name = min(report.attacks, key=lambda k: report.attacks[k].points[report.eps.index(eps)].accuracy)
    return name, eps


def _draw_classes(ax, report: RobustnessReport) -> None:
    clean = [100 * (a or 0.0) for a in report.class_accuracy(report.clean_correct_per_class)]
    ref = reference_point(report)
    attacked = None
    if ref is not None:
        point = report.attacks[ref[0]].point_at(ref[1])
        attacked = [100 * (a or 0.0) for a in report.class_accuracy(point.robust_per_class)]
        certified = " certified" if report.attacks[ref[0]].kind == "certified" else ""
        label = f"{ref[0]}{certified} at ε={report.eps_label(ref[1])}"
    if len(clean) <= MAX_CLASS_BARS:
        xs = list(range(len(clean)))
        width = 0.4 if attacked else 0.8
        ax.bar([x - width / 2 if attacked else x for x in xs], clean, width=width, label="clean")
        if attacked:
            ax.bar([x + width / 2 for x in xs], attacked, width=width, label=label)
        ax.set_xticks(xs)
        ax.set_xlabel("class")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
    else:
        bins = [10 * k for k in range(11)]
        ax.hist(clean, bins=bins, alpha=0.6, label="clean")
        if attacked:
            ax.hist(attacked, bins=bins, alpha=0.6, label=label)
        ax.set_xlabel("per-class accuracy (%)")
        ax.set_ylabel("classes")
        ax.set_xlim(0, 100)
    ax.set_title("Accuracy per class")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)  # below the axes


def example_blocks(report: RobustnessReport) -> list[tuple[str, list[Example]]]:
    """Every attack of the run with the adversarial examples the plot shows for it (up to
    :data:`MAX_EXAMPLES`; an empty list when it fooled no sample)."""
    return [
        (name, list(report.examples.get(name, []))[:MAX_EXAMPLES])
        for name, curve in report.attacks.items()
        if curve.kind != "certified"  # a bound finds no examples
    ]


def certified_note(report: RobustnessReport) -> str:
    """What a certification-only figure shows, in place of a word about adversarial examples."""
    if any(c.abstained is not None for c in report.attacks.values()):
        return (
            "Randomized smoothing: a sample counts at radius ε when the smoothed classifier returns its label with a "
            "certified L2 radius ≥ ε (each with probability 1 − α); abstentions count as not certified."
        )
    return (
        "Certified accuracy: a sample counts at ε when the bound proves every margin positive over the whole ε-ball "
        "∩ [0, 1], a lower bound on the robust accuracy; no attack ran, so no adversarial example is shown."
    )


def report_figure(report: RobustnessReport):
    """The figure :func:`plot_report` saves: curve and per-class accuracy on top; below, one block
    per attack (originals, perturbations with their amplification, adversarial examples)."""
    plt = pyplot()
    blocks = [(name, ex) for name, ex in example_blocks(report) if ex]
    empty = [name for name, ex in example_blocks(report) if not ex]
    columns = max([len(ex) for _, ex in blocks] + [4])
    tabular = any(ex[0].x.dim() == 1 for _, ex in blocks)  # a table's examples are vectors: bars per feature
    top_height, block_height = 4.6, 3.9
    fig = plt.figure(
        figsize=(
            max(12.0 if report.corruptions is None else 17.0, 1.45 * columns),
            top_height + block_height * len(blocks) + 0.6 + (1.9 if report.corruptions is not None else 0),
        ),
        dpi=110,
        layout="constrained",
    )
    fig.suptitle(run_title(report), fontsize=10)
    row = report.corruptions is not None and getattr(report.corruptions.sample, "dim", lambda: 0)() == 3
    heights = [top_height] + ([1.9] if row else []) + [block_height] * len(blocks)
    top, *rest = fig.subfigures(len(heights), 1, height_ratios=heights, squeeze=False)[:, 0]
    if row:
        corrupted, *rest = rest
        corrupted.suptitle(
            f"the first sample under each corruption, severity {CORRUPTION_SEVERITY}", fontsize=9, x=0.01, ha="left"
        )
        _draw_corrupted_row(corrupted, report)
    if report.corruptions is None:
        curve_ax, class_ax = top.subplots(1, 2, gridspec_kw={"width_ratios": [1.15, 1]})
        _draw_curves(curve_ax, report)
    elif not report.attacks:  # common corruptions alone: no curve against ε to draw
        class_ax, corruption_ax = top.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.15]})
        _draw_corruptions(corruption_ax, report)
    else:
        curve_ax, class_ax, corruption_ax = top.subplots(1, 3, gridspec_kw={"width_ratios": [1.15, 1, 1.15]})
        _draw_curves(curve_ax, report)
        _draw_corruptions(corruption_ax, report)
    _draw_classes(class_ax, report)
    for sub, (name, examples) in zip(rest, blocks, strict=True):
        sub.suptitle(
            figure_text(f"{name}: {len(examples)} adversarial example{'s' if len(examples) != 1 else ''}"),
            fontsize=10,
            fontweight="bold",
            x=0.01,
            ha="left",
        )
        if tabular:
            names, x, x_adv, lower, upper, fixed = example_tables(examples, report.data.get("table"))
            draw_feature_bars(sub.subplots(1, 1), names, x, x_adv, lower, upper, fixed=fixed)
            continue
        axes = sub.subplots(3, columns, squeeze=False)
        draw_examples(axes, examples, report.norm, eps_label=report.eps_label)
    legend = FEATURE_LEGEND if tabular else EXAMPLE_LEGEND
    notes = [legend] if blocks else ["No adversarial examples were found."]
    if not report.attacks:
        notes = ["No attack in this run: common corruptions only."]
    elif all(c.kind == "certified" for c in report.attacks.values()):
        notes = [certified_note(report)]
    if blocks and empty:
        notes.append(f"No adversarial example found by: {', '.join(empty)}.")
    fig.supxlabel("\n".join(textwrap.fill(n, 150) for n in notes), fontsize=8)
    return fig


def plot_report(report: RobustnessReport, path: str | os.PathLike, *, format: str | None = None) -> None:
    """One picture of :func:`report_figure`, written atomically in the format the name asks for
    (``.png``, ``.pdf``, ``.svg``, ``.eps``, ``.jpg``) or ``format`` (matplotlib's name)."""
    save_figure(report_figure(report), path, format=format)
