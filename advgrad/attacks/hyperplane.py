"""The projection onto a hyperplane inside the input box, for L∞, L2 and L1: FAB's inner step.

Given points t (N, D), normals w (N, D) and right-hand sides c (N,), the projection is
d* = argmin ‖d‖_p subject to ⟨w, d⟩ = c and lower ≤ t + d ≤ upper, per sample (Croce & Hein, ICML
2020, "Minimally distorted adversarial examples with a fast adaptive boundary attack", Section 3.1
and the appendix). With s = sign(c), the optimal d moves each coordinate towards the hyperplane:
d_i = s·sign(w_i)·e_i with 0 ≤ e_i ≤ u_i, where u_i is the room the box leaves in that direction,
and Σ|w_i|·e_i = |c|. The norm then fixes e:

- L∞: e_i = min(λ, u_i), with λ the water level at which Σ|w_i|·min(λ, u_i) = |c|;
- L2: e_i = |w_i|·min(λ, u_i/|w_i|) (KKT), the same water filling with weights w_i² and caps u_i/|w_i|;
- L1: a fractional knapsack: fill the coordinates with the largest |w_i| first (each unit of e_i
  there buys the most progress), the last one partly.

Each is one sort and one cumulative sum per sample: O(D log D), no loop over samples. When the
hyperplane cannot be reached inside the box (Σ|w_i|·u_i < |c|) the projection without the box is
returned (e_i = |c|/‖w‖₁ for L∞, |c|·|w_i|/‖w‖₂² for L2, all of |c|/max|w| on the largest |w_i|
for L1); the caller clamps the point into the box. Coordinates with w_i = 0 never move.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from advgrad.core.geometry import L1, L2, LINF, NormGeometry, flat

Projection = Callable[[Tensor, Tensor, Tensor, float, float], Tensor]


def _oriented(t: Tensor, w: Tensor, c: Tensor, lower: float, upper: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(direction, |w|, room u, |c|) in float64: direction_i = sign(c)·sign(w_i) is where coordinate
    i moves, u_i ≥ 0 how far the box lets it move that way (0 where w_i = 0)."""
    t, w, c = t.double(), w.double(), c.double()
    s = torch.where(c >= 0, 1.0, -1.0).to(w.dtype)
    direction = s[:, None] * w.sign()
    room = torch.where(direction > 0, upper - t, t - lower).clamp_min(0) * (w != 0)
    return direction, w.abs(), room, c.abs()


def _water_level(weight: Tensor, cap: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """λ ≥ 0 with h(λ) = Σ_i weight_i·min(λ, cap_i) = c, and whether h reaches c at all (h(∞) ≥ c).

    h is piecewise linear and non-decreasing with breakpoints at the caps. With the caps sorted,
    h at the k-th one is Σ_{j<k} weight_j·cap_j + cap_k·Σ_{j≥k} weight_j; on the first segment
    whose right end reaches c, λ = (c − Σ_{j<k} weight_j·cap_j) / Σ_{j≥k} weight_j."""
    caps, order = cap.sort(dim=1)
    weights = weight.gather(1, order)
    filled = (weights * caps).cumsum(dim=1) - weights * caps  # Σ_{j<k} weight_j·cap_j
    tail = weights.flip(1).cumsum(dim=1).flip(1)  # Σ_{j≥k} weight_j
    h = filled + caps * tail
    reachable = h[:, -1] >= c
    k = (h >= c[:, None]).int().argmax(dim=1)  # first breakpoint at or above c
    level = (c - filled.gather(1, k[:, None]).squeeze(1)) / tail.gather(1, k[:, None]).squeeze(1).clamp_min(1e-300)
    return level.clamp_min(0), reachable


def project_hyperplane_linf(t: Tensor, w: Tensor, c: Tensor, lower: float, upper: float) -> Tensor:
    """argmin ‖d‖_∞ s.t. ⟨w, d⟩ = c, lower ≤ t + d ≤ upper (per row of the (N, D) inputs)."""
    direction, a, room, c_abs = _oriented(t, w, c, lower, upper)
    level, reachable = _water_level(a, room, c_abs)
    inside = torch.minimum(level[:, None], room)
    free = (c_abs / a.sum(dim=1).clamp_min(1e-300))[:, None] * (a > 0)
    e = torch.where(reachable[:, None], inside, free)
    return (direction * e).to(t.dtype)


def project_hyperplane_l2(t: Tensor, w: Tensor, c: Tensor, lower: float, upper: float) -> Tensor:
    """argmin ‖d‖₂ s.t. ⟨w, d⟩ = c, lower ≤ t + d ≤ upper (per row of the (N, D) inputs)."""
    direction, a, room, c_abs = _oriented(t, w, c, lower, upper)
    cap = room / a.clamp_min(1e-300) * (a > 0)
    level, reachable = _water_level(a * a, cap, c_abs)
    inside = a * torch.minimum(level[:, None], cap)
    free = (c_abs / (a * a).sum(dim=1).clamp_min(1e-300))[:, None] * a
    e = torch.where(reachable[:, None], inside, free)
    return (direction * e).to(t.dtype)


def project_hyperplane_l1(t: Tensor, w: Tensor, c: Tensor, lower: float, upper: float) -> Tensor:
    """argmin ‖d‖₁ s.t. ⟨w, d⟩ = c, lower ≤ t + d ≤ upper (per row of the (N, D) inputs)."""
    direction, a, room, c_abs = _oriented(t, w, c, lower, upper)
    sorted_a, order = a.sort(dim=1, descending=True)
    sorted_room = room.gather(1, order)
    before = (sorted_a * sorted_room).cumsum(dim=1) - sorted_a * sorted_room  # progress of the coordinates before
    # Coordinates before the one that crosses |c| move to their box edge, it moves the remainder.
    partial = ((c_abs[:, None] - before) / sorted_a.clamp_min(1e-300)).clamp_min(0)
    e_sorted = torch.minimum(partial, sorted_room) * (sorted_a > 0)
    inside = torch.zeros_like(a).scatter(1, order, e_sorted)
    reachable = (a * room).sum(dim=1) >= c_abs
    top = a.argmax(dim=1, keepdim=True)
    free = torch.zeros_like(a).scatter(1, top, (c_abs / a.gather(1, top).squeeze(1).clamp_min(1e-300))[:, None])
    e = torch.where(reachable[:, None], inside, free)
    return (direction * e).to(t.dtype)


# Keyed by the norm's geometry, like the Square attack's moves: FAB supports the norms listed here.
PROJECTIONS: dict[NormGeometry, Projection] = {
    LINF: project_hyperplane_linf,
    L2: project_hyperplane_l2,
    L1: project_hyperplane_l1,
}


def project_onto_hyperplane(
    geometry: NormGeometry, t: Tensor, w: Tensor, c: Tensor, lower: float, upper: float
) -> Tensor:
    """The minimal-``geometry``-norm step d from t (N, ...) with ⟨w, d⟩ = c that stays in the box."""
    d = PROJECTIONS[geometry](flat(t), flat(w), c, lower, upper)
    return d.reshape(t.shape)
