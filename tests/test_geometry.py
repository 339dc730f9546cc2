"""The per-norm geometry table: every registered norm is complete and each operation does what it
says (projection inside the ball and idempotent, steepest direction reaching the dual norm, random
points inside the ball), and a new norm is one registration away from a working ThreatModel."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor

from advgrad.attacks import PGDParams, pgd
from advgrad.attacks.iterative import random_start
from advgrad.core.errors import UsageError
from advgrad.core.geometry import (
    GEOMETRIES,
    L1,
    L2,
    LINF,
    LinfGeometry,
    NormGeometry,
    get_geometry,
    parse_norm,
    register_geometry,
    unregister_geometry,
)
from advgrad.core.threat import NORMS, ThreatModel
from advgrad.report.fmt import norm_sub, norm_symbol

SLACK = 1e-9  # float64 throughout


def _batch(seed: int, n: int, d: int, scale: float = 1.0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, d, generator=gen, dtype=torch.float64) * scale


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_every_registered_norm_is_complete(name):
    geometry = get_geometry(name)
    for attribute in ("name", "symbol", "label", "dual_name", "default_eps"):
        assert isinstance(getattr(geometry, attribute), str) and getattr(geometry, attribute)
    assert geometry.name == name and parse_norm(name) == name
    assert geometry.dual.name in GEOMETRIES
    assert not getattr(type(geometry), "__abstractmethods__", None)  # every operation is defined
    delta, x = _batch(0, 3, 5, 0.3), torch.rand(3, 1, 5, dtype=torch.float64)
    assert geometry.norm(delta).shape == (3,)
    assert geometry.dual_norm(delta).shape == (3,)
    assert geometry.project(delta, 0.1).shape == delta.shape
    assert geometry.clip(x + delta, x, 0.1, 0.0, 1.0).shape == delta.shape
    assert geometry.round_inside(x, x, 0.1, 0.0, 1.0).shape == delta.shape
    assert geometry.steepest(delta).shape == delta.shape
    assert geometry.ascent_direction(delta, x, 0.0, 1.0).shape == delta.shape
    gen = torch.Generator().manual_seed(0)
    assert geometry.random_point(torch.Size((3, 1, 5)), 0.1, gen, torch.float64).shape == delta.shape
    assert geometry.box_diameter(5) > 0
    assert [float(e) for e in geometry.default_eps.split(",")][0] == 0.0


def test_the_built_in_norms_are_registered_and_their_duals_pair_up():
    assert tuple(GEOMETRIES)[:3] == NORMS
    assert (LINF.dual, L2.dual, L1.dual) == (L1, L2, LINF)
    for geometry in (LINF, L2, L1):
        assert geometry.dual.dual is geometry
    assert [g.symbol for g in (LINF, L2, L1)] == ["∞", "₂", "₁"]
    assert [g.label for g in (LINF, L2, L1)] == ["L∞", "L2", "L1"]


@given(
    st.sampled_from(NORMS),
    st.floats(0.0, 3.0),
    st.floats(0.01, 5.0),
    st.integers(1, 4),
    st.integers(1, 20),
    st.integers(0, 2**31 - 1),
)
def test_projection_lands_in_the_ball_and_is_idempotent(norm, eps, scale, n, d, seed):
    geometry = get_geometry(norm)
    delta = _batch(seed, n, d, scale)
    projected = geometry.project(delta, eps)
    assert (geometry.norm(projected) <= eps * (1 + SLACK) + SLACK).all()
    assert torch.allclose(geometry.project(projected, eps), projected, rtol=0, atol=1e-12)
    inside = geometry.norm(delta) <= eps
    assert torch.equal(projected[inside], delta[inside])  # a point of the ball does not move


@given(st.sampled_from(NORMS), st.floats(0.0, 3.0), st.integers(1, 4), st.integers(1, 20), st.integers(0, 2**31 - 1))
def test_clip_lands_in_ball_and_box_and_is_idempotent(norm, eps, n, d, seed):
    geometry = get_geometry(norm)
    x = torch.rand(n, 1, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x_adv = x + _batch(seed + 1, n, d)
    clipped = geometry.clip(x_adv, x, eps, 0.0, 1.0)
    assert (geometry.norm(clipped - x) <= eps * (1 + SLACK) + SLACK).all()
    assert ((clipped >= 0) & (clipped <= 1)).all()
    assert torch.allclose(geometry.clip(clipped, x, eps, 0.0, 1.0), clipped, rtol=0, atol=1e-12)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("seed", range(20))
def test_steepest_direction_is_in_the_unit_ball_and_reaches_the_dual_norm(norm, seed):
    """max_{‖d‖ ≤ 1} ⟨g, d⟩ = ‖g‖_*: the steepest direction attains it."""
    geometry = get_geometry(norm)
    g = _batch(seed, 4, 3 + seed)
    d = geometry.steepest(g)
    assert torch.allclose(geometry.norm(d), torch.ones(4, dtype=torch.float64), rtol=0, atol=1e-12)
    inner = (g * d).flatten(1).sum(dim=1)
    assert torch.allclose(inner, geometry.dual_norm(g), rtol=1e-12, atol=0)
    # no other point of the unit ball does better
    others = geometry.project(_batch(seed + 100, 4, 3 + seed, 3.0), 1.0)
    assert ((g * others).flatten(1).sum(dim=1) <= inner + 1e-12).all()


@pytest.mark.parametrize("norm", NORMS)
def test_steepest_direction_of_a_zero_gradient_is_zero(norm):
    assert torch.equal(get_geometry(norm).steepest(torch.zeros(2, 5)), torch.zeros(2, 5))


def test_l1_ascent_direction_spreads_over_the_largest_movable_coordinates():
    g = torch.tensor([[0.1, -5.0, 3.0, 0.2, -4.0, 0.0, 0.3, 0.05, 1.0, 2.0]])
    d = L1.ascent_direction(g, sparsity=0.7)  # top 30% = 3 coordinates: −5, −4, 3
    assert d[0].tolist() == pytest.approx([0, -1 / 3, 1 / 3, 0, -1 / 3, 0, 0, 0, 0, 0])
    assert float(L1.norm(d)) == pytest.approx(1.0)
    assert float((g * d).sum()) == pytest.approx((5 + 4 + 3) / 3)  # the mean of the top |g|, ≤ ‖g‖∞
    # x at the lower edge with a negative gradient cannot move: its coordinate is left out
    x_adv = torch.full_like(g, 0.5)
    x_adv[0, 1] = 0.0
    d = L1.ascent_direction(g, x_adv, 0.0, 1.0, sparsity=0.7)  # now −4, 3, 2
    assert d[0].tolist() == pytest.approx([0, 0, 1 / 3, 0, -1 / 3, 0, 0, 0, 0, 1 / 3])


def test_linf_and_l2_ascent_directions_are_the_steepest_ones():
    g = _batch(3, 5, 7)
    x_adv = torch.zeros_like(g)  # every coordinate at the lower edge: the box does not matter here
    for geometry in (LINF, L2):
        assert torch.equal(geometry.ascent_direction(g, x_adv, 0.0, 1.0), geometry.steepest(g))


@pytest.mark.parametrize("norm", NORMS)
def test_random_point_is_inside_the_ball_and_uses_only_the_generator(norm):
    geometry = get_geometry(norm)
    shape = torch.Size((200, 1, 4, 4))
    before = torch.random.get_rng_state()
    a = geometry.random_point(shape, 0.3, torch.Generator().manual_seed(1), torch.float64)
    b = geometry.random_point(shape, 0.3, torch.Generator().manual_seed(1), torch.float64)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(a, b) and a.shape == shape
    norms = geometry.norm(a)
    assert (norms <= 0.3 * (1 + SLACK)).all()
    assert float(norms.max()) > 0.25  # spread over the ball, not stuck at its centre


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("d", [1, 3, 64])
def test_box_diameter_is_the_distance_between_opposite_corners(norm, d):
    geometry = get_geometry(norm)
    corner = torch.full((1, d), 0.75, dtype=torch.float64)
    assert geometry.box_diameter(d, 0.75) == pytest.approx(float(geometry.norm(corner)[0]), rel=1e-12)
    assert geometry.box_diameter(None) in (None, geometry.box_diameter(1))


def test_parse_norm_reads_each_geometry_aliases_and_get_geometry_refuses_unknown_names():
    assert [parse_norm(t) for t in ("Linf", "∞", "infinity", "L2", "2.0", "l1", 1)] == [
        "inf",
        "inf",
        "inf",
        "2",
        "2",
        "1",
        "1",
    ]
    with pytest.raises(UsageError, match="unknown norm"):
        get_geometry("3")
    with pytest.raises(ValueError, match="already registered"):
        register_geometry(LinfGeometry())


class HalfLinf(NormGeometry):
    """A toy norm for the registry test: ‖δ‖ = 2·max|δ_i| (the L∞ ball of radius ε/2)."""

    name = "half"
    symbol = "½"
    label = "L½"
    dual_name = "half-dual"
    default_eps = "0,0.1"

    def norm(self, delta: Tensor) -> Tensor:
        return 2 * LINF.norm(delta)

    def project(self, delta: Tensor, eps: float | Tensor) -> Tensor:
        return LINF.project(delta, eps / 2)

    def steepest(self, grad: Tensor) -> Tensor:
        return grad.sign() / 2

    def random_point(self, shape, eps, generator, dtype) -> Tensor:
        return LINF.random_point(shape, eps / 2, generator, dtype)

    def box_diameter(self, d: int | None, width: float = 1.0) -> float | None:
        return 2 * width


class HalfLinfDual(HalfLinf):
    """Its dual: ‖w‖_* = max_{2‖d‖∞ ≤ 1} ⟨w, d⟩ = ‖w‖₁/2."""

    name, dual_name = "half-dual", "half"

    def norm(self, delta: Tensor) -> Tensor:
        return L1.norm(delta) / 2


@pytest.fixture
def half_norm():
    register_geometry(HalfLinf())
    register_geometry(HalfLinfDual())
    yield
    unregister_geometry("half")
    unregister_geometry("half-dual")


def test_a_registered_toy_norm_works_in_threat_models_attacks_and_reports(half_norm, digits_model, digits_test):
    threat = ThreatModel("Lhalf", 0.2)  # spelt as users spell norms
    assert threat.norm == "half" and threat.geometry.name == "half"
    x = digits_test.x[:16].float()
    y = digits_test.y[:16]
    wild = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    clipped = threat.clip_exact(wild, x)
    assert float((clipped - x).abs().max()) <= 0.1 + 1e-7 and bool(threat.contains(clipped, x).all())
    start = random_start(x.shape, threat, torch.Generator().manual_seed(0), x.dtype)
    assert float(start.abs().max()) <= 0.1
    g = torch.randn(4, 9, dtype=torch.float64)
    assert torch.allclose((g * threat.geometry.steepest(g)).sum(dim=1), threat.geometry.dual_norm(g))
    x_adv = pgd(
        digits_model, x, y, threat=threat, params=PGDParams(steps=5), generator=torch.Generator().manual_seed(0)
    )
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6
    assert norm_symbol("half") == "L½" and norm_sub("half") == "½"
    assert math.isclose(threat.geometry.box_diameter(64), 2.0)
