"""PNG grids of images: adversarial examples and saliency maps."""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from advgrad.io.files import atomic_path
from advgrad.report.plot import _pyplot
from advgrad.threat import per_sample_norm

_NORM_SUB = {"inf": "∞", "2": "₂", "1": "₁"}


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


def _save(fig, path: str | os.PathLike) -> None:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


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
            (_visible(delta), f"‖δ‖{_NORM_SUB[norm]}={float(per_sample_norm(delta[None], norm)[0]):.3f}"),
            (x_adv[i], f"pred={name(int(pred_adv[i]))}"),
        ]
        for row, (img, label) in enumerate(panels):
            arr, cmap = _to_display(img)
            ax = axes[row][i]
            ax.imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            fooled = row == 2 and int(pred_adv[i]) != int(y[i])
            ax.set_title(label, fontsize=7, color="red" if fooled else "black")
            ax.set_xticks([])
            ax.set_yticks([])
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
        arr, cmap = _to_display(x[i])
        axes[0][i].imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        axes[0][i].set_title(f"y={int(y[i])} pred={int(pred[i])}", fontsize=7)
        sal = grad[i].detach().float().abs().amax(dim=0)
        sal = sal / sal.max().clamp_min(1e-12)
        axes[1][i].imshow(sal.cpu().numpy(), cmap="inferno", vmin=0, vmax=1, interpolation="nearest")
        axes[1][i].set_title(f"max |∇|={float(grad[i].abs().max()):.2g}", fontsize=7)
        for row in (0, 1):
            axes[row][i].set_xticks([])
            axes[row][i].set_yticks([])
    axes[0][0].set_ylabel("input", fontsize=8)
    axes[1][0].set_ylabel("|∇ₓJ|", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    _save(fig, out)
    return out


