"""BIM / I-FGSM: the basic iterative method, FGSM repeated with small steps from x itself."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.attacks.base import AttackSpec, eot_param, param, parse_step
from advgrad.attacks.iterative import LoopParams, loop_attack
from advgrad.core.threat import ThreatModel


@dataclass
class BIMParams(LoopParams):
    """Iterations, step size and objective of BIM; it starts from x and has no restarts."""

    steps: int = param(10, "iterations")
    step_size: float | None = param(None, "step size α", shown="1.25·ε/steps", parse=parse_step)
    loss: str = param("ce", "objective: ce, margin or dlr")
    eot: int = eot_param()

    at_least_one = ("steps", "eot")
    cost_formula = "steps*eot"
    loop_fixed = {"random_start": False}

    def resolve(self, threat: ThreatModel) -> BIMParams:
        return self.fill(step_size=1.25 * threat.eps / max(self.steps, 1))


def bim(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: BIMParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """Basic Iterative Method, also called I-FGSM (Kurakin, Goodfellow & Bengio, 2017,
    "Adversarial examples in the physical world").

    Threat model: L∞ (or L2) ball of radius ε intersected with [0, 1]. Update, from x_0 = x:
    x_{t+1} = Clip_{x,ε}(x_t + α·sign(∇ₓJ(x_t))) (α·∇ₓJ/‖∇ₓJ‖₂ for L2). The paper takes α = 1/255
    and min(ε·255 + 4, 1.25·ε·255) steps, which travels about 1.25·ε; the default α = 1.25·ε/steps
    keeps that. It is PGD without a random start; targeted: descend CE towards the target.
    Shapes: x (N, C, H, W) in [0, 1], y (N,) int64.

    >>> x_adv = bim(model, x, y, threat=ThreatModel("inf", 8 / 255), params=BIMParams(steps=10))
    """
    return loop_attack(
        BIMParams, model, x, y, threat=threat, params=params, target=target, generator=generator, early_stop=early_stop
    )


SPEC = AttackSpec(
    name="bim",
    function=bim,
    params_type=BIMParams,
    norms=("inf", "2"),
    kind="gradient",
    summary="iterated FGSM from x: small steps, each clipped back into the ε-ball (I-FGSM)",
    reference="Kurakin, Goodfellow & Bengio, ICLR workshop 2017",
    aliases=("i-fgsm", "ifgsm"),
)
