"""Margin bounds that keep their autograd graph: the loss of certified training (IBP, CROWN-IBP).

:class:`advgrad.bounds.BoundedModel` certifies a fixed model under ``torch.no_grad``; training
needs the same bounds as functions of the weights. :class:`TrainableBounds` exports the model
once and, at every step, reads the graph of bounded operators again with the model's live
parameters in place of detached copies, so that ``loss.backward()`` reaches the weights. The
bound values are those of :func:`advgrad.bounds.margin_bounds` (the same graph and operators).
"""

from __future__ import annotations

from torch import Tensor, nn

from advgrad.bounds import _check
from advgrad.bounds.graph import build_graph, export_model
from advgrad.bounds.propagate import InputSet, interval_bounds, margin_lower

__all__ = ["TrainableBounds"]


class TrainableBounds:
    """Lower bounds of z_y − z_j over the ε-ball ∩ [lower, upper], differentiable in the weights.

    The model is exported once (in eval mode: batch norm uses its running statistics, dropout is
    off); every call rebuilds the cheap operator graph from the current parameters.

    >>> bounds = TrainableBounds(model, x[:1])
    >>> low = bounds.margin_lower(x, y, 0.1, method="ibp")   # (N, C), column y = +inf
    >>> low.clamp(max=0).sum().backward()                      # gradients on model's parameters
    """

    def __init__(self, model: nn.Module, example: Tensor):
        self.model = model
        self.program = export_model(model, example)

    def _graph(self, x: Tensor):
        values = {**dict(self.model.named_parameters()), **dict(self.model.named_buffers())}
        return build_graph(self.program, x, values)

    def output_interval(
        self, x: Tensor, eps: float, *, norm: str = "inf", lower=0.0, upper=1.0
    ) -> tuple[Tensor, Tensor]:
        """IBP bounds (lo, hi) of the model's output over the ε-ball ∩ [lower, upper]: for every x′
        there, lo ≤ model(x′) ≤ hi elementwise (STAPS bounds its feature extractor with them)."""
        norm = str(norm)
        _check(eps, norm, "ibp", lower, upper)
        graph = self._graph(x)
        inputs = InputSet(x.detach(), float(eps), norm, float(lower), float(upper))
        return interval_bounds(graph, inputs, refine=False)[graph.output]

    def margin_lower(
        self, x: Tensor, y: Tensor, eps: float, *, norm: str = "inf", method: str = "ibp", lower=0.0, upper=1.0
    ) -> Tensor:
        norm = str(norm)
        _check(eps, norm, method, lower, upper)
        graph = self._graph(x)
        if len(x) == 0:
            return x.new_zeros((0, graph.shapes[graph.output][0]))
        inputs = InputSet(x.detach(), float(eps), norm, float(lower), float(upper))
        return margin_lower(graph, inputs, y.to(x.device).long(), method)
