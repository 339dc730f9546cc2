"""Accuracy-against-ε plots (matplotlib, no display needed)."""

from __future__ import annotations

import os

from advgrad.io.files import atomic_path
from advgrad.results import RobustnessReport


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(report: RobustnessReport, path: str | os.PathLike) -> None:
    """One line per attack: accuracy (y) against ε (x), with clean accuracy as a dashed line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, curve in report.attacks.items():
        ax.plot([p.eps for p in curve.points], [100 * p.accuracy for p in curve.points], marker="o", label=name)
    ax.axhline(100 * report.clean_accuracy, color="grey", linestyle="--", linewidth=1, label="clean")
    ax.set_xlabel(f"ε (L{'∞' if report.norm == 'inf' else report.norm})")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(f"Robustness curve, {report.n_samples} samples")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
