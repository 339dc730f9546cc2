"""The ``autoattack`` preset: AutoAttack's ``standard`` version, stage by stage.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks" (ICML 2020). The standard version for L∞ and L2 runs APGD-CE, APGD-T,
FAB-T and Square, in that order, each only on the samples every earlier stage left classified
correctly, with the budgets of the reference implementation (:data:`VERSIONS`).

A version is one row of :data:`VERSIONS`: its stages in order, each an attack function and the
parameters it runs with, computed from the preset's (resolved) parameters. A new version (for
example ``rand``, APGD-CE and APGD-DLR with expectation over transformation) is one more row; a
registry name that runs it by default is a subclass of :class:`AutoAttackParams` whose ``version``
field defaults to the new row, and one :func:`autoattack_spec` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from advgrad.attacks.apgd import APGDParams, APGDTParams, apgd, apgd_targeted
from advgrad.attacks.base import AttackFunction, AttackParams, AttackSpec, eot_param, param, prepare_params
from advgrad.attacks.fab import FABTParams, fab_targeted_search
from advgrad.attacks.square import SquareParams, square
from advgrad.attacks.strong import CascadeStage, cascade
from advgrad.core.errors import UsageError
from advgrad.core.geometry import expand
from advgrad.core.gradient import frozen
from advgrad.core.threat import ThreatModel

REFERENCE = (
    "Croce & Hein, ICML 2020 (Reliable evaluation of adversarial robustness with an ensemble of diverse "
    "parameter-free attacks)"
)


@dataclass
class AutoAttackParams(AttackParams):
    """Which version of AutoAttack runs, and its budgets (None: the version's own)."""

    version: str = param("standard", "AutoAttack version (standard: APGD-CE, APGD-T, FAB-T, Square)", flag="aa-version")
    steps: int | None = param(None, "iterations of APGD-CE, of APGD-T and FAB-T per target", shown="100")
    target_classes: int | None = param(
        None, "APGD-T and FAB-T: how many of the most likely wrong classes to target", shown="9"
    )
    queries: int | None = param(None, "Square: model evaluations per sample", shown="5000")
    eot: int = eot_param()

    at_least_one = ("steps", "target_classes", "queries", "eot")
    # APGD-CE, APGD-T (eot passes per step), FAB-T (eot gradients and a check per step), Square
    cost_formula = "steps*eot + steps*target_classes*eot + steps*target_classes*(eot + 1) + queries"

    def resolve(self, threat: ThreatModel) -> AutoAttackParams:
        return self.fill(**version_of(self.version).budget)

    def validate(self) -> None:
        super().validate()
        version_of(self.version)

    def passes_per_sample(self, classes: int = 10) -> int:
        if None in (self.steps, self.target_classes, self.queries):
            return self.fill(**version_of(self.version).budget).passes_per_sample(classes)
        return super().passes_per_sample(classes)

    def to_dict(self) -> dict[str, Any]:
        """The fields, the paper to cite, the stages in order, and ``as_published``: whether every
        budget is the version's own (a number to cite as "AutoAttack, <version>" needs it true)."""
        out = super().to_dict()
        version = VERSIONS.get(self.version)
        out["reference"] = REFERENCE
        if version is not None:
            out["stages"] = [stage.name for stage in version.stages]
            out["as_published"] = self.eot == 1 and all(
                getattr(self, k) in (None, v) for k, v in version.budget.items()
            )
        return out


@dataclass(frozen=True)
class Stage:
    """One attack of a version: AutoAttack's name for it, the function, its parameters from the
    preset's resolved parameters and the number of classes, and whether it is a minimal attack
    whose examples count only within ε (FAB: AutoAttack drops those beyond ε)."""

    name: str
    attack: AttackFunction
    params: Callable[[AutoAttackParams, int], AttackParams]
    minimal: bool = False


@dataclass(frozen=True)
class Version:
    """A version of AutoAttack: its stages in order and its default budgets."""

    stages: tuple[Stage, ...]
    budget: dict[str, int]


def _targeted_loss(classes: int) -> str:
    """The targeted DLR needs 4 classes; with fewer, APGD-T runs on the targeted cross-entropy."""
    return "dlr" if classes >= 4 else "ce"


STANDARD = Version(
    stages=(
        Stage("apgd-ce", apgd, lambda p, c: APGDParams(steps=p.steps, restarts=1, loss="ce", momentum=0.75, eot=p.eot)),
        Stage(
            "apgd-t",
            apgd_targeted,
            lambda p, c: APGDTParams(
                steps=p.steps,
                restarts=1,
                loss=_targeted_loss(c),
                momentum=0.75,
                target_classes=p.target_classes,
                eot=p.eot,
            ),
        ),
        Stage(
            "fab-t",
            fab_targeted_search,
            lambda p, c: FABTParams(
                steps=p.steps,
                restarts=1,
                alpha_max=0.1,
                eta=1.05,
                beta=0.9,
                target_classes=p.target_classes,
                eot=p.eot,
            ),
            minimal=True,
        ),
        Stage("square", square, lambda p, c: SquareParams(queries=p.queries, p_init=0.8, rescale_schedule=False)),
    ),
    budget={"steps": 100, "target_classes": 9, "queries": 5000},
)

# Version name → stages and budgets. Add a row for a new version.
VERSIONS: dict[str, Version] = {"standard": STANDARD}


def version_of(name: str) -> Version:
    try:
        return VERSIONS[name]
    except KeyError:
        raise UsageError(
            f"unknown AutoAttack `version` {name!r}: use one of {', '.join(VERSIONS)}", params="version"
        ) from None


def _stage_function(stage: Stage) -> AttackFunction:
    """The attack a stage runs in the cascade: a minimal stage's examples beyond ε are replaced by x
    (AutoAttack counts FAB-T's examples only within ε; they are dropped, not projected)."""
    if not stage.minimal:
        return stage.attack

    def within_eps(model, x, y, *, threat, params, target, generator, early_stop):
        adv, norm = stage.attack(
            model, x, y, threat=threat, params=params, target=target, generator=generator, early_stop=early_stop
        )
        return torch.where(expand(norm <= threat.eps, x), adv, x)

    return within_eps


def autoattack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: AutoAttackParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """AutoAttack (Croce & Hein, ICML 2020), ``standard`` version: APGD-CE (100 steps, 1 restart),
    APGD-T (targeted DLR towards each of the 9 most likely wrong classes, 100 steps each), FAB-T
    (9 targets, 100 steps each, α_max 0.1, η 1.05, β 0.9; an example counts only when its norm is
    ≤ ε) and Square (5000 queries, p_init 0.8, p halved at the fixed iterations 10, 50, 200, …),
    each on the samples still classified correctly after the earlier stages. Per sample it returns
    the first adversarial example a stage finds (each confirmed by a forward pass), else APGD-CE's
    point: the worst case over the four attacks, as AutoAttack's robust accuracy.

    Threat model: L∞ or L2 ball of radius ε intersected with [0, 1]. Every stage stops on a sample
    once it is fooled (AutoAttack's stages run on, which changes nothing about which samples are
    fooled). With fewer than 4 classes APGD-T uses the targeted cross-entropy (DLR needs 4).
    Targeted (``target`` given): every stage runs towards the target; success means reaching it.
    Shapes: x (N, C, H, W) in [0, 1], y (N,) int64.

    >>> x_adv = autoattack(model, x, y, threat=ThreatModel("inf", 8 / 255))
    """
    params = prepare_params(params, AutoAttackParams, threat)
    version = version_of(params.version)
    with frozen(model):
        with torch.no_grad():
            classes = model(x[:1]).shape[1] if x.shape[0] else 0
        stages = [
            CascadeStage(stage.name, _stage_function(stage), stage.params(params, classes)) for stage in version.stages
        ]
        # every stage stops on a sample once it is fooled: the same samples end up fooled, sooner
        return cascade(model, x, y, stages, threat=threat, target=target, generator=generator, early_stop=True)


def autoattack_spec(name: str, params_type: type[AutoAttackParams], summary: str) -> AttackSpec:
    """A registry entry for a version: ``params_type`` is :class:`AutoAttackParams` or a subclass
    whose ``version`` field defaults to another row of :data:`VERSIONS`."""
    return AttackSpec(
        name=name,
        function=autoattack,
        params_type=params_type,
        norms=("inf", "2"),
        kind="ensemble",
        summary=summary,
        reference=f"{REFERENCE}, {params_type().version} version",
    )


SPEC = autoattack_spec(
    "autoattack",
    AutoAttackParams,
    "AutoAttack, standard version: APGD-CE, APGD-T, FAB-T, Square on the samples still robust",
)
