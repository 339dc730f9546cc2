"""Counting what a model is run on: forward and backward sample-passes, and non-finite outputs.

A forward sample-pass is one sample through the model (a call on a batch of B samples is B of
them); a backward sample-pass is one sample's row of a backward pass through the model's output
(``torch.autograd.grad`` through a call on B samples is B of them; a second backward through the
same graph counts again). The backward side is counted by a hook on the output tensor, which fires
once per backward pass that reaches it, so the counts are exact whatever the attack does.
"""

from __future__ import annotations

from torch import Tensor, nn

from advgrad.core.losses import finite_rows


class SampleCounter(nn.Module):
    """Wraps a model and counts its forward sample-passes (``samples``) and backward sample-passes
    (``backward_samples``). It adds no tensor operation to the model's forward pass."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.samples = 0
        self.backward_samples = 0

    def forward(self, x: Tensor) -> Tensor:
        self.samples += x.shape[0]
        out = self.model(x)
        if isinstance(out, Tensor) and out.requires_grad:
            out.register_hook(self._backward)
        return out

    def _backward(self, grad: Tensor) -> None:
        self.backward_samples += grad.shape[0]

    @property
    def passes(self) -> tuple[int, int]:
        """(forward, backward) sample-passes so far."""
        return self.samples, self.backward_samples


class CountingModel(SampleCounter):
    """A :class:`SampleCounter` that also counts the output rows with a NaN or infinite logit (on the
    device: reading it is the only host sync)."""

    def __init__(self, model: nn.Module):
        super().__init__(model)
        self._nonfinite: Tensor | int = 0

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        if isinstance(out, Tensor) and out.dim() == 2:
            self._nonfinite = self._nonfinite + (~finite_rows(out.detach())).sum()
        return out

    @property
    def nonfinite(self) -> int:
        """Output rows so far with a NaN or infinite logit."""
        return int(self._nonfinite)
