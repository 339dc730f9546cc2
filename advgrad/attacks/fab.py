"""FAB: the fast adaptive boundary attack, a minimal-perturbation attack for L∞, L2 and L1.

Written from Croce & Hein, "Minimally distorted adversarial examples with a fast adaptive boundary
attack" (ICML 2020), Algorithm 1 and Section 3. Two registry entries share this module: ``fab``
(untargeted: the nearest linearised boundary among all classes) and ``fab-t`` (towards each of the
most likely wrong classes in turn, AutoAttack's FAB-T). The projections onto a hyperplane inside
the box are in :mod:`advgrad.attacks.hyperplane`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.attacks.base import AttackParams, AttackSpec, eot_param, param, prepare_params
from advgrad.attacks.hyperplane import PROJECTIONS, project_onto_hyperplane
from advgrad.attacks.iterative import fresh_generator
from advgrad.core.errors import UsageError
from advgrad.core.geometry import L1, L2, LINF, NormGeometry, expand
from advgrad.core.gradient import expectation, frozen
from advgrad.core.losses import finite_rows, ranked_other_classes
from advgrad.core.threat import ThreatModel

# Radius scale of the random starts when the threat model has no finite ε (the unbounded search of
# ``advgrad eval``): AutoAttack's FAB defaults for [0, 1] inputs.
_START_EPS = {LINF: 0.3, L2: 1.0, L1: 5.0}
# Norms below this count as zero when FAB weighs its two projections.
_MIN_NORM = 1e-8


@dataclass
class FABParams(AttackParams):
    """FAB's iterations, restarts and step rules (the paper's and AutoAttack's defaults)."""

    steps: int = param(100, "iterations per restart (and per target class for fab-t)")
    restarts: int = param(1, "starts: the first from x, the others random at distance start_eps/2")
    alpha_max: float = param(0.1, "α_max: largest weight of the step from the original point x")
    eta: float = param(1.05, "η ≥ 1: overshoot of each projection onto the linearised boundary")
    beta: float = param(0.9, "β: after an adversarial iterate, move back to x + β·(x_adv − x)")
    start_eps: float | None = param(
        None,
        "radius scale ε of the random restarts (they start at distance ε/2)",
        shown="ε of the threat model; unbounded: 0.3 L∞, 1 L2, 5 L1",
    )

    eot: int = eot_param()

    at_least_one = ("steps", "restarts", "eot")
    # per step eot forward passes with a gradient per class, then one forward pass to check the iterate
    cost_formula = "steps*restarts*(classes*eot + 1)"

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.alpha_max <= 1:
            raise UsageError(f"`alpha_max` must be in [0, 1], got {self.alpha_max}", params="alpha_max")
        if self.eta < 1:
            raise UsageError(f"`eta` must be ≥ 1, got {self.eta}", params="eta")
        if not 0 < self.beta <= 1:
            raise UsageError(f"`beta` must be in (0, 1], got {self.beta}", params="beta")


@dataclass
class FABTParams(FABParams):
    """FAB-T: FAB towards each of the ``target_classes`` most likely wrong classes in turn."""

    target_classes: int = param(9, "how many of the most likely wrong classes to target, in turn")

    at_least_one = ("steps", "restarts", "target_classes", "eot")
    # per step eot forward passes with one gradient, then one forward pass to check the iterate
    cost_formula = "steps*restarts*target_classes*(eot + 1)"


def _bounded(threat: ThreatModel, x: Tensor) -> bool:
    """Whether ε is smaller than the box's diameter (else the search is unbounded: find_minimal)."""
    diameter = threat.geometry.box_diameter(x[0].numel(), threat.upper - threat.lower)
    return diameter is None or threat.eps < diameter


def _geometry(threat: ThreatModel) -> NormGeometry:
    if threat.geometry not in PROJECTIONS:
        raise UsageError(f"fab does not support the {threat.geometry.label} threat model")
    return threat.geometry


