"""Threat models: per-sample norms, projections onto ε-balls and the valid input box.

An adversary may replace ``x`` by any ``x'`` with ``‖x' − x‖_p ≤ ε`` and ``lower ≤ x' ≤ upper``
(pixels in [0, 1] by default). Norms are taken per sample over every dimension but the first.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import Tensor

from advgrad.errors import UsageError

Norm = Literal["inf", "2", "1"]
NORMS: tuple[Norm, ...] = ("inf", "2", "1")

# Relative slack used when checking that a result lies inside its ball: projections computed in
# float32 can overshoot ε by a few ulps.
NORM_TOLERANCE = 1e-5


def parse_norm(value: str | int | float) -> Norm:
    """Accept ``inf``/``linf``/``Linf``, ``2``/``l2`` and ``1``/``l1``; return the canonical name."""
    text = str(value).strip().lower().lstrip("l")
    if text in ("inf", "infinity", "∞"):
        return "inf"
    if text in ("2", "2.0"):
        return "2"
    if text in ("1", "1.0"):
        return "1"
    raise UsageError(f"unknown norm {value!r}: use one of inf, 2, 1")


def _flat(t: Tensor) -> Tensor:
    # An explicit width, not -1: a batch of zero samples (nothing fooled at this ε) has to work too.
    return t.reshape(t.shape[0], math.prod(t.shape[1:]))


def _expand(per_sample: Tensor, like: Tensor) -> Tensor:
    """Shape a per-sample vector (N,) so that it broadcasts against ``like`` (N, ...)."""
    return per_sample.reshape((-1,) + (1,) * (like.dim() - 1))


def per_sample_norm(t: Tensor, norm: Norm) -> Tensor:
    """‖t_i‖_p for every sample i: a tensor of shape (N,)."""
    flat = _flat(t)
    if norm == "inf":
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
    if norm == "2":
        return flat.norm(p=2, dim=1)
    if norm == "1":
        return flat.abs().sum(dim=1)
    raise UsageError(f"unknown norm {norm!r}")


def project_linf(delta: Tensor, eps: float | Tensor) -> Tensor:
    """Euclidean projection onto the L∞ ball: clip every coordinate to [−ε, ε]."""
    if isinstance(eps, Tensor):
        eps = _expand(eps, delta)
        return torch.maximum(torch.minimum(delta, eps), -eps)
    return delta.clamp(-eps, eps)


def project_l2(delta: Tensor, eps: float | Tensor) -> Tensor:
    """Euclidean projection onto the L2 ball: δ · min(1, ε / ‖δ‖₂)."""
    norms = per_sample_norm(delta, "2")
    eps_t = eps if isinstance(eps, Tensor) else torch.full_like(norms, float(eps))
    factor = torch.where(norms > eps_t, eps_t / norms.clamp_min(1e-30), torch.ones_like(norms))
    return delta * _expand(factor, delta)


def project_l1(delta: Tensor, eps: float | Tensor) -> Tensor:
    """Euclidean projection onto the L1 ball (Duchi et al., 2008, sort-based, exact).

    For ‖δ‖₁ > ε the projection is sign(δ)·max(|δ| − θ, 0) with θ ≥ 0 chosen so the result has
    L1 norm exactly ε; θ is found from the sorted magnitudes u₁ ≥ u₂ ≥ …:
    ρ = max{j : u_j − (Σ_{r≤j} u_r − ε)/j > 0}, θ = (Σ_{r≤ρ} u_r − ε)/ρ.
    """
    flat = _flat(delta)
    n, d = flat.shape
    eps_t = eps if isinstance(eps, Tensor) else torch.full((n,), float(eps), device=delta.device, dtype=flat.dtype)
    eps_t = eps_t.to(flat.dtype)
    mags = flat.abs()
    inside = mags.sum(dim=1) <= eps_t
    u, _ = torch.sort(mags, dim=1, descending=True)
    cumsum = u.cumsum(dim=1) - eps_t[:, None]
    ranks = torch.arange(1, d + 1, device=delta.device, dtype=flat.dtype)
    positive = (u - cumsum / ranks) > 0
    rho = (positive * ranks).amax(dim=1).clamp_min(1)
    theta = cumsum.gather(1, (rho - 1).long()[:, None]).squeeze(1) / rho
    theta = torch.where(inside, torch.zeros_like(theta), theta.clamp_min(0))
    projected = flat.sign() * (mags - theta[:, None]).clamp_min(0)
    return projected.reshape(delta.shape)


def project_l1_box(v: Tensor, low: Tensor, high: Tensor, eps: float | Tensor) -> Tensor:
    """Exact Euclidean projection of ``v`` onto {δ : ‖δ‖₁ ≤ ε, low ≤ δ ≤ high}, per sample.

    ``low ≤ 0 ≤ high`` (for a perturbation of x in the box [lower, upper]: low = lower − x,
    high = upper − x). The KKT conditions give δ_i = sign(v_i)·min(max(|v_i| − θ, 0), u_i) with
    u_i = high_i where v_i ≥ 0 and −low_i elsewhere, and θ = 0 when that point already has
    ‖δ‖₁ ≤ ε, else the θ > 0 solving g(θ) = Σ_i min(max(|v_i| − θ, 0), u_i) = ε. g is piecewise
    linear and non-increasing; coordinate i enters it with slope −1 at θ = |v_i| − u_i and leaves
    at θ = |v_i|. Sorting these 2d breakpoints and summing slope × width gives g at every
    breakpoint, and θ follows exactly by linear interpolation on the segment that crosses ε:
    O(d log d) per sample, computed in float64.
    """
    n = v.shape[0]
    vf = _flat(v).double()
    a = vf.abs()
    u = torch.where(vf >= 0, _flat(high).double(), -_flat(low).double()).clamp_min(0)
    eps_t = eps.double() if isinstance(eps, Tensor) else torch.full((n,), float(eps), dtype=torch.float64)
    eps_t = eps_t.to(vf.device)
    breaks = torch.cat([(a - u).clamp_min(0), a], dim=1)
    changes = torch.cat([-torch.ones_like(a), torch.ones_like(a)], dim=1)
    breaks, order = breaks.sort(dim=1)
    slope = changes.gather(1, order).cumsum(dim=1)  # slope of g just right of each breakpoint
    g0 = torch.minimum(a, u).sum(dim=1)  # g is flat between 0 and the first breakpoint
    drops = (slope[:, :-1] * breaks.diff(dim=1)).cumsum(dim=1)
    g = torch.cat([g0[:, None], g0[:, None] + drops], dim=1)  # g at each breakpoint
    below = g <= eps_t[:, None]
    below[:, -1] = True  # g(max |v_i|) = 0 ≤ ε; guards against rounding
    k = below.int().argmax(dim=1).clamp_min(1)  # first breakpoint with g ≤ ε (argmax: first maximum)
    b_left = breaks.gather(1, (k - 1)[:, None]).squeeze(1)
    g_left = g.gather(1, (k - 1)[:, None]).squeeze(1)
    s_left = slope.gather(1, (k - 1)[:, None]).squeeze(1)
    theta = b_left + (g_left - eps_t) / (-s_left).clamp_min(1.0)
    theta = torch.where(g0 > eps_t, theta, torch.zeros_like(theta))
    delta = vf.sign() * torch.minimum((a - theta[:, None]).clamp_min(0), u)
    return delta.to(v.dtype).reshape(v.shape)


@dataclass(frozen=True)
class ThreatModel:
    """What the adversary may do: move each input by at most ``eps`` in the ``norm`` ball, staying
    inside the box [``lower``, ``upper``].

    >>> threat = ThreatModel("inf", 8 / 255)
    >>> x_adv = threat.clip(x_adv, x)      # back inside the ball and the box
    """

    norm: Norm
    eps: float
    lower: float = 0.0
    upper: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", parse_norm(self.norm))
        if not math.isfinite(self.eps) or self.eps < 0:
            raise UsageError(f"ε must be a finite number ≥ 0, got {self.eps}")
        if not self.lower < self.upper:
            raise UsageError(f"the input box needs lower < upper, got [{self.lower}, {self.upper}]")

    def project(self, delta: Tensor) -> Tensor:
        """Project a perturbation onto the ε-ball of this norm (not the box)."""
        if self.norm == "inf":
            return project_linf(delta, self.eps)
        if self.norm == "2":
            return project_l2(delta, self.eps)
        return project_l1(delta, self.eps)

    def clip(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Bring ``x_adv`` inside the ε-ball around ``x`` and inside the box.

        Projecting onto the ball and then clamping into the box keeps both constraints: the box
        clamp only moves coordinates towards ``x`` (which lies in the box), so it cannot leave the
        ball. For L∞ the result is the exact projection onto the intersection; for L1 the exact
        projection onto the intersection is computed (:func:`project_l1_box`).
        """
        if self.norm == "1":
            delta = project_l1_box(x_adv - x, self.lower - x, self.upper - x, self.eps)
        else:
            delta = self.project(x_adv - x)
        return (x + delta).clamp(self.lower, self.upper)

    def clip_exact(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """:meth:`clip`, then undo the rounding of x + δ: in floating point the stored x_adv − x can
        exceed ε by an ulp. Coordinates (L∞) or samples (L2, L1) that do are moved towards x by the
        smallest representable amount, so the norm computed from the returned tensor is ≤ ε."""
        x_adv = self.clip(x_adv, x)
        if self.norm == "inf":
            over = (x_adv - x).abs() > self.eps
            if bool(over.any()):
                x_adv = torch.where(over, torch.nextafter(x_adv, x), x_adv)
            return x_adv
        norms = self.norm_of(x_adv - x)
        over = norms > self.eps
        if bool(over.any()):
            factor = torch.where(over, self.eps / norms.clamp_min(1e-30) * (1 - 8 * torch.finfo(x.dtype).eps), 1.0)
            x_adv = (x + (x_adv - x) * _expand(factor.to(x.dtype), x)).clamp(self.lower, self.upper)
        return x_adv

    def norm_of(self, delta: Tensor) -> Tensor:
        """Per-sample norm of ``delta`` in this threat model's norm."""
        return per_sample_norm(delta, self.norm)

    def contains(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Per-sample check that ``x_adv`` is inside the ball (with float slack) and the box."""
        slack = NORM_TOLERANCE * max(self.eps, 1.0)
        in_ball = self.norm_of(x_adv - x) <= self.eps + slack
        flat = _flat(x_adv)
        in_box = (flat >= self.lower - 1e-6).all(dim=1) & (flat <= self.upper + 1e-6).all(dim=1)
        return in_ball & in_box

    def to_dict(self) -> dict:
        return asdict(self)


def parse_eps(text: str | float, what: str = "ε") -> float:
    """One ε: a decimal (``0.03``) or a fraction (``8/255``); must be finite and ≥ 0.

    ``what`` names the quantity in error messages (ε, step size...)."""
    raw = str(text).strip()
    try:
        if "/" in raw:
            num, den = raw.split("/", 1)
            value = float(num) / float(den)
        else:
            value = float(raw)
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"bad {what} {raw!r}: write a number such as 0.03 or a fraction such as 8/255") from None
    if not math.isfinite(value):
        raise UsageError(f"bad {what} {raw!r}: it must be finite")
    if value < 0:
        raise UsageError(f"bad {what} {raw!r}: it must be ≥ 0")
    return value


def parse_eps_list(text: str | list[str]) -> list[float]:
    """A comma-separated list of ε values (``0,1/255,2/255``), or several such strings."""
    parts = [text] if isinstance(text, str) else list(text)
    values = [parse_eps(p) for chunk in parts for p in str(chunk).split(",") if p.strip()]
    if not values:
        raise UsageError("give at least one ε value, e.g. --eps 8/255")
    return values


def box_diameter(norm: Norm, features: int, lower: float = 0.0, upper: float = 1.0) -> float:
    """The largest distance between two points of the box [lower, upper]^d in ``norm``:
    (upper − lower) in L∞, (upper − lower)·√d in L2, (upper − lower)·d in L1."""
    width = upper - lower
    return width if norm == "inf" else width * math.sqrt(features) if norm == "2" else width * features


def eps_beyond_box(norm: Norm, eps_values: list[float], features: int) -> str | None:
    """A one-line warning when an ε exceeds the box's diameter, else None.

    Such a ball holds the whole input box: every input can be moved to any other, so the number
    means nothing, and the value is almost always pixel units (0–255) mistaken for [0, 1] ones.
    """
    diameter = box_diameter(norm, features)
    large = sorted({e for e in eps_values if e > diameter * (1 + NORM_TOLERANCE)})
    if not large:
        return None
    shown = ", ".join(f"{e:g}" for e in large)
    name = "L∞" if norm == "inf" else f"L{norm}"
    text = (f"ε = {shown} exceeds {diameter:g}, the largest {name} distance between two inputs in [0, 1]"
            f"{'' if norm == 'inf' else f' ({features} values each)'}: any input can become any other")
    whole = [e for e in large if e == int(e) and e <= 255]
    if whole:
        text += "; did you mean " + " or ".join(f"{int(e)}/255" for e in whole[:3]) + "?"
    return text
