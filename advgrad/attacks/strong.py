"""The ``strong`` preset: advgrad's recommended evaluation, AutoAttack's strength for a fraction of its passes.

Stages, each on the samples every earlier stage left classified correctly (and stopping on a sample
the moment it falls):

1. APGD-CE (Croce & Hein, ICML 2020).
2. APGD-T towards the ``target_classes`` wrong classes an almost-linear estimate ranks first
   (MALT: Melamed et al., 2024): per class k the distance to the linearised decision boundary
   (z_y − z_k) / ‖∇ₓ(z_y − z_k)‖_* (the dual norm of the threat model) at x; AutoAttack instead runs
   all of the 9 classes with the highest logits. One Jacobian (C − 1 backward passes) replaces
   7 of the 9 targets' 100 steps.
3. Square (Andriushchenko et al., ECCV 2020) with ``survivor_queries`` queries (1,000) on every sample
   the gradient stages left: a score-based attack catches what a gradient misleads, and a forward-only
   query costs far less than APGD's forward and backward step.
4. Square again, up to ``queries`` in all (5,000, AutoAttack's budget), only on the samples the
   gradient stages could not move (:func:`not_moved`: their margin max_{k≠y} z_k − z_y rose no more
   than random points of the ball raise it): where gradients are masked, shattered or zero a
   score-based attack is what finds the examples, and where they work its extra queries rarely find
   anything. This is the spirit of Adaptive AutoAttack's online discarding (A3: Liu et al., CVPR 2022):
   the budget goes to the samples whose evidence says they may still fall.

The cascade tells an observer (:func:`observe_stages`) where each stage begins and ends and how many
samples it fooled; the evaluation counts each stage's passes from that (docs/cost.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from advgrad.attacks.apgd import APGDParams, APGDTParams, apgd, apgd_targeted, apgd_towards
from advgrad.attacks.base import AttackFunction, AttackParams, AttackSpec, eot_param, param, prepare_params
from advgrad.attacks.iterative import fresh_generator
from advgrad.attacks.square import SquareParams, square
from advgrad.core.gradient import frozen
from advgrad.core.losses import is_successful, margin
from advgrad.core.threat import ThreatModel

# Square runs on a sample unless the gradient stages raised its margin max_{k≠y} z_k − z_y above the
# clean one by more than MOVED times what the best of RANDOM_POINTS random points of the ball did.
# Measured on digits (docs/cost.md): where gradients work every robust sample's ratio was at least
# 2.1 (median about 5), at ε from 0.005 to 0.1; where they are masked (zero) at most 1.5.
MOVED = 2.0
RANDOM_POINTS = 8


class StageObserver(Protocol):
    """Hears each stage of a cascade begin and end (with the samples it fooled)."""

    def begin(self, name: str) -> None: ...

    def end(self, name: str, fooled: int) -> None: ...


_OBSERVER: ContextVar[StageObserver | None] = ContextVar("advgrad_stage_observer", default=None)


@contextmanager
def observe_stages(observer: StageObserver) -> Iterator[StageObserver]:
    """Inside the block, every cascade tells ``observer`` about its stages."""
    token = _OBSERVER.set(observer)
    try:
        yield observer
    finally:
        _OBSERVER.reset(token)


# A stage's gate: from the model, the samples still robust (x, y, target or None), the best margin
# each reached in the earlier stages, the threat model and the generator, which of them the stage runs on.
Gate = Callable[[nn.Module, Tensor, Tensor, Tensor | None, Tensor, ThreatModel, torch.Generator], Tensor]


@dataclass(frozen=True)
class CascadeStage:
    """One stage of a cascade: its name in reports, the attack, its parameters and an optional gate."""

    name: str
    attack: AttackFunction
    params: AttackParams
    gate: Gate | None = None


@dataclass
class StrongParams(AttackParams):
    """Budgets of the three stages: APGD iterations and restarts (APGD-CE and each target of
    APGD-T), the number of targets of APGD-T (ranked by MALT's estimate), and Square's queries on the
    samples the gradient stages could not move."""

    steps: int = param(100, "APGD iterations (APGD-CE and each target of APGD-T)")
    restarts: int = param(1, "APGD random restarts")
    target_classes: int = param(
        2, "APGD-T: how many wrong classes to target, those nearest by an almost-linear estimate (MALT)"
    )
    survivor_queries: int = param(1000, "Square: model evaluations per sample the gradient stages did not fool")
    queries: int = param(
        5000, "Square: model evaluations in all per sample the gradient stages could not move (with the above)"
    )
    eot: int = eot_param()

    at_least_one = ("steps", "restarts", "target_classes", "survivor_queries", "queries", "eot")
    # APGD-CE, MALT's Jacobian (classes − 1 backward passes), APGD-T, Square (eot passes per gradient)
    # (an upper bound: a sample Square runs on twice spends `queries` in all)
    cost_formula = "steps*restarts*eot + classes + steps*restarts*target_classes*eot + survivor_queries + queries"


def malt_ranking(model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel) -> Tensor:
    """The wrong classes of each sample ranked by MALT's almost-linear distance to the decision
    boundary between y and k, (z_y − z_k) / ‖∇ₓ(z_y − z_k)‖_* at x (nearest first): (N, C − 1).
    One forward pass and C − 1 backward passes. Non-finite estimates rank last."""
    with torch.enable_grad():
        xv = x.detach().clone().requires_grad_(True)
        logits = model(xv)
        classes = logits.shape[1]
        own = logits.gather(1, y[:, None]).squeeze(1)
        distance = torch.full((x.shape[0], classes), float("inf"), device=x.device)
        for k in range(classes):
            gap = own - logits[:, k]
            (grad,) = torch.autograd.grad(gap.sum(), xv, retain_graph=k < classes - 1)
            value = gap.detach().float() / threat.geometry.dual_norm(grad.flatten(1)).float().clamp_min(1e-12)
            distance[:, k] = torch.where(torch.isfinite(value), value, torch.full_like(value, float("inf")))
    distance.scatter_(1, y[:, None], float("nan"))  # the true class is no target
    order = torch.nan_to_num(distance, nan=float("inf")).argsort(dim=1, stable=True)
    keep = order != y[:, None]
    return order[keep].reshape(x.shape[0], classes - 1)


def malt_targeted(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: APGDTParams,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """APGD-T towards the ``params.target_classes`` classes :func:`malt_ranking` ranks nearest
    (towards ``target`` when given)."""
    if target is not None or x.shape[0] == 0:
        return apgd_targeted(
            model, x, y, threat=threat, params=params, target=target, generator=generator, early_stop=early_stop
        )
    ranked = malt_ranking(model, x, y, threat)
    with torch.enable_grad():
        return apgd_towards(model, x, y, ranked, threat, params, generator, early_stop)


def not_moved(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    target: Tensor | None,
    best: Tensor,
    threat: ThreatModel,
    generator: torch.Generator,
) -> Tensor:
    """The samples the gradient stages could not move: whose ``best`` margin rose above the clean one by
    at most :data:`MOVED` times as much as the best of :data:`RANDOM_POINTS` uniform random points of
    the ball did (1 + RANDOM_POINTS forward passes per sample)."""
    with torch.no_grad():
        clean = margin(model(x).float(), y, target)
        chance = torch.full_like(clean, float("-inf"))
        for _ in range(RANDOM_POINTS):
            start = threat.geometry.random_point(x.shape, threat.eps, generator, x.dtype).to(x.device)
            chance = torch.maximum(chance, margin(model(threat.clip(x + start, x)).float(), y, target))
    progress = best - clean
    return ~((progress > 0) & (progress > MOVED * (chance - clean).clamp_min(0)))


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
    """advgrad's recommended evaluation: APGD-CE, then APGD-T towards the classes MALT's estimate ranks
    nearest, then Square on the samples the gradient stages could not move; each stage only on the
    samples every earlier one left classified correctly, each stopping on a sample once it falls.
    Per sample it returns the first adversarial example a stage finds (each confirmed by a forward
    pass), else APGD-CE's point.

    Threat model: L∞ or L2 ball of radius ε intersected with [0, 1]. Two white-box attacks with
    different losses and, where the gradient does not help, a score-based one that never uses it: a
    model that masks its gradients fools the first two but not the third. With fewer than 4 classes
    APGD-T uses the targeted cross-entropy (DLR needs 4). Targeted (``target`` given): every stage
    runs towards the target; success means reaching it. Shapes: x (N, C, H, W) in [0, 1], y (N,) int64.

    >>> x_adv = strong(model, x, y, threat=ThreatModel("inf", 8 / 255))
    """
    params = prepare_params(params, StrongParams, threat)
    with frozen(model):
        with torch.no_grad():
            classes = model(x[:1]).shape[1] if x.shape[0] else 0
        stages = [
            CascadeStage(
                "apgd-ce", apgd, APGDParams(steps=params.steps, restarts=params.restarts, loss="ce", eot=params.eot)
            ),
            CascadeStage(
                "apgd-t-malt",
                malt_targeted,
                APGDTParams(
                    steps=params.steps,
                    restarts=params.restarts,
                    loss="dlr" if classes >= 4 else "ce",  # the targeted DLR needs 4 classes
                    target_classes=params.target_classes,
                    eot=params.eot,
                ),
            ),
            CascadeStage("square", square, SquareParams(queries=params.survivor_queries)),
        ]
        if params.queries > params.survivor_queries:  # the rest of the queries where gradients did not help
            more = SquareParams(queries=params.queries - params.survivor_queries)
            stages.append(CascadeStage("square-unmoved", square, more, gate=not_moved))
        # every stage stops on a sample once it is fooled: the same samples end up fooled, sooner
        return cascade(model, x, y, stages, threat=threat, target=target, generator=generator, early_stop=True)


def cascade(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    stages: list[tuple[AttackFunction, AttackParams]] | list[CascadeStage],
    *,
    threat: ThreatModel,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """Run each stage (an ``(attack, params)`` pair or a :class:`CascadeStage`) in turn on the samples
    that every earlier stage left classified correctly (or not at the target), and that the stage's
    gate lets through. Per sample it returns the first adversarial example a stage finds, confirmed
    by a forward pass, else the first stage's point. The caller freezes the model
    (:func:`advgrad.core.gradient.frozen`); an observer (:func:`observe_stages`) hears each stage."""
    generator = generator if generator is not None else fresh_generator(x.device)
    observer = _OBSERVER.get()
    steps = [s if isinstance(s, CascadeStage) else CascadeStage(s[0].__name__, *s) for s in stages]
    x = x.detach()
    result = x.clone()
    fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    best = torch.full((x.shape[0],), float("-inf"), device=x.device)
    for k, stage in enumerate(steps):
        idx = (~fooled).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        if observer is not None:
            observer.begin(stage.name)
        if stage.gate is not None:
            t = None if target is None else target[idx]
            idx = idx[stage.gate(model, x[idx], y[idx], t, best[idx], threat, generator)]
        ok = torch.zeros(0, dtype=torch.bool, device=x.device)
        if idx.numel():
            t = None if target is None else target[idx]
            adv = stage.attack(
                model,
                x[idx],
                y[idx],
                threat=threat,
                params=stage.params,
                target=t,
                generator=generator,
                early_stop=early_stop,
            )
            adv = threat.clip(adv.to(x.dtype), x[idx])
            with torch.no_grad():
                out = model(adv).float()
            ok = is_successful(out, y[idx], t)
            best[idx] = torch.maximum(best[idx], margin(out, y[idx], t))
            if k == 0:
                result[idx] = adv
            result[idx[ok]] = adv[ok]
            fooled[idx[ok]] = True
        if observer is not None:
            observer.end(stage.name, int(ok.sum()))
    return result


SPEC = AttackSpec(
    name="strong",
    function=strong,
    params_type=StrongParams,
    norms=("inf", "2"),
    kind="ensemble",
    summary="APGD-CE, APGD-T towards the MALT-nearest classes, Square where gradients could not move a sample",
    reference="Croce & Hein, ICML 2020 (APGD); Melamed et al., 2024 (MALT); Liu et al., CVPR 2022 (A3)",
    sweep_once=True,
)
