"""What the minimal-perturbation attacks (DeepFool, Carlini–Wagner) share.

A minimal attack looks for the smallest perturbation that fools the model, whatever ε is. One run
therefore gives a whole robustness curve: a sample is fooled at ε exactly when its minimal
adversarial example has norm ≤ ε. :func:`find_minimal` runs such an attack without a budget and
reports, per sample, the adversarial example, its real norm and whether a fresh forward pass
confirms that it fools the model.

Called through :func:`advgrad.attacks.run_attack` with a finite ε (``advgrad attack``), a minimal
attack's result is clipped into the ε-ball: the minimal example itself when its norm is ≤ ε, else
its projection onto the ball and the box (which usually does not fool the model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.attacks.base import AttackParams, AttackSpec, run_attack
from advgrad.core.geometry import expand, get_geometry
from advgrad.core.gradient import frozen
from advgrad.core.losses import finite_rows
from advgrad.core.threat import Norm, ThreatModel

# Bisection steps of :func:`shrink`: the found perturbation is shortened to within 2⁻¹² of its
# length of the smallest multiple that still fools.
SHRINK_STEPS = 12


def unbounded_threat(
    norm: Norm, x: Tensor, lower: float = 0.0, upper: float = 1.0, fixed: tuple[int, ...] = ()
) -> ThreatModel:
    """A threat model whose ball holds the whole box around every x: ε = the box's diameter in the
    norm ((upper − lower)·d^{1/p}), so clipping to it never moves a point of the box (but for the
    coordinates ``fixed``, which stay as they are)."""
    d = x[0].numel() if x.shape[0] else 1
    eps = get_geometry(norm).box_diameter(d, upper - lower)
    return ThreatModel(norm, eps * (1 + 1e-6), lower, upper, fixed)


def shrink(x: Tensor, x_adv: Tensor, fools: Callable[[Tensor], Tensor], steps: int = SHRINK_STEPS) -> Tensor:
    """Move each adversarial example back towards x along its perturbation while it still fools.

    Bisection over s ∈ [0, 1] on x + s·(x_adv − x) (inside the box, which is convex): a scale is
    accepted only when ``fools`` — one forward pass — confirms it, so the result fools whenever
    ``x_adv`` does. Samples that ``x_adv`` does not fool are returned unchanged.
    """
    delta = x_adv - x
    hi = torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
    lo = torch.zeros_like(hi)
    for _ in range(steps):
        mid = (lo + hi) / 2
        ok = fools(x + expand(mid, x) * delta)
        hi = torch.where(ok, mid, hi)
        lo = torch.where(ok, lo, mid)
    return x + expand(hi, x) * delta


@dataclass
class MinimalResult:
    """Per sample: the adversarial example, its norm in the threat norm, and whether a fresh
    forward pass classifies it differently from its label."""

    x_adv: Tensor
    norm: Tensor
    fooled: Tensor


def find_minimal(
    spec: AttackSpec,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    norm: Norm,
    params: AttackParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    predictions: int = 1,
    fixed: tuple[int, ...] = (),
) -> MinimalResult:
    """Run a minimal attack without a budget and check what it found.

    ``norm`` is ‖x_adv − x‖ recomputed here, ``fooled`` comes from a new forward pass (argmax ≠ y, with
    finite logits).
    A sample the attack cannot fool has ``fooled`` False; its norm is that of whatever it returned.
    With ``predictions`` > 1 (a randomized model, :mod:`advgrad.evaluation.randomized`) a sample is fooled when
    any of that many forward passes misclassifies it. The coordinates ``fixed`` never move
    (:attr:`advgrad.core.threat.ThreatModel.fixed`).
    """
    threat = unbounded_threat(norm, x, fixed=fixed)
    x_adv = run_attack(spec, model, x, y, threat=threat, params=params, target=target, generator=generator)
    with frozen(model), torch.no_grad():
        logits = model(x_adv)
        fooled = (logits.argmax(dim=1) != y) & finite_rows(logits)  # NaN/Inf logits never count as fooled
        for _ in range(predictions - 1):
            again = model(x_adv)
            fooled |= (again.argmax(dim=1) != y) & finite_rows(again)
    return MinimalResult(x_adv, threat.norm_of(x_adv - x), fooled)