def _linearised(
    model: nn.Module,
    x1: Tensor,
    y: Tensor,
    up: Tensor | None,
    geometry: NormGeometry,
    runner_up: bool = False,
    eot: int = 1,
) -> tuple[Tensor, Tensor]:
    """The nearest linearised boundary at x1: (f, ∇f) of the chosen f = z_k − z_y.

    Untargeted (``up`` None): every k ≠ y, one gradient per class, and k minimises the distance
    |f_k|/‖∇f_k‖_* to its linearised boundary (‖·‖_* the dual norm). Targeted: f = z_up − z_y, or
    with ``runner_up`` f = z_up − z_c, c the most likely class other than ``up`` at x1. With
    ``eot`` > 1 the values and gradients are means over that many passes (a randomized model's
    expected boundary, :func:`advgrad.core.gradient.expectation`)."""
    n = x1.shape[0]
    rows = torch.arange(n, device=x1.device)

    def once() -> tuple[Tensor, Tensor]:
        x_var = x1.detach().requires_grad_(True)
        logits = model(x_var).float()
        if up is not None:
            down = ranked_other_classes(logits.detach(), up)[:, 0] if runner_up else y
            f = logits[rows, up] - logits[rows, down]
            (g,) = torch.autograd.grad(f.sum(), x_var)
            return f.detach(), torch.nan_to_num(g)
        grads = []
        for k in range(logits.shape[1]):
            (g,) = torch.autograd.grad(logits[:, k].sum(), x_var, retain_graph=k < logits.shape[1] - 1)
            grads.append(g)
        return logits.detach(), torch.stack(grads, dim=1)  # (N, C), (N, C, ...)

    if up is not None:
        return expectation(eot, once)
    z, g_all = expectation(eot, once)
    classes = z.shape[1]
    f_all = z - z[rows, y][:, None]
    g_all = torch.nan_to_num(g_all - g_all[rows, y][:, None])
    dual = geometry.dual_norm(g_all.reshape(n * classes, *x1.shape[1:])).reshape(n, classes)
    distance = f_all.abs() / (dual + 1e-12)
    distance[rows, y] = float("inf")
    distance = torch.nan_to_num(distance, nan=float("inf"))
    k = distance.argmin(dim=1)
    return f_all[rows, k], g_all[rows, k]


def _random_start(x: Tensor, radius: float, threat: ThreatModel, generator: torch.Generator) -> Tensor:
    """x moved to a random point at distance ``radius`` (a random direction of the norm's unit
    sphere), clamped into the box."""
    d = threat.geometry.random_point(x.shape, 1.0, generator, x.dtype).to(x.device)
    d = d / expand(threat.geometry.norm(d).clamp_min(1e-12), d)
    return (x + radius * d).clamp(threat.lower, threat.upper)


def _fab_run(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    params: FABParams,
    up: Tensor | None,
    goal: Tensor | None,
    start: Tensor,
    stop_within: float | None,
    runner_up: bool = False,
) -> tuple[Tensor, Tensor]:
    """One start of FAB from ``start``. Returns, per sample, the smallest adversarial iterate found
    and its norm (+∞ and x where none was). ``up`` selects the targeted boundary z_up − z_y;
    ``goal`` is what success means (None: misclassified, else classified as ``goal``). With
    ``stop_within`` a sample stops once it has an adversarial iterate of norm ≤ that."""
    geometry = threat.geometry
    n = x.shape[0]
    best = x.clone()
    best_norm = torch.full((n,), float("inf"), device=x.device)
    idx = torch.arange(n, device=x.device)
    x1 = start.clone()
    for _ in range(params.steps):
        if idx.numel() == 0:
            break
        x0, ya = x[idx], y[idx]
        f, w = _linearised(model, x1, ya, None if up is None else up[idx], geometry, runner_up, params.eot)
        # The boundary f(x1) + ⟨w, z − x1⟩ = 0, reached from x1 (⟨w, d⟩ = −f) and from x0.
        c1 = -f.double()
        c0 = c1 + (w.flatten(1).double() * (x1 - x0).flatten(1).double()).sum(dim=1)
        # Both projections in one call: one sort over twice the rows instead of two.
        both = project_onto_hyperplane(
            geometry, torch.cat([x1, x0]), torch.cat([w, w]), torch.cat([c1, c0]), threat.lower, threat.upper
        )
        d1, d0 = both[: x1.shape[0]], both[x1.shape[0] :]
        n1 = geometry.norm(d1).clamp_min(_MIN_NORM)
        n0 = geometry.norm(d0).clamp_min(_MIN_NORM)
        alpha = expand((n1 / (n1 + n0)).clamp(0, params.alpha_max), x1)
        x1 = ((1 - alpha) * (x1 + params.eta * d1) + alpha * (x0 + params.eta * d0)).clamp(threat.lower, threat.upper)
        with torch.no_grad():
            logits = model(x1).float()
        pred = logits.argmax(dim=1)
        hit = (pred != ya if goal is None else pred == goal[idx]) & finite_rows(logits)
        norm = geometry.norm(x1 - x0).float()
        closer = hit & (norm < best_norm[idx])
        best[idx[closer]] = x1[closer]
        best_norm[idx[closer]] = norm[closer]
        # After a success, go back towards x: the next iterates look for a closer boundary point.
        x1 = torch.where(expand(hit, x1), x0 + params.beta * (x1 - x0), x1)
        if stop_within is not None:
            keep = ~(best_norm[idx] <= stop_within)
            idx, x1 = idx[keep], x1[keep]
    return best, best_norm


