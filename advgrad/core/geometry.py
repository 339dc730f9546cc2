"""Per-norm geometry: everything that depends on which norm measures a perturbation.

One object per norm (L∞, L2, L1) knows the per-sample norm of a batch, the projection onto the
ε-ball and onto the ball ∩ the input box, the steepest-ascent direction of a gradient, a uniform
random point of the ball, its dual norm, the diameter of the input box and how the norm is written.
:class:`advgrad.core.threat.ThreatModel` delegates to it and attacks ask it; nothing else compares norm
names. A new norm is one :class:`NormGeometry` subclass and one :func:`register_geometry` call.

Norms are taken per sample over every dimension but the first; ``eps`` is a float or a per-sample
tensor of shape (N,).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from advgrad.core.errors import UsageError

# Below this a norm counts as zero when dividing by it (the one such floor of every attack).
TINY = 1e-12
# Share of the coordinates the L1 ascent direction leaves out (it moves the top 1%).
L1_SPARSITY = 0.99


def flat(t: Tensor) -> Tensor:
    """``t`` as (N, D). An explicit width, not -1: a batch of zero samples has to work too."""
    return t.reshape(t.shape[0], math.prod(t.shape[1:]))


def expand(per_sample: Tensor, like: Tensor) -> Tensor:
    """Shape a per-sample vector (N,) so that it broadcasts against ``like`` (N, ...)."""
    return per_sample.reshape((-1,) + (1,) * (like.dim() - 1))


def project_linf(delta: Tensor, eps: float | Tensor) -> Tensor:
    """Euclidean projection onto the L∞ ball: clip every coordinate to [−ε, ε]."""
    if isinstance(eps, Tensor):
        eps = expand(eps, delta)
        return torch.maximum(torch.minimum(delta, eps), -eps)
    return delta.clamp(-eps, eps)


def project_l2(delta: Tensor, eps: float | Tensor) -> Tensor:
    """Euclidean projection onto the L2 ball: δ · min(1, ε / ‖δ‖₂)."""
    norms = flat(delta).norm(p=2, dim=1)
    eps_t = eps if isinstance(eps, Tensor) else torch.full_like(norms, float(eps))
    factor = torch.where(norms > eps_t, eps_t / norms.clamp_min(1e-30), torch.ones_like(norms))
    return delta * expand(factor, delta)


def project_l1(delta: Tensor, eps: float | Tensor) -> Tensor:
    """Euclidean projection onto the L1 ball (Duchi et al., 2008, sort-based, exact).

    For ‖δ‖₁ > ε the projection is sign(δ)·max(|δ| − θ, 0) with θ ≥ 0 chosen so the result has
    L1 norm exactly ε; θ is found from the sorted magnitudes u₁ ≥ u₂ ≥ …:
    ρ = max{j : u_j − (Σ_{r≤j} u_r − ε)/j > 0}, θ = (Σ_{r≤ρ} u_r − ε)/ρ.
    """
    fl = flat(delta)
    n, d = fl.shape
    eps_t = eps if isinstance(eps, Tensor) else torch.full((n,), float(eps), device=delta.device, dtype=fl.dtype)
    eps_t = eps_t.to(fl.dtype)
    mags = fl.abs()
    inside = mags.sum(dim=1) <= eps_t
    u, _ = torch.sort(mags, dim=1, descending=True)
    cumsum = u.cumsum(dim=1) - eps_t[:, None]
    ranks = torch.arange(1, d + 1, device=delta.device, dtype=fl.dtype)
    positive = (u - cumsum / ranks) > 0
    rho = (positive * ranks).amax(dim=1).clamp_min(1)
    theta = cumsum.gather(1, (rho - 1).long()[:, None]).squeeze(1) / rho
    theta = torch.where(inside, torch.zeros_like(theta), theta.clamp_min(0))
    projected = fl.sign() * (mags - theta[:, None]).clamp_min(0)
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
    vf = flat(v).double()
    a = vf.abs()
    u = torch.where(vf >= 0, flat(high).double(), -flat(low).double()).clamp_min(0)
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


def movable(x_adv: Tensor, grad: Tensor, lower: float, upper: float) -> Tensor:
    """1 where an ascent step along ``grad`` can move the coordinate, 0 where the box stops it
    (at ``lower`` with a negative gradient, at ``upper`` with a positive one)."""
    blocked = ((x_adv <= lower) & (grad < 0)) | ((x_adv >= upper) & (grad > 0))
    return (~blocked).to(grad.dtype)


def top_k_direction(grad: Tensor, k: int) -> Tensor:
    """sign(g_i)/m on the m coordinates with |g_i| ≥ the k-th largest |g| (ties kept, zeros left
    out), 0 elsewhere: a direction of L1 norm 1 (0 where g is 0) spread over the largest |g|."""
    fl = grad.reshape(grad.shape[0], -1)
    threshold = fl.abs().topk(k, dim=1).values[:, -1:]
    mask = (fl.abs() >= threshold) & (fl != 0)
    direction = fl.sign() * mask
    direction = direction / mask.sum(dim=1, keepdim=True).clamp_min(1)
    return direction.reshape(grad.shape)


class NormGeometry(ABC):
    """The geometry of one norm ‖·‖ on perturbations δ = x' − x, with x' in a box [lower, upper].

    ``name`` is the canonical name (what reports and ``--norm`` store), ``aliases`` the other
    spellings :func:`parse_norm` accepts (after a leading ``l`` is dropped), ``symbol`` the
    subscript of ‖δ‖ (∞, ₂, ₁), ``label`` the name shown to people (L∞, L2, L1), ``dual_name`` the
    name of the dual norm ‖w‖_* = max_{‖d‖ ≤ 1} ⟨w, d⟩, and ``default_eps`` the ε grid ``advgrad
    eval`` sweeps when none is given (for inputs in [0, 1]). ``exact_box_projection`` says whether
    :meth:`clip` is the exact Euclidean projection onto ball ∩ box (else: a feasible point, the
    ball projection clamped into the box). ``ball_is_box``: the ε-ball is itself a box (each coordinate
    moves within [x − ε, x + ε] independently of the others), so with the input box it is one box and
    per-coordinate intervals over it are exact (the certified bounds ask this).
    """

    name: str
    aliases: tuple[str, ...] = ()
    symbol: str
    label: str
    dual_name: str
    default_eps: str
    exact_box_projection: bool = False
    ball_is_box: bool = False

    @abstractmethod
    def norm(self, delta: Tensor) -> Tensor:
        """‖δ_i‖ for every sample i: a tensor of shape (N,)."""

    @abstractmethod
    def project(self, delta: Tensor, eps: float | Tensor) -> Tensor:
        """The Euclidean projection of each δ_i onto the ε-ball (not the box)."""

    def clip(self, x_adv: Tensor, x: Tensor, eps: float | Tensor, lower: float, upper: float) -> Tensor:
        """``x_adv`` brought inside the ε-ball around ``x`` and the box [lower, upper].

        Projecting onto the ball and then clamping into the box keeps both constraints: the clamp
        only moves coordinates towards ``x`` (which lies in the box), so it cannot leave the ball.
        """
        return (x + self.project(x_adv - x, eps)).clamp(lower, upper)

    def round_inside(self, x_adv: Tensor, x: Tensor, eps: float, lower: float, upper: float) -> Tensor:
        """Undo the rounding of x + δ for an ``x_adv`` already clipped: in floating point the stored
        x_adv − x can exceed ε by an ulp. Samples that do are scaled towards x by a few ulps more
        than needed, so the norm computed from the returned tensor is ≤ ε."""
        norms = self.norm(x_adv - x)
        over = norms > eps
        if bool(over.any()):
            factor = torch.where(over, eps / norms.clamp_min(1e-30) * (1 - 8 * torch.finfo(x.dtype).eps), 1.0)
            x_adv = (x + (x_adv - x) * expand(factor.to(x.dtype), x)).clamp(lower, upper)
        return x_adv

    @abstractmethod
    def steepest(self, grad: Tensor) -> Tensor:
        """A maximiser d of ⟨g, d⟩ over the unit ball, per sample: ⟨g, d⟩ = ‖g‖_* (0 for g = 0)."""

    def ascent_direction(
        self,
        grad: Tensor,
        x_adv: Tensor | None = None,
        lower: float = 0.0,
        upper: float = 1.0,
        sparsity: float = L1_SPARSITY,
    ) -> Tensor:
        """The unit-norm direction a gradient attack steps along from ``x_adv`` (when given) in the
        box [lower, upper]: :meth:`steepest` unless the norm needs something more practical."""
        return self.steepest(grad)

    @abstractmethod
    def random_point(self, shape: torch.Size, eps: float, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
        """Perturbations of ``shape`` drawn uniformly from the ε-ball, on the generator's device,
        using only ``generator``."""

    @abstractmethod
    def box_diameter(self, d: int | None, width: float = 1.0) -> float | None:
        """max ‖a − b‖ over a, b in a box of ``d`` values, each ``width`` wide; None when it depends
        on ``d`` and ``d`` is unknown."""

    @property
    def dual(self) -> NormGeometry:
        """The geometry of the dual norm."""
        return get_geometry(self.dual_name)

    def dual_norm(self, w: Tensor) -> Tensor:
        """‖w_i‖_* = max_{‖d‖ ≤ 1} ⟨w_i, d⟩ per sample, shape (N,)."""
        return self.dual.norm(w)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"


class LinfGeometry(NormGeometry):
    """‖δ‖∞ = max_i |δ_i|. The ball is a cube, so the projection clips each coordinate and, with
    the box, is the exact projection onto ball ∩ box. Steepest ascent: sign(g), dual norm L1."""

    name = "inf"
    aliases = ("infinity", "∞")
    symbol = "∞"
    label = "L∞"
    dual_name = "1"
    default_eps = "0,0.02,0.05,0.1,0.2,0.3"
    exact_box_projection = True
    ball_is_box = True

    def norm(self, delta: Tensor) -> Tensor:
        fl = flat(delta)
        return fl.abs().amax(dim=1) if fl.shape[1] else fl.new_zeros(fl.shape[0])

    def project(self, delta: Tensor, eps: float | Tensor) -> Tensor:
        return project_linf(delta, eps)

    def round_inside(self, x_adv: Tensor, x: Tensor, eps: float, lower: float, upper: float) -> Tensor:
        """Coordinates whose stored x_adv − x exceeds ε move one ulp towards x."""
        over = (x_adv - x).abs() > eps
        if bool(over.any()):
            x_adv = torch.where(over, torch.nextafter(x_adv, x), x_adv)
        return x_adv

    def steepest(self, grad: Tensor) -> Tensor:
        return grad.sign()

    def random_point(self, shape: torch.Size, eps: float, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
        """U(−ε, ε) per coordinate."""
        return (torch.rand(shape, generator=generator, device=generator.device, dtype=dtype) * 2 - 1) * eps

    def box_diameter(self, d: int | None, width: float = 1.0) -> float | None:
        return width


class _LpGeometry(NormGeometry):
    """A norm whose uniform random point is a uniform radius ε·u^{1/d} (u ~ U(0, 1), drawn first)
    times a random direction of unit norm with the right distribution (:meth:`_direction`)."""

    def random_point(self, shape: torch.Size, eps: float, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
        device = generator.device
        n, d = shape[0], int(torch.Size(shape[1:]).numel())
        radius = eps * torch.rand(n, generator=generator, device=device, dtype=dtype) ** (1.0 / max(d, 1))
        return (self._direction(n, d, generator, dtype) * radius[:, None]).reshape(shape)

    @abstractmethod
    def _direction(self, n: int, d: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
        """(n, d) points on the unit sphere whose scaling by ε·u^{1/d} is uniform in the ball."""


class L2Geometry(_LpGeometry):
    """‖δ‖₂. Projection: δ·min(1, ε/‖δ‖₂), then a clamp into the box (feasible, not the exact
    projection onto the intersection). Steepest ascent: g/‖g‖₂; the norm is its own dual."""

    name = "2"
    aliases = ("2.0",)
    symbol = "₂"
    label = "L2"
    dual_name = "2"
    default_eps = "0,0.25,0.5,1,1.5,2"

    def norm(self, delta: Tensor) -> Tensor:
        return flat(delta).norm(p=2, dim=1)

    def project(self, delta: Tensor, eps: float | Tensor) -> Tensor:
        return project_l2(delta, eps)

    def steepest(self, grad: Tensor) -> Tensor:
        fl = grad.reshape(grad.shape[0], -1)
        return (fl / fl.norm(dim=1, keepdim=True).clamp_min(TINY)).reshape(grad.shape)

    def _direction(self, n: int, d: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
        """A normalised Gaussian: uniform on the sphere."""
        direction = torch.randn(n, d, generator=generator, device=generator.device, dtype=dtype)
        return direction / direction.norm(dim=1, keepdim=True).clamp_min(TINY)

    def box_diameter(self, d: int | None, width: float = 1.0) -> float | None:
        return None if d is None else width * d**0.5


class L1Geometry(_LpGeometry):
    """‖δ‖₁. Projection: exact onto the ball (:func:`project_l1`) and onto ball ∩ box
    (:func:`project_l1_box`). Steepest ascent: all mass on the largest |g_k|; dual norm L∞."""

    name = "1"
    aliases = ("1.0",)
    symbol = "₁"
    label = "L1"
    dual_name = "inf"
    default_eps = "0,1,2,4,8,12"
    exact_box_projection = True

    def norm(self, delta: Tensor) -> Tensor:
        return flat(delta).abs().sum(dim=1)

    def project(self, delta: Tensor, eps: float | Tensor) -> Tensor:
        return project_l1(delta, eps)

    def clip(self, x_adv: Tensor, x: Tensor, eps: float | Tensor, lower: float, upper: float) -> Tensor:
        delta = project_l1_box(x_adv - x, lower - x, upper - x, eps)
        return (x + delta).clamp(lower, upper)

    def steepest(self, grad: Tensor) -> Tensor:
        """sign(g_k) on the largest |g_k|, split evenly among ties."""
        return top_k_direction(grad, 1)

    def ascent_direction(
        self,
        grad: Tensor,
        x_adv: Tensor | None = None,
        lower: float = 0.0,
        upper: float = 1.0,
        sparsity: float = L1_SPARSITY,
    ) -> Tensor:
        """The exact steepest direction puts all mass on one coordinate, which makes slow
        progress; like Tramèr & Boneh (2019) the step is spread over the top (1 − ``sparsity``)
        share of the coordinates: sign(g_k)/k on those, 0 elsewhere. Given ``x_adv``, coordinates
        the box stops (at the edge in the direction of their gradient) are left out first: the
        sparse step would spend its mass on them and lose it to the clip."""
        if x_adv is not None:
            grad = grad * movable(x_adv, grad, lower, upper)
        d = grad.reshape(grad.shape[0], -1).shape[1]
        return top_k_direction(grad, max(1, int(round((1.0 - sparsity) * d))))

    def _direction(self, n: int, d: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
        """e/Σe over d + 1 exponentials (uniform on the simplex), with random signs."""
        device = generator.device
        exps = -torch.log(torch.rand(n, d + 1, generator=generator, device=device, dtype=dtype).clamp_min(TINY))
        direction = exps[:, :d] / exps.sum(dim=1, keepdim=True)
        signs = torch.randint(0, 2, (n, d), generator=generator, device=device).to(dtype) * 2 - 1
        return direction * signs

    def box_diameter(self, d: int | None, width: float = 1.0) -> float | None:
        return None if d is None else width * d


GEOMETRIES: dict[str, NormGeometry] = {}


def register_geometry(geometry: NormGeometry) -> NormGeometry:
    """Add a norm; its name and aliases must be new. ``ThreatModel``, ``--norm`` and the reports
    then know it."""
    taken = {alias for g in GEOMETRIES.values() for alias in (g.name, *g.aliases)}
    for name in (geometry.name, *geometry.aliases):
        if name in taken:
            raise ValueError(f"a norm named {name!r} is already registered")
    GEOMETRIES[geometry.name] = geometry
    return geometry


def unregister_geometry(name: str) -> None:
    """Remove a norm added with :func:`register_geometry` (for tests and plugins)."""
    GEOMETRIES.pop(name, None)


def parse_norm(value: str | int | float) -> str:
    """The canonical name of a norm from a spelling such as ``inf``, ``Linf``, ``l2``, ``2.0``, ``1``."""
    raw = str(value).strip().lower()
    for text in (raw, raw.lstrip("l")):
        for geometry in GEOMETRIES.values():
            if text == geometry.name or text in geometry.aliases:
                return geometry.name
    raise UsageError(f"unknown norm {value!r}: use one of {', '.join(GEOMETRIES)}")


def get_geometry(norm: str) -> NormGeometry:
    """The geometry of a canonical norm name (see :func:`parse_norm` for user spellings)."""
    try:
        return GEOMETRIES[norm]
    except (KeyError, TypeError):
        raise UsageError(f"unknown norm {norm!r}") from None


LINF = register_geometry(LinfGeometry())
L2 = register_geometry(L2Geometry())
L1 = register_geometry(L1Geometry())
