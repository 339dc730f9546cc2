"""DeepFool and Carlini–Wagner on affine classifiers, where the minimal perturbation is known.

For a binary affine classifier with score f(x) = w·x + b the smallest L2 perturbation that flips
the label is |f(x)|/‖w‖₂ (L∞: |f(x)|/‖w‖₁), reached at x − f(x)·w/‖w‖₂². When the box [0, 1] binds,
the smallest perturbation inside it is δ_i = clip(λ·w_i, −x_i, 1 − x_i) for the smallest λ that
crosses the boundary, found here by bisection on λ (an independent computation).
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from advgrad.attacks import CWParams, DeepFoolParams, cw, deepfool, find_minimal, get_attack
from advgrad.attacks.minimal import shrink, unbounded_threat
from advgrad.core.threat import ThreatModel


class BinaryAffine(nn.Module):
    """Logits (−f/2, f/2) with f = w·x + b: class 1 iff f > 0."""

    def __init__(self, w: Tensor, b: float):
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.tensor(float(b), dtype=w.dtype))

    def score(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.w.flatten() + self.b

    def forward(self, x: Tensor) -> Tensor:
        f = self.score(x)
        return torch.stack([-f / 2, f / 2], dim=1)


def _setup(seed: int, n: int = 24, dtype=torch.float64) -> tuple[BinaryAffine, Tensor, Tensor]:
    """A random affine model and n points in [0.3, 0.7]^16 at L2 distance ≥ 0.03 from its boundary,
    on both sides."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(1, 4, 4, generator=gen, dtype=dtype)
    x = 0.3 + 0.4 * torch.rand(4 * n, 1, 4, 4, generator=gen, dtype=dtype)
    model = BinaryAffine(w, 0.0)
    with torch.no_grad():
        model.b.fill_(-float(model.score(x).median()) + 1e-3)  # about half of the points on each side
        x = x[_l2_distance(model, x) >= 0.03][:n]
        y = (model.score(x) > 0).long()
    return model, x, y


