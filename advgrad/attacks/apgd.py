"""APGD: Auto-PGD, a step-size-free PGD with momentum (Croce & Hein, ICML 2020).

Written from the description in "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks" (Algorithm 1 and Section 3). Three registry entries share this
module: ``apgd-ce`` (cross-entropy), ``apgd-dlr`` (difference of logits ratio) and ``apgd-t``
(targeted DLR towards each of the most likely wrong classes in turn, an untargeted attack). For the
L1 threat model they run L1-APGD (:mod:`advgrad.attacks.apgd_l1`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from advgrad.attacks.apgd_l1 import apgd_l1_run
from advgrad.attacks.base import AttackParams, AttackSpec, eot_param, param, prepare_params
from advgrad.attacks.iterative import (
    RunOutput,
    fresh_generator,
    gradient_of,
    keep_best,
    random_start,
    steepest_direction,
)
from advgrad.core.errors import UsageError
from advgrad.core.geometry import L1, expand
from advgrad.core.gradient import frozen
from advgrad.core.losses import is_successful, margin, ranked_other_classes
from advgrad.core.threat import ThreatModel

# ρ of the paper: a checkpoint halves the step when at most this share of the steps since the
# previous checkpoint raised the objective (≤, as AutoAttack's code; the paper writes <).
RHO = 0.75


def checkpoints(steps: int) -> list[int]:
    """The iterations w_j = ⌈p_j·N⌉ at which APGD may halve its step size, for N = ``steps``.

    p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06) while p_j ≤ 1; computed in
    hundredths with integers, so 0.22·100 is 22 and not 23. Duplicates (small N) are merged.
    For N = 100: 0, 22, 41, 57, 70, 80, 87, 93, 99.
    """
    p = [0, 22]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - 3, 6)
        if nxt > 100:
            break
        p.append(nxt)
    out: list[int] = []
    for pj in p:
        w = -(-pj * steps // 100)  # ceil(pj·N/100) in integers
        if not out or w != out[-1]:
            out.append(w)
    return out


@dataclass
class APGDParams(AttackParams):
    """APGD has no step size to tune: it starts at 2ε and halves it at checkpoints when progress
    stalls. ``momentum`` is α of the paper."""

    steps: int = param(100, "iterations N")
    restarts: int = param(1, "random restarts; the best result per sample is kept")
    loss: str = param("ce", "objective: ce, margin or dlr")
    momentum: float = param(0.75, "α: weight of the new step against the previous one")
    random_start: bool = param(True, "start from a uniform random point of the ε-ball")
    eot: int = eot_param()

    at_least_one = ("steps", "restarts", "eot")
    cost_formula = "steps*restarts*eot"

    def validate(self) -> None:
        super().validate()
        if not 0 < self.momentum <= 1:
            raise UsageError(f"momentum α of APGD must be in (0, 1], got {self.momentum}")


@dataclass
class APGDDLRParams(APGDParams):
    """APGD with the DLR loss by default."""

    loss: str = param("dlr", "objective: dlr, ce or margin")


@dataclass
class APGDTParams(APGDParams):
    """APGD-T: targeted DLR towards each of the ``target_classes`` most likely wrong classes."""

    loss: str = param("dlr", "targeted objective: dlr, ce or margin")
    target_classes: int = param(9, "how many of the most likely wrong classes to target, in turn")

    at_least_one = ("steps", "restarts", "target_classes", "eot")
    cost_formula = "steps*restarts*target_classes*eot"


class _State:
    """APGD's per-sample state for the samples still running (compacted on early stop)."""

    names = (
        "index",
        "x",
        "y",
        "loss_target",
        "goal_target",
        "x_cur",
        "x_prev",
        "grad",
        "f_cur",
        "x_max",
        "f_max",
        "grad_max",
        "eta",
        "count",
        "f_max_ckpt",
        "halved_last",
    )

    def __init__(self, **tensors: Tensor | None):
        for name in self.names:
            setattr(self, name, tensors[name])

    def keep(self, mask: Tensor) -> None:
        for name in self.names:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value[mask])


