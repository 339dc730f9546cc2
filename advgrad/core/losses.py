"""Attack objectives: per-sample quantities that an attack *maximises*.

Untargeted attacks maximise a loss of the true class ``y``; targeted attacks maximise the negated
loss of the target class ``t`` (that is, they descend towards ``t``). Every function returns a
tensor of shape (N,), so ``objective.sum()`` has per-sample gradients ∂J_i/∂x_i.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from advgrad.core.errors import UsageError

Objective = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]


def _other_max(logits: Tensor, cls: Tensor) -> Tensor:
    """max_{j ≠ cls} z_j for each row."""
    masked = logits.masked_fill(F.one_hot(cls, logits.shape[1]).bool(), float("-inf"))
    return masked.amax(dim=1)


def ranked_other_classes(logits: Tensor, cls: Tensor) -> Tensor:
    """Per row, the classes other than ``cls`` from the highest logit to the lowest: (N, C − 1)."""
    masked = logits.masked_fill(F.one_hot(cls, logits.shape[1]).bool(), float("-inf"))
    return masked.argsort(dim=1, descending=True)[:, : logits.shape[1] - 1]


def cross_entropy(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """J = CE(z, y) = −log softmax(z)_y; targeted: −CE(z, t)."""
    if target is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, target, reduction="none")


def margin(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Carlini–Wagner margin: max_{j≠y} z_j − z_y (> 0 iff misclassified); targeted: z_t − max_{j≠t} z_j."""
    if target is None:
        return _other_max(logits, y) - logits.gather(1, y[:, None]).squeeze(1)
    return logits.gather(1, target[:, None]).squeeze(1) - _other_max(logits, target)


def dlr(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Difference of logits ratio (Croce & Hein, 2020), invariant to shifting and scaling logits.

    Untargeted: −(z_y − max_{j≠y} z_j) / (z_π1 − z_π3); targeted: −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2),
    where z_π1 ≥ z_π2 ≥ … are the sorted logits. Needs at least 3 classes (4 when targeted).
    """
    sorted_logits, _ = logits.sort(dim=1, descending=True)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    if target is None:
        if logits.shape[1] < 3:
            raise UsageError("`loss` dlr needs at least 3 classes; use ce or margin", params="loss")
        denom = sorted_logits[:, 0] - sorted_logits[:, 2] + 1e-12
        return -(z_y - _other_max(logits, y)) / denom
    if logits.shape[1] < 4:
        raise UsageError("`loss` dlr needs at least 4 classes when targeted; use ce or margin", params="loss")
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    denom = sorted_logits[:, 0] - 0.5 * (sorted_logits[:, 2] + sorted_logits[:, 3]) + 1e-12
    return -(z_y - z_t) / denom


LOSSES: dict[str, Objective] = {"ce": cross_entropy, "margin": margin, "dlr": dlr}


def get_loss(name: str) -> Objective:
    """The objective registered under ``name`` (``ce``, ``margin``, ``dlr``)."""
    try:
        return LOSSES[name]
    except KeyError:
        raise UsageError(f"unknown loss {name!r}: use one of {', '.join(LOSSES)}", params="loss") from None


def is_successful(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Per-sample success: misclassified (untargeted) or classified as the target (targeted).

    A row with a NaN or infinite logit is never a success: its argmax means nothing, and counting
    it as fooled would understate robustness because of a numerical failure of the model."""
    pred = logits.argmax(dim=1)
    hit = pred != y if target is None else pred == target
    return hit & finite_rows(logits)


def finite_rows(logits: Tensor) -> Tensor:
    """Per row: every logit is finite (no NaN, no ±∞)."""
    return torch.isfinite(logits).all(dim=1)
