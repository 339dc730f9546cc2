"""PNG grids of images: adversarial examples and saliency maps."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from torch import Tensor

from advgrad.core.results import Example
from advgrad.core.threat import per_sample_norm
from advgrad.report.fmt import norm_sub
from advgrad.report.mpl import figure_text
from advgrad.report.mpl import pyplot as _pyplot
from advgrad.report.mpl import save_figure as _save


def _to_display(img: Tensor):
    """C×H×W in [0, 1] → an array matplotlib shows (H×W grey or H×W×3)."""
    img = img.detach().float().cpu().clamp(0, 1)
    if img.shape[0] == 1:
        return img[0].numpy(), "gray"
    if img.shape[0] >= 3:
        return img[:3].permute(1, 2, 0).numpy(), None
    return img.mean(0).numpy(), "gray"


def amplification(scale: float) -> float:
    """The factor that shows a perturbation whose largest |entry| is ``scale`` at full contrast
    around mid-grey: 0.5/scale."""
    return 0.5 / max(scale, 1e-12)


def _visible(delta: Tensor, factor: float) -> Tensor:
    """A perturbation around mid-grey, amplified: 0.5 + factor·δ in [0, 1]."""
    return (0.5 + factor * delta).clamp(0, 1)


def _times(factor: float) -> str:
    """``×12`` or ``×1.5``: the amplification as a reader says it."""
    return f"×{factor:.0f}" if factor >= 10 else f"×{factor:.2g}"


def _show(ax, img: Tensor, title: str, color: str = "black", cmap: str | None = None, fontsize: int = 7) -> None:
    """An image C×H×W in [0, 1] (or, with ``cmap``, an H×W map in [0, 1]) on bare axes."""
    arr, default_cmap = _to_display(img if cmap is None else img[None])
    ax.imshow(arr, cmap=cmap or default_cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(figure_text(title), fontsize=fontsize, color=color)  # class names come from files
    ax.set_xticks([])
    ax.set_yticks([])


def show_image(ax, img: Tensor, title: str, *, fontsize: int = 7) -> None:
    """An image C×H×W in [0, 1] on bare axes, titled."""
    _show(ax, img, title, fontsize=fontsize)


def _norm_label(delta: Tensor, norm: str) -> str:
    return f"‖δ‖{norm_sub(norm)}={float(per_sample_norm(delta[None], norm)[0]):.3f}"


EXAMPLE_LEGEND = (
    "Each block: originals (true class), the perturbation δ = x_adv − x amplified around mid-grey "
    "(grey = 0; the factor is in the row label) and the adversarial example, titled "
    "'ε: true→predicted' (8→1: an 8 now classified as 1) at the smallest ε of the sweep that fooled it."
)


def draw_examples(axes, examples: list[Example], norm: str = "inf", *, eps_label=None) -> None:
    """Three rows of axes: originals (true class), perturbations (amplified by one factor for
    the whole block, named in the row label, titled with their ``norm``) and adversarial
    examples (titled ε: true→predicted, ε printed by ``eps_label``). Extra columns are blank."""
    label = eps_label or (lambda e: f"{e:.3g}")
    factor = amplification(max((float((e.x_adv - e.x).abs().amax()) for e in examples), default=0.0))
    for i in range(len(axes[0])):
        if i >= len(examples):
            for row in axes:
                row[i].axis("off")
            continue
        e = examples[i]
        delta = e.x_adv - e.x
        _show(axes[0][i], e.x, f"true {e.y}")
        _show(axes[1][i], _visible(delta, factor), _norm_label(delta, norm))
        _show(axes[2][i], e.x_adv, f"ε={label(e.eps)}: {e.y}→{e.pred}", "red")
    axes[0][0].set_ylabel("original", fontsize=8)
    axes[1][0].set_ylabel(f"perturbation\n{_times(factor)} (grey = 0)", fontsize=8)
    axes[2][0].set_ylabel("adversarial", fontsize=8)


def adversarial_grid(
    x: Tensor,
    x_adv: Tensor,
    y: Tensor,
    pred_clean: Tensor,
    pred_adv: Tensor,
    path: str | os.PathLike,
    *,
    count: int = 8,
    class_names: list[str] | None = None,
    norm: str = "inf",
    eps_label: str | None = None,
    title: str | None = None,
) -> Path:
    """:func:`adversarial_figure` written to ``path`` in the format its name asks for."""
    out = Path(path)
    figure = adversarial_figure(
        x,
        x_adv,
        y,
        pred_clean,
        pred_adv,
        count=count,
        class_names=class_names,
        norm=norm,
        eps_label=eps_label,
        title=title,
    )
    _save(figure, out)
    return out


def adversarial_figure(
    x: Tensor,
    x_adv: Tensor,
    y: Tensor,
    pred_clean: Tensor,
    pred_adv: Tensor,
    *,
    count: int = 8,
    class_names: list[str] | None = None,
    norm: str = "inf",
    eps_label: str | None = None,
    title: str | None = None,
):
    """Three rows, worded as :func:`draw_examples` words eval's blocks: originals (true class, and the
    clean prediction where it is wrong), perturbations (amplified by one factor, named in the row
    label) and adversarial examples titled ``ε: true→predicted`` (red when fooled); ``title`` (the
    attack, ε and the model) above them, wrapped at word boundaries."""
    plt = _pyplot()
    count = min(count, x.shape[0])
    name = (lambda c: class_names[c]) if class_names else str
    factor = amplification(float((x_adv[:count] - x[:count]).abs().amax()) if count else 0.0)
    fig, axes = plt.subplots(3, max(count, 1), figsize=(1.6 * max(count, 2), 5.6), dpi=120, squeeze=False)
    for i in range(count):
        delta = x_adv[i] - x[i]
        truth, before, after = name(int(y[i])), int(pred_clean[i]), int(pred_adv[i])
        wrong = "" if before == int(y[i]) else f" (pred {name(before)})"
        where = f"ε={eps_label}: " if eps_label else ""
        _show(axes[0][i], x[i], f"true {truth}{wrong}")
        _show(axes[1][i], _visible(delta, factor), _norm_label(delta, norm))
        _show(axes[2][i], x_adv[i], f"{where}{truth}→{name(after)}", "red" if after != int(y[i]) else "black")
    for row, text in enumerate(("original", f"perturbation\n{_times(factor)} (grey = 0)", "adversarial")):
        axes[row][0].set_ylabel(text, fontsize=8)
    if title:
        fig.suptitle(figure_text("\n".join(textwrap.wrap(title, max(40, 14 * max(count, 2))))), fontsize=9)
    fig.tight_layout()
    return fig


SALIENCY_PER_ROW = 10


def saliency_figure(
    x: Tensor, grad: Tensor, y: Tensor, pred: Tensor, *, count: int = 8, signed: bool = False, title: str | None = None
):
    """Inputs above their input gradients, ``count`` samples (all of them when fewer), in rows of
    up to :data:`SALIENCY_PER_ROW`, with a colour bar. Each map is scaled by its own largest
    |∇ₓJ| (printed above it): |∇ₓJ| (largest over channels) in [0, 1], or with ``signed`` the
    gradient summed over channels in [−1, 1] (red: a brighter pixel raises the loss)."""
    plt = _pyplot()
    count = min(count, x.shape[0])
    columns = max(min(count, SALIENCY_PER_ROW), 1)
    chunks = max(-(-count // columns), 1)
    fig, axes = plt.subplots(
        2 * chunks,
        columns,
        figsize=(1.3 * columns + 1.5, 3.0 * chunks + 0.5),
        dpi=120,
        squeeze=False,
        layout="constrained",
    )
    image = None
    for i in range(chunks * columns):
        row, col = 2 * (i // columns), i % columns
        if i >= count:
            axes[row][col].axis("off")
            axes[row + 1][col].axis("off")
            continue
        _show(axes[row][col], x[i], f"#{i}: y={int(y[i])} pred={int(pred[i])}")
        g = grad[i].detach().float()
        top = float(g.abs().max())
        if signed:
            sal, cmap, low = g.sum(dim=0) / max(float(g.sum(dim=0).abs().max()), 1e-12), "RdBu_r", -1.0
        else:
            sal, cmap, low = g.abs().amax(dim=0) / max(top, 1e-12), "inferno", 0.0
        ax = axes[row + 1][col]
        image = ax.imshow(sal.cpu().numpy(), cmap=cmap, vmin=low, vmax=1.0, interpolation="nearest")
        ax.set_title(f"max |∇|={top:.2g}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    for k in range(chunks):
        axes[2 * k][0].set_ylabel("input", fontsize=8)
        axes[2 * k + 1][0].set_ylabel("∇ₓJ (signed)" if signed else "|∇ₓJ|", fontsize=8)
    if image is not None:
        what = "∇ₓJ ÷ sample's max |∇ₓJ| (red: raises the loss)" if signed else "|∇ₓJ| ÷ sample's max |∇ₓJ|"
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
        bar.set_label(what, fontsize=8)
    heading = title or f"Input gradient ∇ₓJ of {count} samples"
    fig.suptitle(figure_text("\n".join(textwrap.wrap(heading, max(40, 11 * columns)))), fontsize=10)
    return fig


def saliency_grid(
    x: Tensor,
    grad: Tensor,
    y: Tensor,
    pred: Tensor,
    path: str | os.PathLike,
    *,
    count: int = 8,
    signed: bool = False,
    title: str | None = None,
) -> Path:
    """:func:`saliency_figure` written as a PNG to ``path``."""
    out = Path(path)
    _save(saliency_figure(x, grad, y, pred, count=count, signed=signed, title=title), out)
    return out