def _fab_search(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    params: FABParams,
    runs: list[tuple[Tensor | None, int]],
    goal: Tensor | None,
    generator: torch.Generator,
    early_stop: bool,
    runner_up: bool = False,
) -> tuple[Tensor, Tensor]:
    """FAB over ``runs`` (per run: the target classes, or None, and the restart number), keeping the
    smallest adversarial example per sample. Samples already fooled at x stay x. Bounded by a finite
    ε, with ``early_stop``, a sample leaves once it has an adversarial example within ε, and later
    runs attack only the samples still without one (as AutoAttack's FAB-T); unbounded, every run
    attacks every sample, since any run may find a smaller perturbation. Returns the examples and
    their norms (+∞ where none was found, 0 where x itself is adversarial)."""
    bounded = _bounded(threat, x)
    radius = (
        params.start_eps if params.start_eps is not None else (threat.eps if bounded else _START_EPS[threat.geometry])
    )
    with torch.no_grad():
        logits = model(x).float()
    pred = logits.argmax(dim=1)
    already = (pred != y if goal is None else pred == goal) & finite_rows(logits)
    best = x.clone()
    best_norm = torch.where(already, 0.0, float("inf")).to(x.device)
    within = threat.eps * (1 + 1e-6) if bounded else None
    for up, restart in runs:
        todo = ~already & ~(best_norm <= within) if within is not None and early_stop else ~already
        idx = todo.nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        xs = x[idx]
        start = xs if restart == 0 else _random_start(xs, radius / 2, threat, generator)
        adv, norm = _fab_run(
            model,
            xs,
            y[idx],
            threat,
            params,
            None if up is None else up[idx],
            None if goal is None else goal[idx],
            start,
            within if early_stop else None,
            runner_up,
        )
        closer = norm < best_norm[idx]
        best[idx[closer]] = adv[closer]
        best_norm[idx[closer]] = norm[closer]
    return best, best_norm


