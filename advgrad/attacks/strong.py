"""The ``strong`` preset: a cascade of diverse attacks in the spirit of AutoAttack."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.attacks.apgd import APGDParams, APGDTParams, apgd, apgd_targeted
from advgrad.attacks.base import AttackFunction, AttackParams, AttackSpec, eot_param, param, prepare_params
from advgrad.attacks.iterative import fresh_generator
from advgrad.attacks.square import SquareParams, square
from advgrad.core.gradient import frozen
from advgrad.core.losses import is_successful
from advgrad.core.threat import ThreatModel


@dataclass
class StrongParams(AttackParams):
    """Budgets of the three stages: APGD iterations and restarts (APGD-CE and APGD-T), the number
    of target classes of APGD-T, and Square's queries."""

    steps: int = param(100, "APGD iterations (APGD-CE and each target of APGD-T)")
    restarts: int = param(1, "APGD random restarts")
    target_classes: int = param(9, "APGD-T: how many of the most likely wrong classes to target")
    queries: int = param(5000, "Square: model evaluations per sample")
    eot: int = eot_param()

    at_least_one = ("steps", "restarts", "target_classes", "queries", "eot")
    # APGD-CE, APGD-T (each gradient averaged over eot passes), Square
    cost_formula = "steps*restarts*eot + steps*restarts*target_classes*eot + queries"


def strong(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: StrongParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """A worst-case cascade in the spirit of AutoAttack (Croce & Hein, ICML 2020): APGD-CE, then
    APGD-T (targeted DLR — targeted CE for models with fewer than 4 classes — towards each of
    the ``target_classes`` most likely wrong classes), then
    the Square attack, each run only on the samples that every earlier stage left classified
    correctly. Per sample it returns the first adversarial example a stage finds (each confirmed
    by a forward pass), else APGD-CE's point.

    Threat model: L∞ or L2 ball of radius ε intersected with [0, 1]. Two white-box attacks with
    different losses and a score-based one that never uses a gradient: a model that masks its
    gradients fools the first two but not the third. Targeted (``target`` given): APGD-CE and
    APGD-DLR towards the target, then Square towards it; success means reaching the target.
    Shapes: x (N, C, H, W) in [0, 1], y (N,) int64.

    >>> x_adv = strong(model, x, y, threat=ThreatModel("inf", 8 / 255))
    """
    params = prepare_params(params, StrongParams, threat)
    with frozen(model):
        with torch.no_grad():
            classes = model(x[:1]).shape[1] if x.shape[0] else 0
        targeted_loss = "dlr" if classes >= 4 else "ce"  # the targeted DLR needs 4 classes
        stages = [
            (apgd, APGDParams(steps=params.steps, restarts=params.restarts, loss="ce", eot=params.eot)),
            (
                apgd_targeted,
                APGDTParams(
                    steps=params.steps,
                    restarts=params.restarts,
                    loss=targeted_loss,
                    target_classes=params.target_classes,
                    eot=params.eot,
                ),
            ),
            (square, SquareParams(queries=params.queries)),
        ]
        return cascade(model, x, y, stages, threat=threat, target=target, generator=generator, early_stop=early_stop)


def cascade(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    stages: list[tuple[AttackFunction, AttackParams]],
    *,
    threat: ThreatModel,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """Run each ``(attack, params)`` of ``stages`` in turn on the samples that every earlier stage
    left classified correctly (or not at the target). Per sample it returns the first adversarial
    example a stage finds, confirmed by a forward pass, else the first stage's point. The caller
    freezes the model (:func:`advgrad.core.gradient.frozen`)."""
    generator = generator if generator is not None else fresh_generator(x.device)
    x = x.detach()
    result = x.clone()
    fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for k, (attack, stage_params) in enumerate(stages):
        idx = (~fooled).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        t = None if target is None else target[idx]
        adv = attack(
            model,
            x[idx],
            y[idx],
            threat=threat,
            params=stage_params,
            target=t,
            generator=generator,
            early_stop=early_stop,
        )
        adv = threat.clip(adv.to(x.dtype), x[idx])
        with torch.no_grad():
            ok = is_successful(model(adv).float(), y[idx], t)
        if k == 0:
            result[idx] = adv
        result[idx[ok]] = adv[ok]
        fooled[idx[ok]] = True
    return result


SPEC = AttackSpec(
    name="strong",
    function=strong,
    params_type=StrongParams,
    norms=("inf", "2"),
    kind="ensemble",
    summary="APGD-CE, then APGD-T, then Square on the samples still robust: the worst case per sample",
    reference="in the spirit of AutoAttack: Croce & Hein, ICML 2020",
)
