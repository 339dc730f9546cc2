"""What ``advgrad grad`` computes: ∇ₓJ for every selected sample, gathered, and one table row per
sample (label, prediction, loss and the gradient's L1, L2 and L∞ norms).

The primitives it builds on (:func:`advgrad.core.gradient.input_gradient`, :func:`~advgrad.core.gradient.frozen`,
:func:`~advgrad.core.gradient.finite_difference_check`) stay in :mod:`advgrad.core.gradient`; this module is
the command's alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.core.errors import UsageError
from advgrad.core.gradient import input_gradient
from advgrad.core.results import float32_decimal
from advgrad.io.probe import check_logits


@dataclass
class GradientSet:
    """∇ₓJ for a set of samples, with the inputs, labels, predictions and per-sample losses."""

    x: Tensor
    y: Tensor
    grad: Tensor
    loss: Tensor
    pred: Tensor

    def norms(self) -> dict[str, Tensor]:
        """Per-sample ‖∇ₓJ‖ in L1, L2 and L∞."""
        flat = self.grad.reshape(self.grad.shape[0], -1)
        return {"l1": flat.abs().sum(1), "l2": flat.norm(dim=1), "linf": flat.abs().amax(1)}

    def to_dict(self) -> dict[str, Tensor]:
        return {"x": self.x, "y": self.y, "grad": self.grad, "loss": self.loss, "pred": self.pred}


def gradients(model: nn.Module, batches, *, loss: str = "ce", device: torch.device | str = "cpu") -> GradientSet:
    """∇ₓJ for every sample of ``batches`` (an iterable of (x, y)), gathered on the CPU."""
    parts: dict[str, list[Tensor]] = {k: [] for k in ("x", "y", "grad", "loss", "pred")}
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        grad, value, logits = input_gradient(model, x, y, loss=loss)
        check_logits(logits, y)
        for key, t in (("x", x), ("y", y), ("grad", grad), ("loss", value), ("pred", logits.argmax(1))):
            parts[key].append(t.cpu())
    if not parts["x"]:
        raise UsageError("no samples: the data is empty")
    return GradientSet(**{k: torch.cat(v) for k, v in parts.items()})


def sample_rows(result: GradientSet) -> list[dict]:
    """One row per sample: index, label, pred, loss and the ‖∇ₓJ‖ norms (as float32 decimals)."""
    norms = result.norms()
    return [
        {
            "index": i,
            "label": int(result.y[i]),
            "pred": int(result.pred[i]),
            "loss": float32_decimal(float(result.loss[i]) + 0.0),  # + 0.0: a loss of −log 1 is −0.0
            **{k: float32_decimal(float(norms[k][i])) for k in ("l1", "l2", "linf")},
        }
        for i in range(result.y.shape[0])
    ]
