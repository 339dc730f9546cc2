"""DeepFool: the minimal perturbation that crosses the nearest linearised decision boundary."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.attacks.base import AttackParams, AttackSpec, eot_param, param, prepare_params
from advgrad.attacks.minimal import SHRINK_STEPS, shrink
from advgrad.core.errors import UsageError
from advgrad.core.geometry import TINY, NormGeometry, expand
from advgrad.core.gradient import expectation, frozen
from advgrad.core.losses import is_successful, ranked_other_classes
from advgrad.core.threat import ThreatModel

# Classes DeepFool considers: the most likely ones at x (the paper uses 10 on ImageNet).
CANDIDATES = 10


@dataclass
class DeepFoolParams(AttackParams):
    """Iterations and overshoot of DeepFool."""

    steps: int = param(50, "maximum iterations")
    overshoot: float = param(0.02, "η: the accumulated step is scaled by 1 + η so that it crosses the boundary")
    eot: int = eot_param()

    at_least_one = ("steps", "eot")
    # per step a forward pass and a gradient per candidate class (eot times), then the shrinking bisection
    cost_formula = f"(steps + 1)*min(classes, {CANDIDATES})*eot + {SHRINK_STEPS + 1}"


def _linear_step(f: Tensor, w: Tensor, geometry: NormGeometry) -> tuple[Tensor, Tensor]:
    """For the linearised constraint f + w·r ≥ 0 (f < 0): the distance |f|/‖w‖_* to it, with ‖·‖_*
    the dual norm (L2 for L2, L1 for L∞), and the smallest step r reaching it, that distance along
    the steepest direction d of w (⟨w, d⟩ = ‖w‖_*): L2: r = |f|·w/‖w‖₂², L∞: r = |f|·sign(w)/‖w‖₁."""
    dual = geometry.dual_norm(w).clamp_min(TINY)
    distance = (f.abs() + 1e-4) / dual  # the paper adds 1e-4 so the step does not stop short
    return distance, expand(distance, w) * geometry.steepest(w)


def _class_gradients(
    model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None, others: Tensor | None, eot: int = 1
):
    """Logits at x and, per candidate j, (f_j, ∇f_j) with f_j = z_{k_j} − z_y (untargeted, k_j the
    j-th candidate) or f = z_t − z_c (targeted, c the current top class other than t); with ``eot``
    > 1 each is the mean over that many passes (expectation over transformation)."""

    def draw() -> tuple[Tensor, ...]:
        logits, pairs = _one_pass_gradients(model, x, y, target, others)
        return (logits, *(t for pair in pairs for t in pair))

    logits, *rest = expectation(eot, draw)
    return logits, list(zip(rest[0::2], rest[1::2], strict=True))


def _one_pass_gradients(model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None, others: Tensor | None):
    """One forward pass and a backward pass per candidate: see :func:`_class_gradients`."""
    x_var = x.detach().requires_grad_(True)
    logits = model(x_var).float()
    if target is not None:
        other = ranked_other_classes(logits.detach(), target)[:, 0]
        pairs = [(target, other)]
    else:
        pairs = [(others[:, j], y) for j in range(others.shape[1])]
    out = []
    for j, (up, down) in enumerate(pairs):
        f = logits.gather(1, up[:, None]).squeeze(1) - logits.gather(1, down[:, None]).squeeze(1)
        (g,) = torch.autograd.grad(f.sum(), x_var, retain_graph=j < len(pairs) - 1)
        out.append((f.detach(), g))
    return logits.detach(), out


def deepfool(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: DeepFoolParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016, "DeepFool: a simple and accurate
    method to fool deep neural networks"): a minimal-perturbation attack.

    Threat model: minimal L2 or L∞ norm, inside [0, 1]; ε is ignored (``run_attack`` clips the
    result into the ε-ball). Update: linearise f_k(x) = z_k(x) − z_y(x) for the most likely classes
    k ≠ y, pick l = argmin_k |f_k|/‖∇f_k‖_q (q = 2 for L2, 1 for L∞), step
    r = (|f_l| + 10⁻⁴)·∇f_l/‖∇f_l‖₂² (L2) or (|f_l| + 10⁻⁴)·sign(∇f_l)/‖∇f_l‖₁ (L∞), accumulate
    r_tot and set x_{i+1} = clip_[0,1](x + (1 + η)·r_tot), until the label changes or ``steps``
    run out. On an affine binary classifier one step lands on the boundary: the distance is
    |w·x + b|/‖w‖. The found perturbation is then shortened by bisection along its direction,
    keeping only points a forward pass confirms (this removes most of the overshoot). Targeted:
    the only candidate is the target, against the current top class, until the target wins.
    Samples it cannot fool are returned unchanged; the result is clipped into ``threat``'s ball (the
    minimal example when its norm is ≤ ε, else its projection), so with the unbounded threat of
    :func:`advgrad.attacks.minimal.find_minimal` it is the minimal example itself. ``generator`` is
    unused (DeepFool is deterministic). Shapes: x (N, C, H, W) in [0, 1], y (N,) int64.

    >>> x_adv = deepfool(model, x, y, threat=ThreatModel("2", 10.0))
    >>> norms = (x_adv - x).flatten(1).norm(dim=1)   # the minimal L2 perturbation per sample
    """
    params = prepare_params(params, DeepFoolParams, threat)
    x = x.detach()
    with frozen(model), torch.enable_grad():
        with torch.no_grad():
            logits0 = model(x).float()
        classes = logits0.shape[1]
        if classes < 2:
            raise UsageError("deepfool needs a model with at least 2 classes")
        others = ranked_other_classes(logits0, y)[:, : min(CANDIDATES, classes) - 1]
        x_adv = x.clone()
        r_tot = torch.zeros_like(x)
        success = is_successful(logits0, y, target)
        active = (~success).nonzero().squeeze(1)
        for it in range(params.steps + 1):
            if active.numel() == 0:
                break
            t = None if target is None else target[active]
            logits, pairs = _class_gradients(model, x_adv[active], y[active], t, others[active], params.eot)
            done = is_successful(logits, y[active], t)
            success[active[done]] = True
            if it == params.steps:
                break
            distances, steps = zip(*(_linear_step(f, g, threat.geometry) for f, g in pairs), strict=True)
            nearest = torch.stack(distances, dim=1).argmin(dim=1)
            step = torch.stack(steps, dim=1)[torch.arange(active.numel(), device=x.device), nearest]
            keep = ~done
            active, step = active[keep], step[keep]
            r_tot[active] += step
            x_adv[active] = (x[active] + (1 + params.overshoot) * r_tot[active]).clamp(threat.lower, threat.upper)
        x_adv = torch.where(expand(success, x), x_adv, x)

        def fools(candidate: Tensor) -> Tensor:
            with torch.no_grad():
                return is_successful(model(candidate).float(), y, target)

        return threat.clip(shrink(x, x_adv, fools), x)  # minimal example if within ε, else its projection


SPEC = AttackSpec(
    name="deepfool",
    function=deepfool,
    params_type=DeepFoolParams,
    norms=("2", "inf"),
    kind="minimal",
    summary="minimal perturbation: steps to the nearest linearised decision boundary until the label flips",
    reference="Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016",
)
