"""Per-channel normalisation inside the model, so that attacks work on pixels in [0, 1].

Most trained models expect normalised inputs ``(x − mean) / std``. If the data were normalised
before the attack, ε would be measured in normalised units (for ImageNet's std ≈ 0.226, an
L∞ ε of 8/255 in normalised units is only about 1.8/255 in pixels) and the box [0, 1] would be
wrong. advgrad instead puts the normalisation in front of the model: the attack sees pixels,
ε is in pixel units, and the model sees what it was trained on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.core.errors import ModelError, UsageError, param_label

OPTIONS = "--mean/--std"  # the source of a normalisation the user gave


def parse_channels(text: str | Sequence[float] | None, name: str) -> tuple[float, ...] | None:
    """``"0.485,0.456,0.406"`` → (0.485, 0.456, 0.406); a sequence of numbers passes through.
    ``name``: the parameter (``mean``) errors name (:func:`advgrad.core.errors.param_label`)."""
    label, params = param_label(name)
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    try:
        values = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise UsageError(
            f"{label} takes numbers separated by commas (one per channel), got {text!r}", params=params
        ) from None
    if not values or not all(math.isfinite(v) for v in values):
        raise UsageError(
            f"{label} takes finite numbers separated by commas (one per channel), got {text!r}", params=params
        )
    return values


@dataclass(frozen=True)
class Normalization:
    """``(x − mean) / std`` per channel; a single mean and std apply to every channel."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = OPTIONS

    @classmethod
    def from_options(
        cls, mean: Sequence[float] | None, std: Sequence[float] | None, source: str = OPTIONS
    ) -> Normalization | None:
        """Both or neither; lengths equal (or one of them a single value); std > 0."""
        if mean is None and std is None:
            return None
        if mean is None or std is None:
            given, missing = ("mean", "std") if std is None else ("std", "mean")
            raise UsageError(
                f"`{given}` needs `{missing}` too (one value per channel, e.g. `mean` 0.5 `std` 0.5)",
                params=(given, missing),
            )
        mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        if len(mean) != len(std) and 1 not in (len(mean), len(std)):
            raise UsageError(
                f"`mean` has {len(mean)} values but `std` has {len(std)}; give one per channel", params=("mean", "std")
            )
        if any(s <= 0 for s in std):
            raise UsageError(f"`std` values must be positive, got {','.join(f'{s:g}' for s in std)}", params="std")
        channels = max(len(mean), len(std))
        if len(mean) == 1:
            mean = mean * channels
        if len(std) == 1:
            std = std * channels
        return cls(mean, std, source)

    @property
    def channels(self) -> int:
        return len(self.mean)

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "source": self.source}

    def __str__(self) -> str:
        def fmt(values):
            return ",".join(f"{v:g}" for v in values)

        return f"mean {fmt(self.mean)}, std {fmt(self.std)} ({self.source})"


class Normalized(nn.Module):
    """``model((x − mean) / std)``: the model sees normalised inputs, the attack sees pixels."""

    def __init__(self, model: nn.Module, normalization: Normalization):
        super().__init__()
        self.model = model
        self.normalization = normalization
        shape = (1, normalization.channels, 1, 1)
        self.register_buffer("mean", torch.tensor(normalization.mean).reshape(shape), persistent=False)
        self.register_buffer("std", torch.tensor(normalization.std).reshape(shape), persistent=False)

    def forward(self, x: Tensor):
        if x.dim() != 4 or self.mean.shape[1] not in (1, x.shape[1]):  # one value serves every channel
            raise self._channel_error(x)
        return self.model((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))

    def _channel_error(self, x: Tensor) -> ModelError:
        """The data does not have the normalisation's channels: the message names where the
        normalisation came from (`mean`/`std`, or the model's own, which they override)."""
        got = x.shape[1] if x.dim() == 4 else f"shape {tuple(x.shape)}"
        source = self.normalization.source
        if source == OPTIONS:
            what, fix = "`mean`/`std` give", "give one value per input channel"
        else:
            what = f"no `mean`/`std` given: the normalisation from {source} has"
            fix = "check that the data is what the model takes, or give `mean`/`std` with one value per input channel"
        return ModelError(
            f"{what} {self.mean.shape[1]} channel(s) but the data has {got}; {fix}", params=("mean", "std")
        )
