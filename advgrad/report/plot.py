"""Plots of a report (matplotlib, no display needed): the accuracy-against-ε curve, per-class
accuracy and a grid of adversarial examples."""

from __future__ import annotations

import os

from advgrad.report.fmt import norm_symbol
from advgrad.report.images import draw_examples
from advgrad.report.mpl import pyplot, save_figure
from advgrad.results import RobustnessReport

MAX_CLASS_BARS = 20  # more classes than this are shown as a histogram of per-class accuracy
MAX_EXAMPLE_ATTACKS = 3
MAX_EXAMPLES = 8


def _draw_curves(ax, report: RobustnessReport) -> None:
    for name, curve in report.attacks.items():
        ax.plot([p.eps for p in curve.points], [100 * p.accuracy for p in curve.points], marker="o", label=name)
    ax.axhline(100 * report.clean_accuracy, color="grey", linestyle="--", linewidth=1, label="clean")
    ax.set_xlabel(f"ε ({norm_symbol(report.norm)})")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(f"Robustness curve, {report.n_samples} samples")
    ax.grid(alpha=0.3)
    ax.legend()


def reference_point(report: RobustnessReport) -> tuple[str, float] | None:
    """The attack and ε the per-class panel shows: the middle non-zero ε, the strongest attack there."""
    nonzero = [e for e in report.eps if e > 0]
    if not nonzero or not report.attacks:
        return None
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
        label = f"{ref[0]} at ε={ref[1]:.4g}"
    if len(clean) <= MAX_CLASS_BARS:
        xs = list(range(len(clean)))
        width = 0.4 if attacked else 0.8
        ax.bar([x - width / 2 if attacked else x for x in xs], clean, width=width, label="clean")
        if attacked:
            ax.bar([x + width / 2 for x in xs], attacked, width=width, label=label)
        ax.set_xticks(xs)
        ax.set_xlabel("class")
        ax.set_ylabel("accuracy (%)")
    else:
        bins = [10 * k for k in range(11)]
        ax.hist(clean, bins=bins, alpha=0.6, label="clean")
        if attacked:
            ax.hist(attacked, bins=bins, alpha=0.6, label=label)
        ax.set_xlabel("per-class accuracy (%)")
        ax.set_ylabel("classes")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.15)  # room for the legend above the bars
    ax.set_title("Accuracy per class")
    ax.legend(fontsize=8, loc="upper right", ncol=2)


def plot_report(report: RobustnessReport, path: str | os.PathLike) -> None:
    """One PNG: the curve and per-class accuracy on top, adversarial examples below (for each of
    up to three attacks, a row of adversarial inputs and a row of their perturbations)."""
    plt = pyplot()
    shown = [(name, ex[:MAX_EXAMPLES]) for name, ex in report.examples.items() if ex][:MAX_EXAMPLE_ATTACKS]
    columns = max([len(ex) for _, ex in shown] + [1])
    rows = 2 * len(shown)
    fig = plt.figure(figsize=(max(11, 1.4 * columns), 4.2 + 1.5 * rows), dpi=110, layout="constrained")
    grid = fig.add_gridspec(1 + rows, 2 * columns, height_ratios=[4.2] + [1.5] * rows)
    _draw_curves(fig.add_subplot(grid[0, :columns]), report)
    _draw_classes(fig.add_subplot(grid[0, columns:]), report)
    for k, (name, examples) in enumerate(shown):
        axes = [[fig.add_subplot(grid[1 + 2 * k + r, 2 * i : 2 * i + 2]) for i in range(columns)] for r in (0, 1)]
        draw_examples(axes, examples, name, report.norm)
    if not shown:
        fig.text(0.5, 0.01, "no adversarial examples were found", ha="center", fontsize=9)
    save_figure(fig, path)
