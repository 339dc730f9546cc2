"""advgrad/core/threat.py: parsing norms and ε, per-sample norms, projections, the ThreatModel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import independent_norm
from hypothesis import given, settings
from hypothesis import strategies as st

from advgrad.core.eps import parse_eps, parse_eps_list
from advgrad.core.errors import UsageError
from advgrad.core.threat import (
    NORMS,
    ThreatModel,
    parse_norm,
    per_sample_norm,
    project_l1,
    project_l2,
    project_linf,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("inf", "inf"),
        ("Linf", "inf"),
        ("linf", "inf"),
        ("∞", "inf"),
        ("2", "2"),
        ("l2", "2"),
        ("L2", "2"),
        (2, "2"),
        ("1", "1"),
        ("l1", "1"),
        (1.0, "1"),
    ],
)
def test_parse_norm_accepts_usual_spellings(text, expected):
    assert parse_norm(text) == expected


@pytest.mark.parametrize("text", ["3", "l0", "max", "", "linfinity2"])
def test_parse_norm_rejects_unknown(text):
    with pytest.raises(UsageError, match="unknown norm"):
        parse_norm(text)


@pytest.mark.parametrize(
    "text, expected",
    [("0.03", 0.03), ("8/255", 8 / 255), (" 16 / 255 ", 16 / 255), ("0", 0.0), ("1e-2", 0.01), (0.5, 0.5)],
)
def test_parse_eps_decimals_and_fractions(text, expected):
    assert parse_eps(text) == pytest.approx(expected, rel=0, abs=1e-15)


@pytest.mark.parametrize("text", ["abc", "-1", "-8/255", "1/0", "inf", "nan", "", "8/", "/255", "1/2/3"])
def test_parse_eps_rejects_bad_values(text):
    with pytest.raises(UsageError):
        parse_eps(text)


def test_parse_eps_names_the_quantity_in_messages():
    with pytest.raises(UsageError, match="--step-size"):
        parse_eps("x", "--step-size")


def test_parse_eps_list():
    assert parse_eps_list("0,1/255,2/255") == pytest.approx([0, 1 / 255, 2 / 255])
    assert parse_eps_list(["0.1", "0.2,0.3"]) == pytest.approx([0.1, 0.2, 0.3])
    assert parse_eps_list("0.1,") == pytest.approx([0.1])
    with pytest.raises(UsageError):
        parse_eps_list(" , ")
    with pytest.raises(UsageError):
        parse_eps_list("0.1,-0.2")


def test_per_sample_norm_known_values():
    delta = torch.tensor([[3.0, -4.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 1.0, 1.0]]).reshape(3, 1, 1, 3)
    assert per_sample_norm(delta, "inf").tolist() == [4.0, 0.0, 1.0]
    assert per_sample_norm(delta, "2").tolist() == pytest.approx([5.0, 0.0, math.sqrt(3)])
    assert per_sample_norm(delta, "1").tolist() == [7.0, 0.0, 3.0]


@pytest.mark.parametrize("norm", NORMS)
def test_norms_and_projections_of_zero_samples(norm):
    """An empty batch (e.g. nothing fooled at some ε) has empty norms, not an error."""
    empty = torch.zeros(0, 1, 5, 5)
    assert per_sample_norm(empty, norm).shape == (0,)
    threat = ThreatModel(norm, 0.1)
    assert threat.clip(empty, empty).shape == empty.shape
    assert threat.contains(empty, empty).shape == (0,)


@given(st.integers(1, 4), st.integers(1, 12), st.sampled_from(NORMS), st.integers(0, 2**31 - 1))
def test_per_sample_norm_matches_numpy(n, d, norm, seed):
    delta = torch.randn(n, 1, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert torch.allclose(per_sample_norm(delta, norm), independent_norm(delta, norm), rtol=1e-12, atol=0)


def _l1_projection_by_bisection(v: np.ndarray, eps: float) -> np.ndarray:
    """Reference: find θ ≥ 0 with Σ max(|v| − θ, 0) = ε by bisection, independently of advgrad."""
    if np.abs(v).sum() <= eps:
        return v.copy()
    lo, hi = 0.0, float(np.abs(v).max())
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.maximum(np.abs(v) - mid, 0).sum() > eps:
            lo = mid
        else:
            hi = mid
    return np.sign(v) * np.maximum(np.abs(v) - hi, 0)


@settings(max_examples=60)
@given(st.integers(1, 3), st.integers(1, 20), st.floats(0.0, 3.0), st.floats(0.1, 4.0), st.integers(0, 2**31 - 1))
def test_projections_match_independent_references(n, d, eps, scale, seed):
    delta = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    v = delta.numpy()

    expected_inf = np.clip(v, -eps, eps)
    assert np.allclose(project_linf(delta, eps).numpy(), expected_inf, rtol=0, atol=1e-15)

    norms = np.sqrt((v**2).sum(axis=1, keepdims=True))
    expected_l2 = np.where(norms > eps, v * eps / np.maximum(norms, 1e-300), v)
    assert np.allclose(project_l2(delta, eps).numpy(), expected_l2, rtol=1e-12, atol=1e-15)

    expected_l1 = np.stack([_l1_projection_by_bisection(row, eps) for row in v])
    assert np.allclose(project_l1(delta, eps).numpy(), expected_l1, rtol=0, atol=1e-9)


def test_projections_accept_per_sample_eps():
    delta = torch.tensor([[2.0, 0.0], [0.0, -2.0]], dtype=torch.float64)
    eps = torch.tensor([1.0, 0.5], dtype=torch.float64)
    assert project_linf(delta, eps).tolist() == [[1.0, 0.0], [0.0, -0.5]]
    assert project_l2(delta, eps).tolist() == [[1.0, 0.0], [0.0, -0.5]]
    assert project_l1(delta, eps).tolist() == [[1.0, 0.0], [0.0, -0.5]]


def test_l1_projection_known_answer():
    # |v| = (3, 1, 0.5), ε = 2: θ = 1 keeps (2, 0, 0); sum 2. ✓
    delta = torch.tensor([[3.0, -1.0, 0.5]], dtype=torch.float64)
    assert project_l1(delta, 2.0).tolist() == [[2.0, 0.0, 0.0]]
    # θ = 0.25 for ε = 3.75: (2.75, −0.75, 0.25) sums to 3.75.
    expected = torch.tensor([[2.75, -0.75, 0.25]], dtype=torch.float64)
    assert torch.allclose(project_l1(delta, 3.75), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf")])
def test_threat_model_rejects_bad_eps(eps):
    with pytest.raises(UsageError):
        ThreatModel("inf", eps)


def test_threat_model_rejects_bad_box_and_norm():
    with pytest.raises(UsageError):
        ThreatModel("inf", 0.1, lower=1.0, upper=0.0)
    with pytest.raises(UsageError):
        ThreatModel("3", 0.1)
    assert ThreatModel("L2", 0.5).norm == "2"


@settings(max_examples=40)
@given(st.sampled_from(NORMS), st.floats(0.0, 2.0), st.integers(1, 3), st.integers(1, 16), st.integers(0, 2**31 - 1))
def test_clip_lands_in_ball_and_box(norm, eps, n, d, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, d, generator=gen, dtype=torch.float64)
    wild = x + 3 * torch.randn(n, 1, d, generator=gen, dtype=torch.float64)
    threat = ThreatModel(norm, eps)
    clipped = threat.clip(wild, x)
    assert bool((independent_norm(clipped - x, norm) <= eps * (1 + 1e-12) + 1e-12).all())
    assert float(clipped.min()) >= 0.0 and float(clipped.max()) <= 1.0
    assert bool(threat.contains(clipped, x).all())
    if norm == "inf":  # the exact projection onto the intersection of the box and the ball
        expected = torch.minimum(torch.maximum(wild, (x - eps).clamp_min(0)), (x + eps).clamp_max(1))
        assert torch.allclose(clipped, expected, rtol=0, atol=1e-15)


def test_clip_leaves_points_inside_alone():
    x = torch.full((2, 1, 2, 2), 0.5, dtype=torch.float64)
    inside = x + 0.01
    for norm in NORMS:
        assert torch.equal(ThreatModel(norm, 0.1).clip(inside, x), inside)


def test_contains_detects_points_outside_ball_or_box():
    x = torch.full((1, 4), 0.5)
    threat = ThreatModel("inf", 0.1)
    assert threat.contains(x + 0.1, x).tolist() == [True]
    assert threat.contains(x + 0.11, x).tolist() == [False]
    x0 = torch.zeros(1, 4)
    assert threat.contains(x0 - 0.05, x0).tolist() == [False]  # in the ball, outside the box
    assert ThreatModel("2", 0.1).contains(x + 0.06, x).tolist() == [False]  # ‖δ‖₂ = 0.12
    assert ThreatModel("1", 0.5).contains(x + 0.1, x).tolist() == [True]  # ‖δ‖₁ = 0.4


def test_to_dict_round_trips():
    threat = ThreatModel("2", 0.5)
    assert ThreatModel(**threat.to_dict()) == threat
