"""Certified lower bounds on classification margins: IBP and CROWN.

For a classifier z = f(x) and a label y, :func:`margin_bounds` gives, for every class j, a number
that is ≤ z_y(x) − z_j(x) for every x in the ε-ball around x0 intersected with the box
[lower, upper]. When all of them are positive, no perturbation in that set changes the prediction.

- ``ibp``: interval bound propagation (Gowal et al. 2018), the margin folded into the last layer.
- ``crown``: backward linear relaxation (Zhang et al. 2018) with adaptive ReLU lower slopes and
  intermediate bounds by CROWN itself.
- ``crown-ibp``: CROWN for the margin, IBP for the intermediate bounds (faster, looser).

Example::

    from advgrad.bounds import certified
    ok = certified(model, x, y, [0.01, 0.02])   # bool (2, N)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from advgrad.bounds.graph import BoundGraph, UnsupportedOperation, build_graph
from advgrad.bounds.propagate import InputSet, margin_lower
from advgrad.core.errors import UsageError
from advgrad.core.geometry import L2, LINF, get_geometry

__all__ = ["METHODS", "NORMS", "BoundedModel", "UnsupportedOperation", "certified", "margin_bounds"]

ALPHA = "alpha-crown"
#: α-CROWN's Adam steps when certifying: on the default model (450 digits, ε 0.02 and 0.03) 10 steps
#: certify exactly what 20 do (95.6% and 85.3%) in half the time; 5 lose 2 points at 0.03
ALPHA_ITERATIONS = 10
METHODS = ("ibp", "crown", "crown-ibp", ALPHA)
NORMS = (LINF, L2)  # the geometries of the norms the bounds handle (advgrad.core.geometry)

#: a margin lower bound must exceed this, times 1 + the largest clean |logit|, to certify: float32
#: rounding in the bound computation is far below it, so a certificate is never an artefact of rounding
CERTIFY_SLACK = 1e-5


def _check(eps: float, norm: str, method: str, lower: float, upper: float) -> None:
    if method not in METHODS:
        raise UsageError(f"unknown bound method {method!r}; choose one of {', '.join(METHODS)}")
    if get_geometry(str(norm)) not in NORMS:
        raise UsageError(f"the bounds support the norms {' and '.join(g.name for g in NORMS)}, not {norm!r}")
    if not (math.isfinite(eps) and eps >= 0):
        raise UsageError(f"ε must be a finite number ≥ 0, got {eps!r}")
    if not lower <= upper:
        raise UsageError(f"the box needs lower ≤ upper, got [{lower}, {upper}]")


class BoundedModel:
    """A model read once into a graph of bounded operators; bounds for many ε reuse it."""

    def __init__(self, model: nn.Module | torch.export.ExportedProgram, example: Tensor):
        self.model = model
        self.graph: BoundGraph = build_graph(model, example)

    def margin_bounds(
        self,
        x: Tensor,
        y: Tensor,
        eps: float,
        *,
        norm: str = "inf",
        method: str = "crown",
        lower=0.0,
        upper=1.0,
        fixed: tuple[int, ...] = (),
    ) -> Tensor:
        """(N, classes) lower bounds of z_y − z_j over the ε-ball ∩ [lower, upper], the coordinates
        ``fixed`` (indices into each flattened sample) held at x; column y is +inf."""
        norm = str(norm)
        _check(eps, norm, method, lower, upper)
        self._check_batch(x, y)
        classes = self.graph.shapes[self.graph.output][0]
        if len(x) == 0:
            return x.new_zeros((0, classes))
        with torch.no_grad():
            inputs = InputSet(x.detach(), float(eps), norm, float(lower), float(upper), tuple(fixed))
            if method == ALPHA:
                from advgrad.bounds.alpha import AlphaParams, margin_lower_alpha

                labels = y.to(x.device).long()
                target = CERTIFY_SLACK * (1 + self.logits(x).abs().amax(dim=1))
                # CROWN on the graph as read (max-pools relaxed as such) first: α-CROWN on the graph with
                # max-pools as ReLUs then only works on the rows that bound leaves open, and never loosens it
                crown = margin_lower(self.graph, inputs, labels, "crown")
                params = AlphaParams(iterations=ALPHA_ITERATIONS)
                return margin_lower_alpha(self.relu_graph, inputs, labels, target, params, floor=crown)
            return margin_lower(self.graph, inputs, y.to(x.device).long(), method)

    def verify(
        self,
        x: Tensor,
        y: Tensor,
        eps: float,
        *,
        norm: str = "inf",
        lower=0.0,
        upper=1.0,
        fixed: tuple[int, ...] = (),
        params=None,
        generator: torch.Generator | None = None,
        progress=None,
    ):
        """A verdict per sample by branch and bound (:mod:`advgrad.bounds.bab`): verified (the
        prediction y holds on the whole ε-ball ∩ box, with margins above :data:`CERTIFY_SLACK`),
        falsified (with a counterexample a forward pass confirmed) or unknown (out of time or of
        domains). ``params``: a :class:`~advgrad.bounds.bab.BabParams`; ``progress`` hears
        (verified, falsified, undecided) counts as the work goes."""
        from advgrad.bounds.bab import BabParams, Verdicts, verify
        from advgrad.core.gradient import frozen

        norm = str(norm)
        _check(eps, norm, METHODS[0], lower, upper)
        self._check_batch(x, y)
        if len(x) == 0:
            return Verdicts.start(x)
        model = self.model.module() if isinstance(self.model, torch.export.ExportedProgram) else self.model
        with frozen(model), torch.no_grad():
            inputs = InputSet(x.detach(), float(eps), norm, float(lower), float(upper), tuple(fixed))
            target = CERTIFY_SLACK * (1 + model(x).abs().amax(dim=1))
            return verify(
                self.relu_graph, model, inputs, y.to(x.device).long(), target, params or BabParams(), generator
            )

    @property
    def relu_graph(self) -> BoundGraph:
        """The graph α-CROWN and branch and bound read: max-pools as trees of ReLUs
        (:mod:`advgrad.bounds.rewrite`), the same function with free slopes and splittable neurons."""
        if getattr(self, "_relu_graph", None) is None:
            from advgrad.bounds.rewrite import max_pools_as_relus

            self._relu_graph = max_pools_as_relus(self.graph)
        return self._relu_graph

    def _check_batch(self, x: Tensor, y: Tensor) -> None:
        if tuple(x.shape[1:]) != self.graph.input_shape:
            raise UsageError(f"inputs of shape {tuple(x.shape[1:])} do not fit the model's {self.graph.input_shape}")
        classes = self.graph.shapes[self.graph.output][0]
        if y.shape != (x.shape[0],) or (len(y) and not (0 <= int(y.min()) and int(y.max()) < classes)):
            raise UsageError(f"labels must be {x.shape[0]} class indices in [0, {classes}), got shape {tuple(y.shape)}")

    def logits(self, x: Tensor) -> Tensor:
        """The clean logits (N, C), computed in eval mode (every module's mode is restored)."""
        if isinstance(self.model, torch.export.ExportedProgram):
            # an exported program is already fixed in the mode it was exported in
            with torch.no_grad():
                return self.model.module()(x)
        model = self.model
        modes = {m: m.training for m in model.modules()}
        try:
            model.eval()
            with torch.no_grad():
                return model(x)
        finally:
            for m, training in modes.items():
                m.training = training  # the attribute: an exported graph module refuses train()


def margin_bounds(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    norm: str = "inf",
    method: str = "crown",
    lower=0.0,
    upper=1.0,
) -> Tensor:
    """(N, C) lower bounds of z_y − z_j over the ε-ball ∩ [lower, upper] around each x (column y = +inf).

    ``norm``: ``"inf"`` or ``"2"``; ``method``: one of :data:`METHODS`. The model is traced with
    ``torch.export`` (in eval mode; its modes are restored); an operator without a bound rule
    raises :class:`UnsupportedOperation` naming it and its node."""
    return BoundedModel(model, x).margin_bounds(x, y, eps, norm=norm, method=method, lower=lower, upper=upper)


def certified(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps_values: Sequence[float],
    *,
    norm: str = "inf",
    method: str = "crown",
    lower=0.0,
    upper=1.0,
) -> Tensor:
    """bool (len(eps_values), N): the clean prediction is y AND every margin lower bound over the
    ε-ball ∩ [lower, upper] exceeds :data:`CERTIFY_SLACK`·(1 + max|z(x)|) (so is certainly > 0)."""
    bounded = BoundedModel(model, x)
    logits = bounded.logits(x)
    correct = logits.argmax(dim=1) == y.to(x.device)
    slack = CERTIFY_SLACK * (1 + logits.abs().amax(dim=1, keepdim=True)) if len(x) else CERTIFY_SLACK
    rows = []
    for eps in eps_values:
        low = bounded.margin_bounds(x, y, eps, norm=norm, method=method, lower=lower, upper=upper)
        rows.append(correct & (low > slack).all(dim=1))
    if not rows:
        return torch.zeros(0, x.shape[0], dtype=torch.bool, device=x.device)
    return torch.stack(rows)
