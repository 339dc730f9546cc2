"""Cheap measurements on the clean batches that the sanity checks (:mod:`advgrad.verdicts.checks`) read.

Three things about a model can make every attack number meaningless, and each costs little to
measure while the clean predictions are computed:

* **input gradients**: ∇ₓJ (cross-entropy, true label) of the clean-correct samples, by one
  forward and one backward pass. A share of exactly zero or non-finite gradients means the
  gradient attacks had nothing to follow (gradient masking, or a saturated softmax);
* **repeatability**: the forward pass of that gradient computation is a second run of the model
  on the same inputs; outputs that differ from the first pass reveal a randomised model;
* **output scale**: rows of outputs that all lie in [0, 1] (and sum to 1) are probabilities, not
  logits, and cross-entropy on them gives attacks weak gradients.

The gradient pass runs on the first ``GRADIENT_SAMPLES`` samples (whole batches) only; the output
scale is read from every batch's clean outputs, which are computed anyway. Counts merge by
addition, so per-batch evidence saved in a resume state adds up to the same totals.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from advgrad.core.gradient import input_gradient

GRADIENT_SAMPLES = 1024
REPEAT_RTOL = 1e-3  # outputs differing by more than this share of the row's largest |output| changed
SIMPLEX_ATOL = 1e-3  # a row whose entries sum to 1 within this looks like softmax probabilities


@dataclass
class Evidence:
    """Counts over the samples measured so far (see the module docstring)."""

    gradient_samples: int = 0
    gradient_zero: int = 0
    gradient_nonfinite: int = 0
    repeat_samples: int = 0
    repeat_changed: int = 0
    repeat_max_difference: float = 0.0
    output_rows: int = 0
    output_unit_rows: int = 0
    output_simplex_rows: int = 0
    clean_nonfinite: int = 0  # samples whose clean logits hold a NaN or ±∞ (counted as misclassified)
    input_shape: list[int] = field(default_factory=list)

    def merge(self, other: Evidence) -> None:
        """Add ``other``'s counts to these (in place)."""
        for name in (
            "gradient_samples",
            "gradient_zero",
            "gradient_nonfinite",
            "repeat_samples",
            "repeat_changed",
            "output_rows",
            "output_unit_rows",
            "output_simplex_rows",
            "clean_nonfinite",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.repeat_max_difference = max(self.repeat_max_difference, other.repeat_max_difference)
        self.input_shape = self.input_shape or list(other.input_shape)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        return cls(**data)


def output_scale(logits: Tensor) -> tuple[int, int]:
    """Rows of ``logits`` with every entry in [0, 1], and those of them that also sum to 1."""
    unit = ((logits >= 0) & (logits <= 1)).all(dim=1)
    simplex = unit & ((logits.sum(dim=1) - 1).abs() <= SIMPLEX_ATOL)
    return int(unit.sum()), int(simplex.sum())


def measure(
    model: nn.Module, x: Tensor, y: Tensor, logits: Tensor, correct: Tensor, *, gradients: bool = True
) -> Evidence:
    """Evidence from one clean batch: ``logits`` are the model's outputs on ``x`` (already
    computed), ``correct`` marks the clean-correct samples. With ``gradients`` the clean-correct
    samples also get a gradient pass (whose forward pass doubles as the repeat check)."""
    unit, simplex = output_scale(logits)
    evidence = Evidence(
        output_rows=logits.shape[0], output_unit_rows=unit, output_simplex_rows=simplex, input_shape=list(x.shape[1:])
    )
    index = correct.nonzero().squeeze(1)
    if not gradients or index.numel() == 0:
        return evidence
    grad, _, again = input_gradient(model, x[index], y[index])
    flat = grad.reshape(index.numel(), -1)
    finite = torch.isfinite(flat).all(dim=1)
    zero = finite & (flat.abs().amax(dim=1) == 0)
    first = logits[index].float()
    difference = (again.float() - first).abs().amax(dim=1) / first.abs().amax(dim=1).clamp_min(1e-6)
    difference = torch.nan_to_num(difference, nan=1e30, posinf=1e30)  # JSON has no inf
    evidence.gradient_samples = int(index.numel())
    evidence.gradient_zero = int(zero.sum())
    evidence.gradient_nonfinite = int((~finite).sum())
    evidence.repeat_samples = int(index.numel())
    evidence.repeat_changed = int((difference > REPEAT_RTOL).sum())
    evidence.repeat_max_difference = float(difference.max())
    return evidence
