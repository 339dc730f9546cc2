"""Threat models: a norm, a budget ε and the valid input box.

An adversary may replace ``x`` by any ``x'`` with ``‖x' − x‖_p ≤ ε`` and ``lower ≤ x' ≤ upper``
(pixels in [0, 1] by default). Norms are taken per sample over every dimension but the first.
What depends on the norm (norms, projections, directions, random starts) is in
:mod:`advgrad.core.geometry`; :class:`ThreatModel` delegates to it (``threat.geometry``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import Tensor

from advgrad.core.errors import UsageError
from advgrad.core.geometry import (  # noqa: F401  (the projections are re-exported: advgrad.core.threat.project_l1_box)
    NormGeometry,
    get_geometry,
    parse_norm,
    project_l1,
    project_l1_box,
    project_l2,
    project_linf,
)
from advgrad.core.geometry import flat as _flat
from advgrad.core.numeric import FLOAT32_MAX

Norm = Literal["inf", "2", "1"]
NORMS: tuple[Norm, ...] = ("inf", "2", "1")  # the built-in norms; advgrad.core.geometry.GEOMETRIES holds every one

# Relative slack used when checking that a result lies inside its ball: projections computed in
# float32 can overshoot ε by a few ulps.
NORM_TOLERANCE = 1e-5


def per_sample_norm(t: Tensor, norm: Norm) -> Tensor:
    """‖t_i‖_p for every sample i: a tensor of shape (N,)."""
    return get_geometry(norm).norm(t)


@dataclass(frozen=True)
class ThreatModel:
    """What the adversary may do: move each input by at most ``eps`` in the ``norm`` ball, staying
    inside the box [``lower``, ``upper``], leaving the coordinates ``fixed`` (indices into each
    sample flattened, e.g. a table's immutable features) as they are.

    Holding coordinates fixed is exact for every norm: :meth:`project` and :meth:`clip` first set
    those coordinates of the perturbation to 0, and each projection (L∞ clamp, L2 scaling, L1
    soft-threshold, L1∩box) keeps a zero coordinate at 0.

    >>> threat = ThreatModel("inf", 8 / 255)
    >>> x_adv = threat.clip(x_adv, x)      # back inside the ball and the box
    """

    norm: Norm
    eps: float
    lower: float = 0.0
    upper: float = 1.0
    fixed: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", parse_norm(self.norm))
        object.__setattr__(self, "fixed", tuple(sorted({int(i) for i in self.fixed})))
        if self.fixed and self.fixed[0] < 0:
            raise UsageError(f"fixed input coordinates are indices ≥ 0, got {self.fixed[0]}")
        if not math.isfinite(self.eps) or self.eps < 0:
            raise UsageError(f"ε must be a finite number ≥ 0, got {self.eps}")
        if not (math.isfinite(self.lower) and math.isfinite(self.upper) and self.lower < self.upper):
            raise UsageError(f"the input box needs finite lower < upper, got [{self.lower}, {self.upper}]")
        if self.upper - self.lower > FLOAT32_MAX:  # float32 would see an infinite width: NaN in every scaling
            raise UsageError(
                f"the input box [{self.lower:g}, {self.upper:g}] is wider than float32's range ({FLOAT32_MAX:.3g})"
            )

    @property
    def geometry(self) -> NormGeometry:
        """Everything that depends on the norm: projections, steepest direction, random start…"""
        return get_geometry(self.norm)

    def held(self, like: Tensor) -> Tensor:
        """A bool row over the coordinates of one sample of ``like``: True at the :attr:`fixed` ones.

        Built once per device and size (kept beside the fields), so the step loops copy nothing
        from the host."""
        d = like[0].numel() if like.shape[0] else like.shape[1:].numel()
        cache = self.__dict__.setdefault("_held", {})
        key = (like.device, d)
        if key not in cache:
            if self.fixed[-1] >= d:
                raise UsageError(f"fixed input coordinate {self.fixed[-1]} is out of range: inputs have {d} values")
            mask = torch.zeros(d, dtype=torch.bool)
            mask[list(self.fixed)] = True
            cache[key] = mask.to(like.device)
        return cache[key]

    def hold(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """``x_adv`` with the :attr:`fixed` coordinates of each sample set back to those of ``x``."""
        if not self.fixed:
            return x_adv
        flat = torch.where(self.held(x_adv), x.flatten(1).to(x_adv.dtype), x_adv.flatten(1))
        return flat.reshape(x_adv.shape)

    def project(self, delta: Tensor) -> Tensor:
        """Project a perturbation onto the ε-ball of this norm (not the box), fixed coordinates at 0."""
        if self.fixed:
            delta = self.hold(delta, torch.zeros_like(delta))
        return self.geometry.project(delta, self.eps)

    def clip(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Bring ``x_adv`` inside the ε-ball around ``x`` and inside the box.

        The ball projection followed by a clamp into the box, which keeps both constraints; for L∞
        and L1 the exact projection onto the intersection (:func:`project_l1_box` for L1).
        """
        return self.geometry.clip(self.hold(x_adv, x), x, self.eps, self.lower, self.upper)

    def clip_exact(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """:meth:`clip`, then undo the rounding of x + δ: in floating point the stored x_adv − x can
        exceed ε by an ulp. Coordinates (L∞) or samples (L2, L1) that do are moved towards x by the
        smallest representable amount, so the norm computed from the returned tensor is ≤ ε."""
        return self.geometry.round_inside(self.clip(x_adv, x), x, self.eps, self.lower, self.upper)

    def norm_of(self, delta: Tensor) -> Tensor:
        """Per-sample norm of ``delta`` in this threat model's norm."""
        return self.geometry.norm(delta)

    def contains(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Per-sample check that ``x_adv`` is inside the ball (with float slack) and the box."""
        slack = NORM_TOLERANCE * max(self.eps, 1.0)
        in_ball = self.norm_of(x_adv - x) <= self.eps + slack
        flat = _flat(x_adv)
        in_box = (flat >= self.lower - 1e-6).all(dim=1) & (flat <= self.upper + 1e-6).all(dim=1)
        if self.fixed:
            moved = (flat != _flat(x).to(flat.dtype)) & self.held(x_adv)
            in_box &= ~moved.any(dim=1)
        return in_ball & in_box

    def to_dict(self) -> dict:
        out = asdict(self)
        out["fixed"] = list(self.fixed)
        if not self.fixed:  # the same dictionary as before fixed coordinates existed
            del out["fixed"]
        return out


def eps_beyond_box(norm: Norm, eps_values: list[float], features: int) -> str | None:
    """A one-line warning when an ε exceeds the box's diameter, else None.

    Such a ball holds the whole input box: every input can be moved to any other, so the number
    means nothing, and the value is almost always pixel units (0–255) mistaken for [0, 1] ones.
    """
    geometry = get_geometry(norm)
    diameter = geometry.box_diameter(features)
    large = sorted({e for e in eps_values if e > diameter * (1 + NORM_TOLERANCE)})
    if not large:
        return None
    shown = ", ".join(f"{e:g}" for e in large)
    each = "" if geometry.box_diameter(2) == geometry.box_diameter(1) else f" ({features} values each)"
    text = (
        f"ε = {shown} exceeds {diameter:g}, the largest {geometry.label} distance between two inputs in [0, 1]"
        f"{each}: any input can become any other"
    )
    whole = [e for e in large if e == int(e) and e <= 255]
    if whole:
        text += "; did you mean " + " or ".join(f"{int(e)}/255" for e in whole[:3]) + "?"
    return text
