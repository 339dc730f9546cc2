"""``autoattack-rand``: the version of AutoAttack meant for randomized defences.

Croce & Hein (ICML 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks") give AutoAttack a ``rand`` version for models whose output is
random: APGD-CE, then APGD-DLR on the samples still classified correctly, each with one restart of
100 iterations and every gradient averaged over 20 stochastic passes (expectation over
transformation, Athalye, Carlini & Wagner, ICML 2018). No score-based or targeted stage: on a
randomized model their single-pass decisions are as noisy as the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.attacks.apgd import APGDDLRParams, APGDParams, apgd
from advgrad.attacks.base import EOT_HELP, AttackParams, AttackSpec, param, prepare_params
from advgrad.attacks.strong import CascadeStage, cascade
from advgrad.core.gradient import frozen
from advgrad.core.threat import ThreatModel

VERSION = "rand"


@dataclass
class AutoAttackRandParams(AttackParams):
    """Budgets of both APGD stages: iterations, restarts and the EOT passes per gradient (AutoAttack's
    ``rand`` version: 100, 1 and 20)."""

    steps: int = param(100, "APGD iterations (APGD-CE and APGD-DLR)")
    restarts: int = param(1, "APGD random restarts")
    eot: int = param(20, EOT_HELP)

    at_least_one = ("steps", "restarts", "eot")
    cost_formula = "2*steps*restarts*eot"  # APGD-CE and APGD-DLR
    constants = {"version": VERSION}  # every report names the AutoAttack version


def autoattack_rand(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: AutoAttackRandParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """AutoAttack, version ``rand`` (Croce & Hein, ICML 2020): APGD-CE, then APGD-DLR on the
    samples APGD-CE left classified correctly (a forward pass decides), each gradient the mean over
    ``eot`` stochastic passes. Per sample it returns the first adversarial example found, else
    APGD-CE's point.

    Threat model: L∞ or L2 ball of radius ε intersected with [0, 1]. DLR needs 3 classes: with fewer
    the second stage uses the margin loss. Targeted (``target`` given): both stages descend
    towards the target (−CE, then targeted DLR, or the margin below 4 classes).
    Shapes: x (N, C, H, W) in [0, 1], y (N,) int64.

    >>> x_adv = autoattack_rand(noisy_model, x, y, threat=ThreatModel("inf", 8 / 255))
    """
    params = prepare_params(params, AutoAttackRandParams, threat)
    with frozen(model):
        with torch.no_grad():
            classes = model(x[:1]).shape[1] if x.shape[0] else 0
        dlr_needs = 3 if target is None else 4
        second_loss = "dlr" if classes >= dlr_needs else "margin"
        budget = {"steps": params.steps, "restarts": params.restarts, "eot": params.eot}
        stages = [
            CascadeStage("apgd-ce", apgd, APGDParams(loss="ce", **budget)),
            CascadeStage("apgd-dlr", apgd, APGDDLRParams(loss=second_loss, **budget)),
        ]
        return cascade(model, x, y, stages, threat=threat, target=target, generator=generator, early_stop=early_stop)


SPEC = AttackSpec(
    name="autoattack-rand",
    function=autoattack_rand,
    params_type=AutoAttackRandParams,
    norms=("inf", "2"),
    kind="ensemble",
    summary="AutoAttack's rand version for randomized models: APGD-CE, then APGD-DLR, each with EOT over 20 passes",
    reference="Croce & Hein, ICML 2020 (version rand); EOT: Athalye, Carlini & Wagner, ICML 2018",
)
