"""PNG grids of images: adversarial examples and saliency maps."""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from advgrad.report.fmt import norm_sub
from advgrad.report.mpl import pyplot as _pyplot
from advgrad.report.mpl import save_figure as _save
from advgrad.results import Example
from advgrad.threat import per_sample_norm


def _to_display(img: Tensor):
    """C×H×W in [0, 1] → an array matplotlib shows (H×W grey or H×W×3)."""
    img = img.detach().float().cpu().clamp(0, 1)
    if img.shape[0] == 1:
        return img[0].numpy(), "gray"
    if img.shape[0] >= 3:
        return img[:3].permute(1, 2, 0).numpy(), None
    return img.mean(0).numpy(), "gray"


def _visible(delta: Tensor) -> Tensor:
    """Scale a perturbation so that its largest entry maps to 0 or 1 around mid-grey."""
    scale = delta.abs().amax().clamp_min(1e-12)
    return 0.5 + 0.5 * delta / scale


def _show(ax, img: Tensor, title: str, color: str = "black", cmap: str | None = None) -> None:
    """An image C×H×W in [0, 1] (or, with ``cmap``, an H×W map in [0, 1]) on bare axes."""
    arr, default_cmap = _to_display(img if cmap is None else img[None])
    ax.imshow(arr, cmap=cmap or default_cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=7, color=color)
    ax.set_xticks([])
    ax.set_yticks([])


def _norm_label(delta: Tensor, norm: str) -> str:
    return f"‖δ‖{norm_sub(norm)}={float(per_sample_norm(delta[None], norm)[0]):.3f}"


def draw_examples(axes, examples: list[Example], attack: str, norm: str = "inf") -> None:
    """Two rows of axes: adversarial examples (titled with ε and label → prediction) and their
    perturbations, scaled to be visible, titled with their ``norm``. Extra columns are left blank."""
    for i in range(len(axes[0])):
        if i >= len(examples):
            axes[0][i].axis("off")
            axes[1][i].axis("off")
            continue
        e = examples[i]
        delta = e.x_adv - e.x
        _show(axes[0][i], e.x_adv, f"ε={e.eps:.3g}: {e.y}→{e.pred}", "red")
        _show(axes[1][i], _visible(delta), _norm_label(delta, norm))
    axes[0][0].set_ylabel(f"{attack}\nadversarial", fontsize=8)
    axes[1][0].set_ylabel("perturbation\n(scaled)", fontsize=8)


def adversarial_grid(
    x: Tensor, x_adv: Tensor, y: Tensor, pred_clean: Tensor, pred_adv: Tensor, path: str | os.PathLike,
    *, count: int = 8, class_names: list[str] | None = None, norm: str = "inf",
) -> Path:
    """Three rows: originals, perturbations (scaled to be visible) and adversarial examples,
    each labelled with the model's prediction (and the true label on the originals)."""
    plt = _pyplot()
    count = min(count, x.shape[0])
    name = (lambda c: class_names[c]) if class_names else str
    fig, axes = plt.subplots(3, count, figsize=(1.6 * count, 5.2), dpi=120, squeeze=False)
    for i in range(count):
        delta = x_adv[i] - x[i]
        panels = [
            (x[i], f"y={name(int(y[i]))} pred={name(int(pred_clean[i]))}"),
            (_visible(delta), _norm_label(delta, norm)),
            (x_adv[i], f"pred={name(int(pred_adv[i]))}"),
        ]
        for row, (img, label) in enumerate(panels):
            fooled = row == 2 and int(pred_adv[i]) != int(y[i])
            _show(axes[row][i], img, label, "red" if fooled else "black")
    for row, text in enumerate(("original", "perturbation (scaled)", "adversarial")):
        axes[row][0].set_ylabel(text, fontsize=8)
    fig.tight_layout()
    out = Path(path)
    _save(fig, out)
    return out


def saliency_grid(
    x: Tensor, grad: Tensor, y: Tensor, pred: Tensor, path: str | os.PathLike, *, count: int = 8
) -> Path:
    """Two rows: inputs and |∇ₓJ| (max over channels, scaled per sample)."""
    plt = _pyplot()
    count = min(count, x.shape[0])
    fig, axes = plt.subplots(2, count, figsize=(1.6 * count, 3.6), dpi=120, squeeze=False)
    for i in range(count):
        _show(axes[0][i], x[i], f"y={int(y[i])} pred={int(pred[i])}")
        sal = grad[i].detach().float().abs().amax(dim=0)
        _show(axes[1][i], sal / sal.max().clamp_min(1e-12), f"max |∇|={float(grad[i].abs().max()):.2g}", cmap="inferno")
    axes[0][0].set_ylabel("input", fontsize=8)
    axes[1][0].set_ylabel("|∇ₓJ|", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    _save(fig, out)
    return out


