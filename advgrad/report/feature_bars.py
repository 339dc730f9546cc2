"""Per-feature perturbation bars: what an attack changed in each feature of a table.

Each bar is the mean |x_adv,i − x_i| over the samples shown, as a fraction of feature i's range
(hi_i − lo_i), so that features of any units compare; its label gives the same mean in the
feature's own units. Features of ε weight 0 (immutable) are marked; their bar is 0 by construction.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from advgrad.report.mpl import figure_text, pyplot, save_figure

MAX_LABELLED = 40  # beyond this many features the bars carry no value labels and fewer tick names


def mean_change(x: Tensor, x_adv: Tensor, lower: Sequence[float], upper: Sequence[float]) -> tuple[Tensor, Tensor]:
    """(mean |δ_i| in raw units, the same as a fraction of the range hi_i − lo_i; 0 for lo_i = hi_i)
    per feature, over the rows of the raw N×D tables ``x`` and ``x_adv``."""
    delta = (x_adv.double() - x.double()).abs().mean(dim=0) if x.shape[0] else torch.zeros(x.shape[1])
    span = torch.tensor(upper, dtype=torch.float64) - torch.tensor(lower, dtype=torch.float64)
    share = torch.where(span > 0, delta / torch.where(span > 0, span, 1.0), torch.zeros_like(delta))
    return delta, share


def draw_bars(
    ax,
    names: Sequence[str],
    heights: Tensor,
    labels: Sequence[str],
    *,
    fixed: Sequence[int] = (),
    ylabel: str = "",
    title: str = "",
) -> None:
    """One bar per feature on ``ax`` (``heights``), named, immutable ones grey; each bar carries its
    entry of ``labels`` when there are at most :data:`MAX_LABELLED` features."""
    d = len(names)
    positions = list(range(d))
    immutable = set(fixed)
    colors = ["#bbbbbb" if i in immutable else "#c0392b" for i in positions]
    ax.bar(positions, heights.tolist(), color=colors)
    step = max(1, d // MAX_LABELLED)
    shown = positions[::step]
    ax.set_xticks(shown)
    ax.set_xticklabels(
        [figure_text(f"{names[i]} (fixed)" if i in immutable else names[i]) for i in shown],
        rotation=60,
        ha="right",
        fontsize=7,
    )
    if d <= MAX_LABELLED:  # upright labels, one bar wide each: neighbours never overlap
        top = max(float(heights.max()) if d else 0.0, 1e-12)
        for i in positions:
            ax.text(i, float(heights[i]) + 0.02 * top, labels[i], ha="center", va="bottom", rotation=90, fontsize=6)
        ax.set_ylim(0, top * 1.3)  # room above the tallest bar for its label
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def draw_feature_bars(
    ax,
    names: Sequence[str],
    x: Tensor,
    x_adv: Tensor,
    lower: Sequence[float],
    upper: Sequence[float],
    *,
    fixed: Sequence[int] = (),
    title: str = "",
) -> None:
    """Bars of :func:`mean_change` on ``ax``: one per feature, named, immutable ones marked."""
    raw, share = mean_change(x, x_adv, lower, upper)
    labels = [f"{float(v):.3g}" for v in raw]
    draw_bars(ax, names, share, labels, fixed=fixed, ylabel="mean |δ| / feature range", title=title)


def _bars_figure(count: int):
    plt = pyplot()
    return plt.subplots(figsize=(max(6.0, 0.35 * min(count, 120) + 2), 4.2), dpi=110, layout="constrained")


def mean_gradient(grad_unit: Tensor, lower: Sequence[float], upper: Sequence[float]) -> tuple[Tensor, Tensor]:
    """(mean |∂J/∂u_i|, mean |∂J/∂x_i|) per feature over the rows of ``grad_unit`` (N×D, the gradient
    with respect to u_i = (x_i − lo_i) / (hi_i − lo_i)): since x_i = lo_i + (hi_i − lo_i)·u_i, the
    second is the first ÷ (hi_i − lo_i) (0 for a constant feature)."""
    mean = grad_unit.double().abs().mean(dim=0) if grad_unit.shape[0] else torch.zeros(grad_unit.shape[1])
    span = torch.tensor(upper, dtype=torch.float64) - torch.tensor(lower, dtype=torch.float64)
    return mean, torch.where(span > 0, mean / torch.where(span > 0, span, 1.0), torch.zeros_like(mean))


def gradient_bars(
    names: Sequence[str],
    grad_unit: Tensor,
    lower: Sequence[float],
    upper: Sequence[float],
    path: str | os.PathLike,
    *,
    fixed: Sequence[int] = (),
    title: str = "",
) -> Path:
    """The input gradient of a table, one bar per feature: mean |∂J/∂u_i| over the samples, where
    u_i = (x_i − lo_i) / (hi_i − lo_i) is the feature as a fraction of its range (``grad_unit``, N×D),
    so that features of any units compare; the label gives mean |∂J/∂x_i| in the feature's own units
    (the bar ÷ (hi_i − lo_i)). Written atomically, in the format ``path``'s extension names."""
    mean, per_unit = mean_gradient(grad_unit, lower, upper)
    fig, ax = _bars_figure(len(names))
    labels = [f"{float(v):.3g}" for v in per_unit]
    draw_bars(ax, names, mean, labels, fixed=fixed, ylabel="mean |∂J/∂u| (u: share of the range)", title=title)
    fig.supxlabel(
        "bar: mean |∂J/∂u| with u the feature as a fraction of its range; label: mean |∂J/∂x| in the feature's units",
        fontsize=7,
    )
    path = Path(path)
    save_figure(fig, path)
    return path


def feature_bars(
    names: Sequence[str],
    x: Tensor,
    x_adv: Tensor,
    lower: Sequence[float],
    upper: Sequence[float],
    path: str | os.PathLike,
    *,
    fixed: Sequence[int] = (),
    title: str = "",
) -> Path:
    """One picture of :func:`draw_feature_bars`, written atomically; returns its path."""
    fig, ax = _bars_figure(len(names))
    draw_feature_bars(ax, names, x, x_adv, lower, upper, fixed=fixed, title=title)
    fig.supxlabel(
        "bar: mean |x_adv − x| as a fraction of the feature's range; label: the same in the feature's units", fontsize=7
    )
    path = Path(path)
    save_figure(fig, path)
    return path


def example_tables(examples: Sequence, table: dict | None) -> tuple[list[str], Tensor, Tensor, list, list, list]:
    """A report's kept examples of a table (vectors of what the attacks see, ``z``) in raw units:
    ``(names, x, x_adv, lower, upper, fixed)``, from the report's ``data.table``
    (:meth:`advgrad.io.data.tables.FeatureSpace.to_dict`); without it, the vectors as they are."""
    x = torch.stack([e.x.flatten().double() for e in examples])
    x_adv = torch.stack([e.x_adv.flatten().double() for e in examples])
    d = x.shape[1]
    if not table or len(table.get("features", [])) != d:
        return [f"x{i}" for i in range(d)], x, x_adv, [0.0] * d, [1.0] * d, []
    lo = torch.tensor(table["lower"], dtype=torch.float64)
    hi = torch.tensor(table["upper"], dtype=torch.float64)
    stretch = torch.tensor([r if r > 0 else 1.0 for r in table["stretch"]], dtype=torch.float64)

    def raw(z: Tensor) -> Tensor:
        u = (z * stretch).clamp(0.0, 1.0)
        return lo * (1 - u) + hi * u

    fixed = [i for i, r in enumerate(table["stretch"]) if r == 0]
    return list(table["features"]), raw(x), raw(x_adv), table["lower"], table["upper"], fixed
