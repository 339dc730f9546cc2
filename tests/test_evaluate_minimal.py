"""The evaluation path of minimal-perturbation attacks: one run gives the whole curve.

On an affine binary classifier the smallest L2 perturbation of each sample is known in closed
form (|w·x + b|/‖w‖), so the accuracy at every ε and the median minimal norm are known answers.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import Tensor, nn

from advgrad.attacks import get_attack
from advgrad.attacks.base import AttackParams, AttackSpec
from advgrad.core.threat import ThreatModel
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.generate import generate
from advgrad.evaluation.sweep import evaluate


class Affine(nn.Module):
    def __init__(self, w: Tensor, b: float):
        super().__init__()
        self.w = nn.Parameter(w)
        self.b = b

    def forward(self, x: Tensor) -> Tensor:
        f = x.flatten(1) @ self.w + self.b
        return torch.stack([-f / 2, f / 2], dim=1)


@pytest.fixture(scope="module")
def problem():
    """60 points in [0.35, 0.65]^16 labelled by the model (so all are correct), their exact
    distances, and an ε grid that keeps ≥ 3% away from every distance."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(16, generator=gen, dtype=torch.float64)
    x = 0.35 + 0.3 * torch.rand(60, 1, 4, 4, generator=gen, dtype=torch.float64)
    b = -float((x.flatten(1) @ w).median()) + 1e-3
    model = Affine(w, b)
    with torch.no_grad():
        f = x.flatten(1) @ w + b
        y = (f > 0).long()
    dist = f.abs() / w.norm()
    # Keep the boundary points inside the box, where the free distance is the true minimum.
    point = x.flatten(1) - (f / w.norm() ** 2)[:, None] * w[None]
    inside = ((point >= 0) & (point <= 1)).all(dim=1)
    x, y, dist = x[inside], y[inside], dist[inside]
    candidates = torch.linspace(0.02, float(dist.max()) * 1.2, 200, dtype=torch.float64)
    gaps = (candidates[:, None] - dist[None, :]).abs().min(dim=1).values / candidates
    grid = [0.0] + [float(e) for e, g in zip(candidates, gaps, strict=True) if g > 0.03][::12]
    return model, x, y, dist, grid


def _batches(x: Tensor, y: Tensor, size: int = 16):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, x.shape[0], size)]


@pytest.mark.parametrize(
    "name", ["deepfool", pytest.param("cw", marks=pytest.mark.slow)]
)  # CW: seconds of binary search
def test_curve_and_median_match_the_closed_form(problem, name: str) -> None:
    model, x, y, dist, grid = problem
    spec = get_attack(name)
    report = evaluate(model, _batches(x, y), [EvalAttack(spec, spec.make_params())], EvalConfig(eps=grid, norm="2"))
    curve = report.attacks[name]
    n = x.shape[0]
    for point in curve.points:
        expected = int((dist > point.eps).sum())
        assert point.robust == expected, (point.eps, point.robust, expected)
        assert point.accuracy == pytest.approx(expected / n)
    assert curve.median_norm == pytest.approx(
        float(dist.median() if n % 2 else dist.sort().values[n // 2 - 1 : n // 2 + 1].mean()), rel=0.01
    )
    # Norm statistics are those of the examples counted, never above ε.
    for point in curve.points:
        if point.max_norm is not None:
            assert point.max_norm <= point.eps * (1 + 1e-5)


def test_curve_does_not_depend_on_batching(problem) -> None:
    model, x, y, _, grid = problem
    spec = get_attack("deepfool")
    attack = [EvalAttack(spec, spec.make_params())]
    a = evaluate(model, _batches(x, y, 7), attack, EvalConfig(eps=grid, norm="2"))
    b = evaluate(model, _batches(x, y, 64), attack, EvalConfig(eps=grid, norm="2"))
    assert [p.robust for p in a.attacks["deepfool"].points] == [p.robust for p in b.attacks["deepfool"].points]


@dataclasses.dataclass
class _NoParams(AttackParams):
    pass


def _liar(model, x, y, *, threat, params=None, target=None, generator=None, early_stop=False):
    """A broken 'minimal attack': returns a tiny perturbation that does not fool the model."""
    return (x + 1e-4).clamp(0, 1)


def _overshooter(model, x, y, *, threat, params=None, target=None, generator=None, early_stop=False):
    """Returns the mirror image of x across the boundary, 1.5 times as far: it fools the model
    but is not minimal."""
    affine = getattr(model, "model", model)  # evaluate wraps the model to count forward passes
    w = affine.w.detach()
    f = x.flatten(1) @ w + affine.b
    return (x.flatten(1) - 1.5 * (f / w.norm() ** 2)[:, None] * w[None]).reshape(x.shape).clamp(0, 1)


def test_only_verified_examples_count(problem) -> None:
    model, x, y, _, grid = problem
    liar = AttackSpec("liar", _liar, _NoParams, ("2",), "minimal", "broken", "none")
    report = evaluate(model, _batches(x, y), [EvalAttack(liar, _NoParams())], EvalConfig(eps=grid, norm="2"))
    curve = report.attacks["liar"]
    assert all(p.robust == x.shape[0] for p in curve.points)
    assert curve.median_norm is None  # nothing fooled: the median is +∞


def test_far_examples_count_only_at_their_norm(problem) -> None:
    """Samples count as fooled at ε exactly when the returned (confirmed) example is within ε."""
    model, x, y, _, _ = problem
    far = AttackSpec("far", _overshooter, _NoParams, ("2",), "minimal", "far", "none")
    with torch.no_grad():
        x_far = _overshooter(model, x, y, threat=None)
        fools = model(x_far).argmax(1) != y
        norms = (x_far - x).flatten(1).norm(dim=1)
    assert int(fools.sum()) > x.shape[0] // 2
    eps = sorted({float(norms.median()) * 1.001, float(norms.quantile(0.8)) * 1.001, 10.0})
    report = evaluate(model, _batches(x, y), [EvalAttack(far, _NoParams())], EvalConfig(eps=eps, norm="2"))
    for point in report.attacks["far"].points:
        assert point.robust == int((~fools | (norms > point.eps)).sum())


def test_attack_at_eps_returns_minimal_or_projection(problem) -> None:
    """``advgrad attack`` with a minimal attack: within ε the minimal example, beyond ε its
    projection onto the ε-ball (norm exactly ε, and here not adversarial)."""
    model, x, y, dist, _ = problem
    eps = float(dist.median())
    spec = get_attack("deepfool")
    result, summary = generate(model, _batches(x, y), spec, spec.make_params(), ThreatModel("2", eps))
    norms = (result.x_adv - result.x).flatten(1).norm(dim=1)
    near = dist < eps * 0.99
    far = dist > eps * 1.01
    assert torch.allclose(norms[near], dist[near], rtol=0.01)
    assert bool((result.pred_adv[near] != result.y[near]).all())
    assert torch.allclose(norms[far], torch.full_like(norms[far], eps), rtol=1e-6)
    assert bool((result.pred_adv[far] == result.y[far]).all())
    assert summary.max_norm <= eps * (1 + 1e-6)
