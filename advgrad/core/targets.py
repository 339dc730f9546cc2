"""Target classes for targeted attacks: a given class, a random other class, or the least likely."""

from __future__ import annotations

import torch
from torch import Tensor

from advgrad.core.errors import UsageError

TARGET_MODES = ("random", "least-likely")


def parse_target(value: str | int | None) -> int | str | None:
    """``None`` (untargeted), a class index ``C``, ``random`` or ``least-likely``."""
    if value is None:
        return None
    text = str(value).strip().lower().replace("_", "-")
    if text in TARGET_MODES:
        return text
    if text in ("ll", "least"):
        return "least-likely"
    try:
        cls = int(text)
    except ValueError:
        raise UsageError(
            f"bad `target` {value!r}: give a class index, random or least-likely", params="target"
        ) from None
    if cls < 0:
        raise UsageError(f"`target` must be a class index ≥ 0, got {cls}", params="target")
    return cls


def resolve_targets(
    target: int | str | None, logits: Tensor, y: Tensor, generator: torch.Generator | None = None
) -> Tensor | None:
    """Per-sample target classes for a batch, or ``None`` for an untargeted attack.

    A fixed class must exist among the model's outputs. ``random`` draws uniformly among the
    classes other than the true one; ``least-likely`` takes argmin of the clean logits.
    """
    if target is None:
        return None
    classes = logits.shape[1]
    if isinstance(target, int):
        if target >= classes:
            raise UsageError(
                f"`target` {target} is not a class of this model (classes 0..{classes - 1})", params="target"
            )
        return torch.full_like(y, target)
    if target == "least-likely":
        return logits.argmin(dim=1)
    if generator is None:
        generator = torch.Generator(device=y.device)
        generator.seed()
    offset = torch.randint(1, classes, y.shape, generator=generator, device=generator.device).to(y.device)
    return (y + offset) % classes
