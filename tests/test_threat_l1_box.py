"""The exact projection onto the L1 ball intersected with the box, against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advgrad.core.threat import ThreatModel, project_l1_box


def brute_force_projection(v: np.ndarray, low: np.ndarray, high: np.ndarray, eps: float) -> np.ndarray:
    """argmin ‖δ − v‖₂ over {‖δ‖₁ ≤ ε, low ≤ δ ≤ high} by enumerating faces.

    Inside one orthant (signs s) the set is a polytope; its constraints are 0 ≤ s_iδ_i ≤ u_i and
    Σ s_iδ_i ≤ ε. The projection is the projection onto the affine hull of the face it lies on, so
    trying every face (each coordinate free, at 0 or at its bound; the L1 constraint active or
    not), keeping the feasible candidates and taking the closest is exact. Nothing here uses the
    soft-threshold form that the code under test relies on.
    """
    d = v.shape[0]
    best, best_dist = None, np.inf
    for signs in itertools.product((-1.0, 1.0), repeat=d):
        s = np.array(signs)
        u = np.where(s > 0, high, -low)
        for states in itertools.product(("free", "zero", "bound"), repeat=d):
            fixed = np.array([st != "free" for st in states])
            base = np.array([0.0 if st != "bound" else s[i] * u[i] for i, st in enumerate(states)])
            for l1_active in (False, True):
                cand = np.where(fixed, base, v)
                if l1_active:
                    free = ~fixed
                    if not free.any():
                        continue
                    rhs = eps - np.sum(s[fixed] * base[fixed])
                    lam = (rhs - np.sum(s[free] * v[free])) / free.sum()
                    cand = np.where(free, v + lam * s, base)
                feasible = (
                    np.all(s * cand >= -1e-12) and np.all(s * cand <= u + 1e-12) and np.sum(np.abs(cand)) <= eps + 1e-12
                )
                dist = np.sum((cand - v) ** 2)
                if feasible and dist < best_dist:
                    best, best_dist = cand, dist
    return best


@settings(max_examples=60, deadline=None)
@given(
    d=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
    eps=st.floats(0.01, 3.0),
    scale=st.floats(0.1, 3.0),
)
def test_matches_brute_force(d: int, seed: int, eps: float, scale: float) -> None:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, d)
    x[rng.uniform(size=d) < 0.2] = 0.0  # pixels on the box edges
    x[rng.uniform(size=d) < 0.2] = 1.0
    v = rng.normal(0, scale, d)
    low, high = -x, 1 - x
    expected = brute_force_projection(v, low, high, eps)
    got = project_l1_box(torch.tensor(v)[None], torch.tensor(low)[None], torch.tensor(high)[None], eps)[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_batch_with_per_sample_eps_and_image_shape() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 2, 2, generator=gen, dtype=torch.float64)
    v = torch.randn(5, 1, 2, 2, generator=gen, dtype=torch.float64)
    eps = torch.tensor([0.1, 0.5, 1.0, 2.0, 10.0], dtype=torch.float64)
    got = project_l1_box(v, -x, 1 - x, eps)
    for i in range(5):
        expected = brute_force_projection(
            v[i].flatten().numpy(), -x[i].flatten().numpy(), (1 - x[i]).flatten().numpy(), float(eps[i])
        )
        np.testing.assert_allclose(got[i].flatten().numpy(), expected, atol=1e-9)


def test_l1_threat_clip_is_the_exact_projection_and_feasible() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(200, 1, 3, 3, generator=gen)
    x_adv = x + 2 * torch.randn(x.shape, generator=gen)
    threat = ThreatModel("1", 1.5)
    clipped = threat.clip(x_adv, x)
    assert bool(threat.contains(clipped, x).all())
    # The naive ball-then-box clip is feasible too, but never closer than the exact projection.
    naive = (x + threat.project(x_adv - x)).clamp(0, 1)
    dist_exact = (clipped - x_adv).flatten(1).norm(dim=1)
    dist_naive = (naive - x_adv).flatten(1).norm(dim=1)
    assert bool((dist_exact <= dist_naive + 1e-5).all())
    assert bool((dist_exact < dist_naive - 1e-3).any())


@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_tiny_eps(eps: float) -> None:
    v = torch.tensor([[0.3, -0.2, 0.1]], dtype=torch.float64)
    x = torch.full_like(v, 0.5)
    got = project_l1_box(v, -x, 1 - x, eps)
    assert float(got.abs().sum()) <= eps + 1e-12