def _apgd_run(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    params: APGDParams,
    loss_target: Tensor | None,
    goal_target: Tensor | None,
    generator: torch.Generator,
    early_stop: bool,
) -> RunOutput:
    """One start of Algorithm 1. Returns (x_adv, success, value): per sample the highest-objective
    iterate that reached the goal if one did (value +∞), else the highest-objective iterate."""
    n = x.shape[0]
    start = torch.zeros_like(x)
    if params.random_start:
        start = random_start(x.shape, threat, generator, x.dtype).to(x.device)
    x0 = threat.clip(x + start, x)
    grad, logits, f0 = gradient_of(model, x0, y, loss_target, params.loss, params.eot)
    # Iterates that reached the goal: the best one per sample (by objective) is the answer.
    found = is_successful(logits, y, goal_target)
    x_found, f_found = x0.clone(), torch.where(found, f0, torch.full_like(f0, float("-inf")))
    out = x0.clone()
    out_value = f0.clone()
    s = _State(
        index=torch.arange(n, device=x.device),
        x=x,
        y=y,
        loss_target=loss_target,
        goal_target=goal_target,
        x_cur=x0,
        x_prev=x0,
        grad=grad,
        f_cur=f0,
        x_max=x0,
        f_max=f0,
        grad_max=grad,
        eta=torch.full((n,), 2.0 * threat.eps, device=x.device, dtype=x.dtype),
        count=torch.zeros(n, device=x.device),
        f_max_ckpt=f0,
        # Condition 2 does not apply at the first checkpoint (as AutoAttack's code).
        halved_last=torch.ones(n, dtype=torch.bool, device=x.device),
    )
    if early_stop:
        s.keep(~found)
    marks = checkpoints(params.steps)
    period = {w: w - prev for prev, w in zip(marks[:-1], marks[1:], strict=True)}
    alpha = params.momentum
    for k in range(params.steps):
        if s.index.numel() == 0:
            break
        z = threat.clip(s.x_cur + expand(s.eta, s.x_cur) * steepest_direction(s.grad, threat), s.x)
        if k == 0:
            x_new = z
        else:
            x_new = threat.clip(s.x_cur + alpha * (z - s.x_cur) + (1 - alpha) * (s.x_cur - s.x_prev), s.x)
        grad, logits, f_new = gradient_of(model, x_new, s.y, s.loss_target, params.loss, params.eot)
        hit = is_successful(logits, s.y, s.goal_target)
        better_hit = hit & (f_new > f_found[s.index])
        x_found[s.index[better_hit]] = x_new[better_hit]
        f_found[s.index[better_hit]] = f_new[better_hit]
        found[s.index[hit]] = True
        s.count = s.count + (f_new > s.f_cur)
        improved = f_new > s.f_max
        s.x_max = torch.where(expand(improved, x_new), x_new, s.x_max)
        s.grad_max = torch.where(expand(improved, grad), grad, s.grad_max)
        s.f_max = torch.where(improved, f_new, s.f_max)
        s.x_prev, s.x_cur, s.grad, s.f_cur = s.x_cur, x_new, grad, f_new
        if (k + 1) in period:
            # Condition 1: too few of the steps since the last checkpoint raised J.
            # Condition 2: the step was not halved last time and the best J has not moved since.
            stalled = s.count <= RHO * period[k + 1]
            flat = ~s.halved_last & (s.f_max <= s.f_max_ckpt)
            halve = stalled | flat
            s.eta = torch.where(halve, s.eta / 2, s.eta)
            back = expand(halve, s.x_cur)
            # Restart from the best point; the momentum term restarts with it (x_prev = x_cur).
            s.x_cur = torch.where(back, s.x_max, s.x_cur)
            s.x_prev = torch.where(back, s.x_max, s.x_prev)
            s.grad = torch.where(back, s.grad_max, s.grad)
            s.f_cur = torch.where(halve, s.f_max, s.f_cur)
            s.count = torch.zeros_like(s.count)
            s.f_max_ckpt = s.f_max
            s.halved_last = halve
        if early_stop and bool(hit.any()):
            s.keep(~hit)
    out[s.index] = s.x_max
    out_value[s.index] = s.f_max
    out[found] = x_found[found]
    out_value[found] = float("inf")
    return out, found, out_value


def _run_start(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    params: APGDParams,
    loss_target: Tensor | None,
    goal_target: Tensor | None,
    generator: torch.Generator,
    early_stop: bool,
) -> RunOutput:
    """One start of APGD, or of L1-APGD for the L1 threat model."""
    if threat.geometry is L1:
        return apgd_l1_run(
            model,
            x,
            y,
            threat,
            params.steps,
            params.loss,
            params.random_start,
            loss_target,
            goal_target,
            generator,
            early_stop,
        )
    return _apgd_run(model, x, y, threat, params, loss_target, goal_target, generator, early_stop)


def apgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: APGDParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """Auto-PGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks").

    Threat model: L∞, L2 or L1 ball of radius ε intersected with [0, 1]. Update, with d = sign (L∞) or
    g/‖g‖₂ (L2) and P the projection onto the ball and the box:
    z_{k+1} = P(x_k + η_k·d(∇J(x_k))), x_{k+1} = P(x_k + α(z_{k+1} − x_k) + (1 − α)(x_k − x_{k−1}))
    (x_1 = z_1), η_0 = 2ε, α = 0.75. At the checkpoints w_j = ⌈p_j·N⌉ (p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)) the step is halved and the iterate restarts
    from the best point found so far if at most ρ = 0.75 of the steps since w_{j−1} raised J,
    or if the step was not halved at w_{j−1} and the best J has not changed since (not at w_1).
    L1 threat model: L1-APGD (Croce & Hein, ICML 2021, "Mind the box"), a sparse step with
    adaptive sparsity and the exact projection onto the L1 ball ∩ the box
    (:func:`advgrad.attacks.apgd_l1.apgd_l1_run`). J is CE
    (``apgd-ce``) or DLR (``apgd-dlr``); with a per-sample ``target`` it is −CE(·, t) or the
    targeted DLR and success means reaching t. Restarts keep the best result per sample.
    Shapes: x (N, C, H, W) in [0, 1], y (N,) int64.

    >>> x_adv = apgd(model, x, y, threat=ThreatModel("inf", 8 / 255), params=APGDDLRParams(steps=100))
    """
    params = prepare_params(params, APGDParams, threat)
    generator = generator if generator is not None else fresh_generator(x.device)
    x = x.detach()

    def run(_: int, idx: Tensor, score: bool) -> RunOutput:
        t = None if target is None else target[idx]
        return _run_start(model, x[idx], y[idx], threat, params, t, t, generator, early_stop)

    with frozen(model), torch.enable_grad():
        return keep_best(run, x.shape[0], params.restarts, only_unbroken=early_stop, device=x.device).x_adv


def apgd_targeted(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: APGDTParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """APGD-T (Croce & Hein, ICML 2020): APGD on the targeted DLR loss
    −(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2), run in turn towards each of the ``target_classes`` most
    likely wrong classes t (by the clean logits) on the samples no earlier target has fooled.

    An untargeted attack: success means misclassified. Per sample it returns the first target's
    adversarial example, or, where none succeeded, the iterate with the highest untargeted margin
    max_{j≠y} z_j − z_y. With an explicit ``target`` it is APGD on the targeted loss towards it.
    Threat model, update and schedule as :func:`apgd`. Needs at least 4 classes for DLR.

    >>> x_adv = apgd_targeted(model, x, y, threat=ThreatModel("inf", 0.1), params=APGDTParams(target_classes=3))
    """
    params = prepare_params(params, APGDTParams, threat)
    if target is not None:
        base = {f.name: getattr(params, f.name) for f in fields(APGDParams)}
        return apgd(
            model,
            x,
            y,
            threat=threat,
            params=APGDParams(**base),
            target=target,
            generator=generator,
            early_stop=early_stop,
        )
    x = x.detach()
    with frozen(model), torch.enable_grad():
        with torch.no_grad():
            logits = model(x).float()
        if logits.shape[1] < 2:
            raise UsageError("apgd-t needs a model with at least 2 classes")
        return apgd_towards(model, x, y, ranked_other_classes(logits, y), threat, params, generator, early_stop)


def apgd_towards(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    ranked: Tensor,
    threat: ThreatModel,
    params: APGDTParams,
    generator: torch.Generator | None,
    early_stop: bool,
) -> Tensor:
    """APGD-T's loop: towards the first ``params.target_classes`` classes of each row of ``ranked``
    (N, ≥ 1 wrong classes, best first) in turn, on the samples no earlier target has fooled; per
    sample the first adversarial example, else the iterate with the highest untargeted margin. The
    caller freezes the model and enables gradients."""
    generator = generator if generator is not None else fresh_generator(x.device)
    n_targets = min(params.target_classes, ranked.shape[1])

    def run(k: int, idx: Tensor, score: bool) -> RunOutput:
        t = ranked[idx, k % n_targets]
        adv, success, _ = _run_start(model, x[idx], y[idx], threat, params, t, None, generator, early_stop)
        with torch.no_grad():
            value = margin(model(adv).float(), y[idx])
        return adv, success, torch.where(success, torch.full_like(value, float("inf")), value)

    runs = n_targets * params.restarts
    return keep_best(run, x.shape[0], runs, only_unbroken=True, device=x.device).x_adv


_REFERENCE = "Croce & Hein, ICML 2020 (Reliable evaluation of adversarial robustness…)"

SPEC_CE = AttackSpec(
    name="apgd-ce",
    function=apgd,
    params_type=APGDParams,
    norms=("inf", "2", "1"),
    kind="gradient",
    summary="Auto-PGD on cross-entropy: momentum, step 2ε halved at checkpoints when progress stalls",
    reference=_REFERENCE,
    aliases=("apgd",),
)

SPEC_DLR = AttackSpec(
    name="apgd-dlr",
    function=apgd,
    params_type=APGDDLRParams,
    norms=("inf", "2", "1"),
    kind="gradient",
    summary="Auto-PGD on the DLR loss (invariant to shifting and rescaling the logits)",
    reference=_REFERENCE,
)

SPEC_T = AttackSpec(
    name="apgd-t",
    function=apgd_targeted,
    params_type=APGDTParams,
    norms=("inf", "2", "1"),
    kind="gradient",
    summary="Auto-PGD on the targeted DLR loss, towards each of the most likely wrong classes in turn",
    reference=_REFERENCE,
    aliases=("apgd-dlr-t",),
)