def fab(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: FABParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """FAB (Croce & Hein, ICML 2020, "Minimally distorted adversarial examples with a fast adaptive
    boundary attack"): a minimal-perturbation attack for L∞, L2 and L1.

    Threat model: minimal Lp norm inside the box [lower, upper]. Each step linearises the classifier
    at the iterate x_k, picks the class l ≠ y whose linearised boundary π_l: f_l(x_k) + ⟨∇f_l, z − x_k⟩ = 0
    (f_l = z_l − z_y) is nearest in the dual norm, and projects onto π_l inside the box both the
    iterate and the original point: δ_k = proj_p(x_k, π_l) − x_k, δ_orig = proj_p(x, π_l) − x
    (:mod:`advgrad.attacks.hyperplane`). The next iterate is
    x_{k+1} = clip((1 − α)(x_k + η δ_k) + α(x + η δ_orig)), α = min(‖δ_k‖/(‖δ_k‖ + ‖δ_orig‖), α_max),
    so it stays close to x while it follows the boundary. When x_{k+1} is adversarial it is kept if
    it is the smallest so far and the search moves back to x + β(x_{k+1} − x). Restarts after the
    first start at a random point at distance start_eps/2 from x. Defaults (100 steps, α_max 0.1,
    η 1.05, β 0.9) are the paper's and AutoAttack's. Targeted (``target`` given): the boundary
    z_t − z_c between the target t and the most likely other class c at the iterate; success means
    argmax = t.

    Samples it cannot fool are returned unchanged; the result is clipped into ``threat``'s ball
    (the minimal example when its norm is ≤ ε, else its projection). With a finite ε and
    ``early_stop`` a sample stops once it has an adversarial example within ε. Shapes: x (N, ...)
    in the box, y (N,) int64.

    >>> x_adv = fab(model, x, y, threat=ThreatModel("2", 10.0))   # minimal L2 examples
    """
    params = prepare_params(params, FABParams, threat)
    _geometry(threat)
    generator = generator if generator is not None else fresh_generator(x.device)
    x = x.detach()
    with frozen(model), torch.enable_grad():
        if target is not None:
            best, _ = _targeted_search(model, x, y, threat, params, target, generator, early_stop)
        else:
            runs: list[tuple[Tensor | None, int]] = [(None, r) for r in range(params.restarts)]
            best, _ = _fab_search(model, x, y, threat, params, runs, None, generator, early_stop)
    return threat.clip(best, x)


def _targeted_search(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    params: FABParams,
    target: Tensor,
    generator: torch.Generator,
    early_stop: bool,
) -> tuple[Tensor, Tensor]:
    """FAB towards ``target``: every step takes the boundary z_t − z_c, c the most likely class
    other than t at the iterate; success means argmax = t."""
    runs: list[tuple[Tensor | None, int]] = [(target, r) for r in range(params.restarts)]
    return _fab_search(model, x, y, threat, params, runs, target, generator, early_stop, runner_up=True)


def fab_targeted_search(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: FABTParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> tuple[Tensor, Tensor]:
    """What :func:`fab_targeted` finds before the clip into the ε-ball: per sample the smallest
    adversarial example and its norm (+∞, with x, where none was found). AutoAttack keeps FAB-T's
    examples only where that norm is ≤ ε; :mod:`advgrad.attacks.autoattack` does the same."""
    params = prepare_params(params, FABTParams, threat)
    _geometry(threat)
    generator = generator if generator is not None else fresh_generator(x.device)
    x = x.detach()
    with frozen(model), torch.enable_grad():
        if target is not None:
            return _targeted_search(model, x, y, threat, params, target, generator, early_stop)
        with torch.no_grad():
            logits = model(x).float()
        classes = logits.shape[1]
        if classes < 2:
            raise UsageError("fab-t needs a model with at least 2 classes")
        ranked = ranked_other_classes(logits, y)
        n_targets = min(params.target_classes, classes - 1)
        runs: list[tuple[Tensor | None, int]] = [
            (ranked[:, k], r) for k in range(n_targets) for r in range(params.restarts)
        ]
        return _fab_search(model, x, y, threat, params, runs, None, generator, early_stop)


def fab_targeted(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: FABTParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """FAB-T (Croce & Hein, ICML 2020; AutoAttack's ``fab-t``): FAB on the boundary z_t − z_y towards
    each of the ``target_classes`` most likely wrong classes t at x in turn (``restarts`` starts
    each); success means misclassified, and per sample the smallest adversarial example over all
    targets is kept. One gradient per step instead of one per class, so it is cheaper than ``fab``
    on many classes. With a finite ε and ``early_stop`` later targets attack only the samples
    without an adversarial example within ε, as AutoAttack does; unbounded, every target attacks
    every sample. With an explicit ``target`` it is :func:`fab` towards it. Threat model (minimal
    L∞, L2 or L1 norm inside the box), update and result as :func:`fab`.

    >>> x_adv = fab_targeted(model, x, y, threat=ThreatModel("inf", 0.1), params=FABTParams(target_classes=3))
    """
    best, _ = fab_targeted_search(
        model, x, y, threat=threat, params=params, target=target, generator=generator, early_stop=early_stop
    )
    return threat.clip(best, x.detach())


_REFERENCE = "Croce & Hein, ICML 2020 (Minimally distorted adversarial examples with a fast adaptive boundary attack)"

SPEC = AttackSpec(
    name="fab",
    function=fab,
    params_type=FABParams,
    norms=("inf", "2", "1"),
    kind="minimal",
    summary="minimal perturbation: projects onto the nearest linearised boundary, biased towards x",
    reference=_REFERENCE,
)

SPEC_T = AttackSpec(
    name="fab-t",
    function=fab_targeted,
    params_type=FABTParams,
    norms=("inf", "2", "1"),
    kind="minimal",
    summary="FAB towards each of the most likely wrong classes in turn (AutoAttack's FAB-T)",
    reference=_REFERENCE,
)