def _l2_distance(model: BinaryAffine, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model.score(x).abs() / model.w.flatten().norm()


def _boundary_point_in_box(model: BinaryAffine, x: Tensor, norm: str) -> Tensor:
    """True where the closest boundary point (no box) lies inside [0, 1]."""
    with torch.no_grad():
        f = model.score(x)
        w = model.w.flatten()
        if norm == "2":
            step = -f[:, None] * w[None] / w.norm() ** 2
        else:
            step = -f[:, None] * w.sign()[None] / w.abs().sum()
        point = x.flatten(1) + step
        return ((point >= 0) & (point <= 1)).all(dim=1)


def _box_minimal_l2(model: BinaryAffine, x: Tensor) -> Tensor:
    """min ‖δ‖₂ s.t. f(x + δ) crosses 0 and x + δ ∈ [0, 1]: δ = clip(λ·s·w, −x, 1 − x), bisection on λ."""
    with torch.no_grad():
        f = model.score(x)
        w = model.w.flatten()[None] * (-f.sign())[:, None]  # direction that moves f towards 0
        xf = x.flatten(1)
        lo = torch.zeros_like(f)
        hi = torch.full_like(f, 1e3)
        for _ in range(200):
            mid = (lo + hi) / 2
            delta = torch.maximum(torch.minimum(mid[:, None] * w, 1 - xf), -xf)
            crossed = (model.score((xf + delta).reshape(x.shape)) * f.sign()) <= 0
            hi = torch.where(crossed, mid, hi)
            lo = torch.where(crossed, lo, mid)
        delta = torch.maximum(torch.minimum(hi[:, None] * w, 1 - xf), -xf)
        return delta.norm(dim=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deepfool_l2_finds_distance_to_hyperplane(seed: int) -> None:
    model, x, y = _setup(seed)
    threat = ThreatModel("2", 100.0)
    x_adv = deepfool(model, x, y, threat=threat)
    norms = (x_adv - x).flatten(1).norm(dim=1)
    expected = _l2_distance(model, x)
    inside = _boundary_point_in_box(model, x, "2")
    assert inside.sum() >= 10
    assert torch.allclose(norms[inside], expected[inside], rtol=0.01)
    assert bool((model(x_adv).argmax(1) != y).all())
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1


@pytest.mark.parametrize("seed", [0, 1])
def test_deepfool_linf_finds_distance_to_hyperplane(seed: int) -> None:
    model, x, y = _setup(seed)
    x_adv = deepfool(model, x, y, threat=ThreatModel("inf", 1.0))
    norms = (x_adv - x).flatten(1).abs().amax(dim=1)
    with torch.no_grad():
        expected = model.score(x).abs() / model.w.abs().sum()
    inside = _boundary_point_in_box(model, x, "inf")
    assert inside.sum() >= 10
    assert torch.allclose(norms[inside], expected[inside], rtol=0.01)
    assert bool((model(x_adv).argmax(1) != y).all())


@pytest.mark.parametrize("seed", [0, 1])
def test_cw_finds_distance_to_hyperplane(seed: int) -> None:
    model, x, y = _setup(seed)
    x_adv = cw(model, x, y, threat=ThreatModel("2", 100.0))
    norms = (x_adv - x).flatten(1).norm(dim=1)
    expected = _l2_distance(model, x)
    inside = _boundary_point_in_box(model, x, "2")
    assert bool((model(x_adv).argmax(1) != y).all())
    assert torch.allclose(norms[inside], expected[inside], rtol=0.01)
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1


def test_box_binds() -> None:
    """Points near the box's edge: the minimum inside the box is larger than the free distance;
    CW finds it within 1%, DeepFool stays in the box and never claims less than the minimum."""
    model, x, y = _setup(3, n=16)
    gen = torch.Generator().manual_seed(5)
    corner = (torch.rand(x.shape, generator=gen, dtype=x.dtype) < 0.5).to(x.dtype)
    on_edge = torch.rand(x.shape, generator=gen) < 0.5
    x = torch.where(on_edge, corner, x)  # half the pixels at 0 or 1, like the digits
    with torch.no_grad():
        y = (model.score(x) > 0).long()
    exact = _box_minimal_l2(model, x)
    assert bool((exact > _l2_distance(model, x) * 1.02).any())  # the box does bind somewhere
    for attack in (cw, deepfool):
        x_adv = attack(model, x, y, threat=ThreatModel("2", 100.0))
        assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
        fooled = model(x_adv).argmax(1) != y
        norms = (x_adv - x).flatten(1).norm(dim=1)
        assert bool((norms[fooled] >= exact[fooled] * (1 - 1e-6)).all())
        if attack is cw:
            assert bool(fooled.all())
            assert torch.allclose(norms, exact, rtol=0.01)


def test_cw_confidence_keeps_a_margin() -> None:
    model, x, y = _setup(4)
    kappa = 1.0
    x_adv = cw(model, x, y, threat=ThreatModel("2", 100.0), params=CWParams(confidence=kappa))
    with torch.no_grad():
        f = model.score(x_adv)
    margin_over_true = torch.where(y == 1, -f, f)  # logit gap of the wrong class: |f|
    assert bool((margin_over_true >= kappa - 1e-6).all())
    # More confidence costs more distance: at least κ/‖w‖ beyond the boundary (logit gap = |f|).
    extra = (x_adv - x).flatten(1).norm(dim=1) - _l2_distance(model, x)
    assert bool((extra >= kappa / model.w.flatten().norm() * 0.99).all())


def test_targeted_minimal_attacks_reach_the_target() -> None:
    """A 3-class affine model: targeted DeepFool and CW end in the requested class."""
    gen = torch.Generator().manual_seed(7)
    with torch.random.fork_rng():  # the weights must not depend on which tests ran before
        torch.manual_seed(7)
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).double()
    x = torch.rand(20, 1, 4, 4, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    target = (y + 1) % 3
    for attack, norm in ((deepfool, "2"), (deepfool, "inf"), (cw, "2")):
        x_adv = attack(model, x, y, threat=ThreatModel(norm, 100.0), target=target)
        assert bool((model(x_adv).argmax(1) == target).all()), attack.__name__


def test_find_minimal_reports_the_real_norm_and_verifies() -> None:
    model, x, y = _setup(8)
    for name, norm in (("deepfool", "2"), ("deepfool", "inf"), ("cw", "2")):
        params = get_attack(name).make_params(steps=30, binary_steps=4)
        result = find_minimal(get_attack(name), model, x, y, norm=norm, params=params)
        delta = (result.x_adv - x).flatten(1)
        real = delta.norm(dim=1) if norm == "2" else delta.abs().amax(dim=1)
        assert torch.allclose(result.norm, real)
        assert torch.equal(result.fooled, model(result.x_adv).argmax(1) != y)


def test_unbounded_threat_never_clips_a_box_point() -> None:
    x = torch.zeros(2, 3, 5, 5)
    far = torch.ones_like(x)
    for norm in ("inf", "2", "1"):
        threat = unbounded_threat(norm, x)
        assert torch.equal(threat.clip(far, x), far)


def test_shrink_keeps_only_verified_points() -> None:
    model, x, y = _setup(9)
    far = x + 3 * (x - 0.5)
    far = far.clamp(0, 1)

    def fools(candidate: Tensor) -> Tensor:
        return model(candidate).argmax(1) != y

    out = shrink(x, far, fools)
    started_fooled = fools(far)
    assert torch.equal(fools(out), started_fooled)
    moved = (out - x).flatten(1).norm(dim=1)
    assert bool((moved <= (far - x).flatten(1).norm(dim=1) + 1e-12).all())


def test_deepfool_params_reject_bad_values() -> None:
    from advgrad.core.errors import UsageError

    with pytest.raises(UsageError):
        DeepFoolParams(steps=0).validate()
    with pytest.raises(UsageError):
        CWParams(initial_const=0).validate()
