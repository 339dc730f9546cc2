"""PGD: projected gradient descent on the loss, the standard first-order adversary."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.attacks.base import AttackSpec, eot_param, param, parse_step
from advgrad.attacks.iterative import LoopParams, loop_attack
from advgrad.core.threat import ThreatModel


@dataclass
class PGDParams(LoopParams):
    """``steps`` gradient steps of size ``step_size`` (default 2.5·ε/steps, so the iterates can
    cross the whole ball, as in Madry et al.), from a uniform random start in the ball
    (``random_start``), repeated ``restarts`` times keeping the best result per sample."""

    steps: int = param(20, "iterations")
    step_size: float | None = param(None, "step size α", shown="2.5·ε/steps", parse=parse_step)
    random_start: bool = param(True, "start from a uniform random point of the ε-ball")
    restarts: int = param(1, "random restarts; the best result per sample is kept")
    loss: str = param("ce", "objective: ce, margin or dlr")
    eot: int = eot_param()

    at_least_one = ("steps", "restarts", "eot")
    cost_formula = "steps*restarts*eot"

    def resolve(self, threat: ThreatModel) -> PGDParams:
        return self.fill(step_size=2.5 * threat.eps / max(self.steps, 1))


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: PGDParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """Projected Gradient Descent (Madry et al., 2018, "Towards Deep Learning Models Resistant to
    Adversarial Attacks").

    Threat model: L∞, L2 or L1 ball of radius ε intersected with [0, 1]. Update:
    x_{t+1} = Π(x_t + α·d(∇ₓJ(x_t))) with d = sign (L∞), g/‖g‖₂ (L2) or, for L1, the sign of g
    spread over its top 1% coordinates that the box lets move (Tramèr & Boneh 2019); Π is the
    projection onto the ball and the box (exact for L1 and L∞: :func:`advgrad.core.threat.project_l1_box`),
    x_0 uniform in the ball (or x). Targeted at t: J = −CE(f(x), t). With ``restarts`` > 1 the best
    of several random starts is kept per sample.
    Shapes: x (N, C, H, W) in [0, 1], y (N,) int64.

    >>> params = PGDParams(steps=40, restarts=5)
    >>> x_adv = pgd(model, x, y, threat=ThreatModel("2", 0.5), params=params)
    """
    return loop_attack(
        PGDParams, model, x, y, threat=threat, params=params, target=target, generator=generator, early_stop=early_stop
    )


SPEC = AttackSpec(
    name="pgd",
    function=pgd,
    params_type=PGDParams,
    norms=("inf", "2", "1"),
    kind="gradient",
    summary="projected gradient ascent on the loss from a random start, with restarts",
    reference="Madry, Makelov, Schmidt, Tsipras & Vladu, ICLR 2018",
)
