"""A probe before the run: one batch through the model to check that model and data fit."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.errors import ModelError


@dataclass(frozen=True)
class ProbeResult:
    """What the probe learned: the input shape (C, H, W) and the number of classes."""

    input_shape: tuple[int, ...]
    num_classes: int

    def to_dict(self) -> dict:
        return {"input_shape": list(self.input_shape), "num_classes": self.num_classes}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:240]


def check_logits(logits: object, y: Tensor) -> int:
    """Check model outputs for a batch with labels ``y``; return the number of classes."""
    if not isinstance(logits, Tensor):
        raise ModelError(
            f"the model returned {type(logits).__name__}, expected a tensor of N×classes logits"
        )
    n = y.shape[0]
    if logits.dim() != 2 or logits.shape[0] != n:
        raise ModelError(
            f"the model's output has shape {tuple(logits.shape)}; expected {n}×classes logits for a batch of {n}"
        )
    classes = logits.shape[1]
    if classes < 2:
        raise ModelError(f"the model outputs {classes} value per sample; a classifier needs at least 2 logits")
    top = int(y.max()) if y.numel() else 0
    if top >= classes:
        raise ModelError(
            f"labels go up to {top} but the model outputs {classes} classes (0..{classes - 1}); "
            "the model and the data do not fit"
        )
    if not torch.isfinite(logits).all():
        raise ModelError("the model's outputs contain NaN or infinite values on the probe batch")
    return classes


def probe(model: nn.Module, x: Tensor, y: Tensor) -> ProbeResult:
    """Run one batch through ``model`` and check its outputs against the labels."""
    try:
        with torch.no_grad():
            logits = model(x)
    except Exception as exc:
        raise ModelError(
            f"the model failed on inputs of shape {tuple(x.shape)} ({_first_line(exc)}); "
            "check that the data has the shape the model expects"
        ) from None
    classes = check_logits(logits, y)
    return ProbeResult(tuple(x.shape[1:]), classes)
