"""FGSM: the fast gradient sign method, the one-step case of the shared loop."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.attacks.base import AttackSpec, eot_param, param, parse_step
from advgrad.attacks.iterative import LoopParams, loop_attack
from advgrad.core.threat import ThreatModel


@dataclass
class FGSMParams(LoopParams):
    """``step_size`` defaults to ε; ``random_start`` draws the start uniformly from the ε-ball
    (R+FGSM, Tramèr et al. 2018); ``loss`` is ce, margin or dlr."""

    step_size: float | None = param(None, "step size", shown="ε", parse=parse_step)
    random_start: bool = param(False, "start from a uniform random point of the ε-ball (R+FGSM)")
    loss: str = param("ce", "objective: ce, margin or dlr")
    eot: int = eot_param()

    at_least_one = ("eot",)
    cost_formula = "eot"
    loop_fixed = {"steps": 1}

    def resolve(self, threat: ThreatModel) -> FGSMParams:
        return self.fill(step_size=threat.eps)


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: FGSMParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """Fast Gradient Sign Method (Goodfellow, Shlens & Szegedy, 2015, "Explaining and Harnessing
    Adversarial Examples").

    Threat model: L∞ (x' = x + ε·sign(∇ₓJ)) or L2 (the fast gradient method, x' = x + ε·∇ₓJ/‖∇ₓJ‖₂),
    then clipped to [0, 1]. Targeted: x' = x − ε·sign(∇ₓJ(x, t)). Shapes: x (N, C, H, W) in [0, 1],
    y (N,) int64.

    >>> x_adv = fgsm(model, x, y, threat=ThreatModel("inf", 8 / 255))
    """
    return loop_attack(
        FGSMParams, model, x, y, threat=threat, params=params, target=target, generator=generator, early_stop=early_stop
    )


SPEC = AttackSpec(
    name="fgsm",
    function=fgsm,
    params_type=FGSMParams,
    norms=("inf", "2"),
    kind="gradient",
    summary="one gradient step of size ε (sign of ∇ₓJ for L∞, normalised ∇ₓJ for L2)",
    reference="Goodfellow, Shlens & Szegedy, ICLR 2015",
)
