"""Carlini–Wagner L2: the smallest L2 perturbation found by optimising in tanh space."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from advgrad.attacks.base import AttackParams, AttackSpec, eot_param, param, parse_step, prepare_params
from advgrad.core.errors import UsageError
from advgrad.core.gradient import expectation, frozen
from advgrad.core.losses import is_successful, margin
from advgrad.core.threat import ThreatModel

# c stops growing here: a sample still not fooled at this constant is given up.
_MAX_CONST = 1e10


@dataclass
class CWParams(AttackParams):
    """Optimiser steps per constant, Adam's learning rate, binary-search steps over c, the first c,
    and the confidence κ an adversarial example must reach."""

    steps: int = param(200, "Adam iterations for each value of c")
    step_size: float = param(
        0.2, "Adam's initial learning rate in tanh space (cosine decay to 0 over the steps)", parse=parse_step
    )
    binary_steps: int = param(9, "binary-search steps over the constant c")
    initial_const: float = param(1.0, "first value of c")
    confidence: float = param(0.0, "κ: required margin of the wrong (or target) class")
    eot: int = eot_param()

    at_least_one = ("steps", "binary_steps", "eot")
    cost_formula = "steps*binary_steps*eot"

    def validate(self) -> None:
        super().validate()
        if self.initial_const <= 0:
            raise UsageError(f"initial-const must be > 0, got {self.initial_const}")


def to_tanh_space(x: Tensor, lower: float, upper: float) -> Tensor:
    """w with x = lower + (upper − lower)·(tanh w + 1)/2; x is pulled 10⁻⁶ inside the box first,
    where atanh is finite."""
    unit = ((x - lower) / (upper - lower) * 2 - 1) * (1 - 1e-6)
    return torch.atanh(unit)


def from_tanh_space(w: Tensor, lower: float, upper: float) -> Tensor:
    """x = lower + (upper − lower)·(tanh w + 1)/2, always inside the box."""
    return lower + (upper - lower) * (torch.tanh(w) + 1) / 2


def cw(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: CWParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """Carlini–Wagner L2 attack (Carlini & Wagner, IEEE S&P 2017, "Towards Evaluating the
    Robustness of Neural Networks"): a minimal-perturbation attack.

    Threat model: minimal L2 norm inside [0, 1]; ε is ignored (``run_attack`` clips the result into
    the ε-ball). The box is built in by the change of variables x' = (tanh w + 1)/2. For a
    constant c it minimises, with Adam over w,
    ‖x' − x‖₂² + c·max(z_y − max_{j≠y} z_j + κ, 0)     (targeted: max(max_{j≠t} z_j − z_t + κ, 0))
    and records every iterate that is adversarial (argmax ≠ y, or = t, with margin ≥ κ) and
    closer than the best so far. Unlike the paper (10,000 steps at a fixed rate) Adam's learning
    rate follows a cosine from ``step_size`` to 0 within each c: the large early steps move
    pixels that sit at 0 or 1 (far out in tanh space), the small late ones settle on the boundary.
    A binary search over c follows, per sample: after a success c ← (c_lo + c_hi)/2 with c_hi = c;
    after a failure c_lo = c and c ← 10c until a success bounds it, then the midpoint. Samples never
    fooled are returned unchanged; the result is clipped into ``threat``'s ball (the minimal example
    when its norm is ≤ ε, else its projection), so with the unbounded threat of
    :func:`advgrad.attacks.minimal.find_minimal` it is the minimal example itself. ``generator`` is
    unused (CW is deterministic). Shapes: x (N, C, H, W) in [0, 1], y (N,) int64.

    >>> x_adv = cw(model, x, y, threat=ThreatModel("2", 10.0), params=CWParams(binary_steps=9, steps=200))
    """
    params = prepare_params(params, CWParams, threat)
    x = x.detach()
    n = x.shape[0]
    lower, upper = threat.lower, threat.upper
    w0 = to_tanh_space(x.clamp(lower, upper), lower, upper)
    const = torch.full((n,), params.initial_const, device=x.device, dtype=torch.float64)
    c_lo = torch.zeros_like(const)
    c_hi = torch.full_like(const, float("inf"))
    best = x.clone()
    best_dist = torch.full((n,), float("inf"), device=x.device)

    def draw(w: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One pass: ∂/∂w of ‖x' − x‖₂² + c·max(κ − margin, 0), the logits and the margin."""
        x_new = from_tanh_space(w, lower, upper)
        logits = model(x_new).float()
        dist = (x_new - x).flatten(1).pow(2).sum(dim=1)
        gap = margin(logits, y, target)  # > 0: wrong (or target) class ahead by that much
        loss = dist + c * (params.confidence - gap).clamp_min(0)
        (grad,) = torch.autograd.grad(loss.sum(), w)
        return grad, logits.detach(), gap.detach()

    with frozen(model), torch.enable_grad():
        for _ in range(params.binary_steps):
            w = w0.clone().requires_grad_(True)
            optimiser = torch.optim.Adam([w], lr=params.step_size)
            fooled_now = torch.zeros(n, dtype=torch.bool, device=x.device)
            c = const.to(x.dtype)
            for i in range(params.steps):
                for group in optimiser.param_groups:  # cosine decay: long moves first, precision last
                    group["lr"] = params.step_size * 0.5 * (1 + math.cos(math.pi * i / params.steps))
                # EOT: gradient, logits and margin are the means of params.eot draws
                grad, logits, gap = expectation(params.eot, partial(draw, w, c))
                with torch.no_grad():
                    x_new = from_tanh_space(w, lower, upper)
                    dist = (x_new - x).flatten(1).pow(2).sum(dim=1)
                    ok = is_successful(logits, y, target) & (gap >= params.confidence)
                    closer = ok & (dist.float() < best_dist)
                    best[closer] = x_new.detach()[closer]
                    best_dist[closer] = dist.float()[closer]
                    fooled_now |= ok
                w.grad = grad
                optimiser.step()
            c_hi = torch.where(fooled_now, torch.minimum(c_hi, const), c_hi)
            c_lo = torch.where(fooled_now, c_lo, torch.maximum(c_lo, const))
            bounded = torch.isfinite(c_hi)
            const = torch.where(bounded, (c_lo + c_hi) / 2, (const * 10).clamp_max(_MAX_CONST))
    return threat.clip(best, x)  # the minimal example when it is within ε, else its projection


SPEC = AttackSpec(
    name="cw",
    function=cw,
    params_type=CWParams,
    norms=("2",),
    kind="minimal",
    summary="minimal L2 perturbation: Adam in tanh space on ‖δ‖² + c·margin, binary search over c",
    reference="Carlini & Wagner, IEEE S&P 2017",
    aliases=("cw-l2", "carlini-wagner"),
)
