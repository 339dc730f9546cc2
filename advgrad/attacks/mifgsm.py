"""MI-FGSM: iterative FGSM whose direction accumulates a momentum of L1-normalised gradients."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.attacks.base import AttackSpec, eot_param, param, parse_step
from advgrad.attacks.iterative import LoopParams, loop_attack
from advgrad.core.threat import ThreatModel


@dataclass
class MIFGSMParams(LoopParams):
    """Iterations, step size, decay factor μ of the momentum, and objective."""

    steps: int = param(10, "iterations")
    step_size: float | None = param(None, "step size α", shown="ε/steps", parse=parse_step)
    momentum: float = param(1.0, "decay factor μ of the accumulated gradient")
    loss: str = param("ce", "objective: ce, margin or dlr")
    eot: int = eot_param()

    at_least_one = ("steps", "eot")
    cost_formula = "steps*eot"
    loop_fixed = {"random_start": False}

    def resolve(self, threat: ThreatModel) -> MIFGSMParams:
        return self.fill(step_size=threat.eps / max(self.steps, 1))


def mifgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: MIFGSMParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """Momentum Iterative FGSM (Dong, Liao, Pang, Su, Zhu, Hu & Li, CVPR 2018, "Boosting Adversarial
    Attacks with Momentum").

    Threat model: L∞ or L2 ball of radius ε intersected with [0, 1]. Update, from x_0 = x and g_0 = 0:
    g_{t+1} = μ·g_t + ∇ₓJ(x_t)/‖∇ₓJ(x_t)‖₁, x_{t+1} = Clip_{x,ε}(x_t + α·sign(g_{t+1}))
    (α·g/‖g‖₂ for L2), with α = ε/T for T steps as in the paper. Targeted: descend CE towards the
    target. Shapes: x (N, C, H, W) in [0, 1], y (N,) int64.

    >>> x_adv = mifgsm(model, x, y, threat=ThreatModel("inf", 8 / 255), params=MIFGSMParams(momentum=1.0))
    """
    return loop_attack(
        MIFGSMParams,
        model,
        x,
        y,
        threat=threat,
        params=params,
        target=target,
        generator=generator,
        early_stop=early_stop,
    )


SPEC = AttackSpec(
    name="mifgsm",
    function=mifgsm,
    params_type=MIFGSMParams,
    norms=("inf", "2"),
    kind="gradient",
    summary="iterative FGSM along a momentum (decay μ) of L1-normalised gradients",
    reference="Dong, Liao, Pang, Su, Zhu, Hu & Li, CVPR 2018",
    aliases=("mi-fgsm",),
)
