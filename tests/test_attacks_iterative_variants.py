"""BIM, MI-FGSM and L1 PGD on the shared loop: known answers on linear models."""

from __future__ import annotations

import torch
from torch import nn

from advgrad.attacks import BIMParams, MIFGSMParams, PGDParams, bim, mifgsm, pgd
from advgrad.attacks.iterative import movable
from advgrad.core.threat import ThreatModel


def _setup(seed: int = 0, low: float = 0.3, high: float = 0.7):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).double().eval()
    gen = torch.Generator().manual_seed(seed + 1)
    x = low + (high - low) * torch.rand(8, 1, 4, 4, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
        w = model[1].weight
    d = (w[1 - y] - w[y]).reshape(x.shape)  # the gradient direction of every loss here
    return model, x, y, d


def test_bim_walks_steps_times_alpha_along_the_sign() -> None:
    """The gradient sign is constant on a linear model: after T steps of α each coordinate moved
    by min(T·α, ε) in the direction sign(d)."""
    model, x, y, d = _setup()
    eps = 0.1
    for steps, alpha in ((3, 0.01), (10, 0.0125), (4, 0.05)):
        x_adv = bim(model, x, y, threat=ThreatModel("inf", eps), params=BIMParams(steps=steps, step_size=alpha))
        assert torch.allclose(x_adv, x + min(steps * alpha, eps) * d.sign(), atol=1e-12)


def test_bim_default_step_travels_1_25_eps() -> None:
    model, x, y, d = _setup()
    params = BIMParams(steps=8).resolve(ThreatModel("inf", 0.08))
    assert abs(params.step_size * 8 - 1.25 * 0.08) < 1e-15


def test_mifgsm_reaches_the_corner_and_uses_momentum() -> None:
    """With a constant gradient the momentum has a constant sign, so MI-FGSM with α = ε/T reaches
    exactly x + ε·sign(d) (box not binding)."""
    model, x, y, d = _setup()
    eps = 0.1
    x_adv = mifgsm(model, x, y, threat=ThreatModel("inf", eps), params=MIFGSMParams(steps=10))
    assert torch.allclose(x_adv, x + eps * d.sign(), atol=1e-12)


class Switch(nn.Module):
    """A two-class model whose gradient turns around: margin = −|x₀ − a|·k + x₁, so the sign of
    ∂/∂x₀ flips when x₀ passes a."""

    def __init__(self, a: float):
        super().__init__()
        self.a = a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        score = -(flat[:, 0] - self.a).abs() * 5 + flat[:, 1]
        return torch.stack([torch.zeros_like(score), score], dim=1)


def test_momentum_changes_the_path() -> None:
    """Plain I-FGSM oscillates around x₀ = a; with μ = 1 the accumulated gradient keeps its sign a
    while and carries x₀ past a. μ = 0 must give BIM's answer (same α, same start)."""
    x = torch.zeros(1, 1, 1, 2, dtype=torch.float64) + 0.5
    y = torch.zeros(1, dtype=torch.long)
    model = Switch(0.52)
    threat = ThreatModel("inf", 0.1)
    plain = bim(model, x, y, threat=threat, params=BIMParams(steps=10, step_size=0.01, loss="margin"))
    no_momentum = mifgsm(
        model, x, y, threat=threat, params=MIFGSMParams(steps=10, step_size=0.01, momentum=0.0, loss="margin")
    )
    with_momentum = mifgsm(
        model, x, y, threat=threat, params=MIFGSMParams(steps=10, step_size=0.01, momentum=1.0, loss="margin")
    )
    assert torch.allclose(plain, no_momentum)
    assert not torch.allclose(with_momentum, no_momentum)


def test_l1_pgd_puts_the_budget_on_the_largest_weight() -> None:
    """For a linear objective the best L1 perturbation of size ε moves only the coordinate with
    the largest |d_k|, by ε in the direction of its sign (box not binding): ε·sign(d_k)·e_k."""
    model, x, y, d = _setup(2)
    eps = 0.15
    x_adv = pgd(model, x, y, threat=ThreatModel("1", eps), params=PGDParams(steps=20, random_start=False))
    flat = d.flatten(1)
    k = flat.abs().argmax(dim=1)
    expected = x.flatten(1).clone()
    rows = torch.arange(x.shape[0])
    expected[rows, k] += eps * flat[rows, k].sign()
    assert torch.allclose(x_adv.flatten(1), expected, atol=1e-9)


def test_l1_pgd_moves_past_saturated_coordinates() -> None:
    """When the largest-|d| coordinate already sits on the box edge the budget must go to the
    next one instead of being lost to the clip."""
    model, x, y, d = _setup(3)
    flat = d.flatten(1)
    k = flat.abs().argmax(dim=1)
    rows = torch.arange(x.shape[0])
    xf = x.flatten(1).clone()
    xf[rows, k] = torch.where(flat[rows, k] > 0, 1.0, 0.0).to(xf.dtype)  # blocked in its ascent direction
    x = xf.reshape(x.shape)
    eps = 0.15
    x_adv = pgd(model, x, y, threat=ThreatModel("1", eps), params=PGDParams(steps=20, random_start=False))
    moved = (x_adv - x).flatten(1).abs().sum(dim=1)
    assert torch.allclose(moved, torch.full_like(moved, eps), atol=1e-9)
    assert bool(((x_adv - x).flatten(1)[rows, k] == 0).all())


def test_l1_pgd_stays_in_ball_and_box_from_a_random_start() -> None:
    model, x, y, _ = _setup(4, low=0.0, high=1.0)
    x[:, :, 0] = 0.0
    threat = ThreatModel("1", 2.0)
    x_adv = pgd(
        model, x, y, threat=threat, params=PGDParams(steps=10, restarts=2), generator=torch.Generator().manual_seed(0)
    )
    assert bool(threat.contains(x_adv, x).all())


def test_movable_mask() -> None:
    threat = ThreatModel("1", 1.0)
    x_adv = torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.5]])
    grad = torch.tensor([[-1.0, 1.0, 1.0, -1.0, -1.0]])
    assert movable(x_adv, grad, threat).tolist() == [[0.0, 1.0, 0.0, 1.0, 1.0]]
