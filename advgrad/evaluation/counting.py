"""Counting what a model is run on: sample-passes and non-finite outputs."""

from __future__ import annotations

from torch import Tensor, nn

from advgrad.core.losses import finite_rows


class CountingModel(nn.Module):
    """Wraps a model and counts the samples it is run on (forward passes × batch size) and the
    output rows with a NaN or infinite logit (on the device: reading it is the only host sync)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.samples = 0
        self._nonfinite: Tensor | int = 0

    def forward(self, x: Tensor) -> Tensor:
        self.samples += x.shape[0]
        out = self.model(x)
        if isinstance(out, Tensor) and out.dim() == 2:
            self._nonfinite = self._nonfinite + (~finite_rows(out.detach())).sum()
        return out

    @property
    def nonfinite(self) -> int:
        """Output rows so far with a NaN or infinite logit."""
        return int(self._nonfinite)
