"""APGD: the published checkpoint schedule, the step-size rule, and known answers on linear models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advgrad.attacks import APGDParams, APGDTParams, apgd, apgd_targeted
from advgrad.attacks.apgd import checkpoints
from advgrad.core.errors import UsageError
from advgrad.core.threat import ThreatModel


def test_checkpoints_for_100_iterations() -> None:
    # p: 0, .22, .41, .57, .70, .80, .87, .93, .99 (each step max(previous gap − .03, .06)).
    assert checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]


def test_checkpoints_round_up_and_merge() -> None:
    assert checkpoints(1000) == [0, 220, 410, 570, 700, 800, 870, 930, 990]
    assert checkpoints(10) == [0, 3, 5, 6, 7, 8, 9, 10]  # ⌈2.2⌉ = 3, ⌈4.1⌉ = 5, ⌈5.7⌉ = 6, …
    assert checkpoints(1) == [0, 1]


def _linear(classes: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, classes)).double()
    return model.eval()


def test_reaches_the_corner_of_a_linear_model() -> None:
    """For a binary linear model every loss here grows with the wrong-class margin, which is
    linear: its maximum over the L∞ ball ∩ box is x + ε·sign(w_wrong − w_true), clipped."""
    model = _linear()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(10, 1, 4, 4, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
        w = model[1].weight
    direction = (w[1 - y] - w[y]).sign().reshape(x.shape)
    eps = 0.05
    expected = (x + eps * direction).clamp(0, 1)
    for loss in ("ce", "margin"):
        x_adv = apgd(
            model,
            x,
            y,
            threat=ThreatModel("inf", eps),
            params=APGDParams(steps=10, loss=loss),
            generator=torch.Generator().manual_seed(0),
        )
        assert torch.allclose(x_adv, expected, atol=1e-12)


def test_l2_ends_on_the_sphere_along_the_gradient() -> None:
    """Same model, L2 ball far from the box: the maximiser is x + ε·d/‖d‖ with d = w_wrong − w_true."""
    model = _linear(seed=2)
    gen = torch.Generator().manual_seed(3)
    x = 0.4 + 0.2 * torch.rand(6, 1, 4, 4, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
        w = model[1].weight
    d = (w[1 - y] - w[y]).reshape(x.shape)
    eps = 0.1
    expected = x + eps * d / d.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
    x_adv = apgd(model, x, y, threat=ThreatModel("2", eps), params=APGDParams(steps=30, random_start=False))
    assert torch.allclose(x_adv, expected, atol=1e-4)


class Bowl(nn.Module):
    """Logits (k·‖x − c‖², 0) with label 0: the margin loss −k·‖x − c‖² peaks inside the ball at c."""

    def __init__(self, c: torch.Tensor, k: float = 10.0):
        super().__init__()
        self.c, self.k = c, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = (x - self.c).pow(2).flatten(1).sum(dim=1)
        return torch.stack([self.k * d, torch.zeros_like(d)], dim=1)


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_step_size_halving_finds_an_interior_maximum(norm: str) -> None:
    """Steps of 2ε jump over a maximum inside the ball; only the halving at the checkpoints (with
    restarts from the best point) lets APGD settle on it. Nine halvings of 2ε leave steps of
    ε/128, so the result must be that close to the maximiser."""
    gen = torch.Generator().manual_seed(0)
    x = 0.3 + 0.4 * torch.rand(4, 1, 3, 3, generator=gen, dtype=torch.float64)
    eps = 0.1
    u = torch.rand(x.shape, generator=gen, dtype=torch.float64) * 2 - 1
    if norm == "inf":
        c = x + 0.37 * eps * u
    else:
        c = x + 0.37 * eps * u / u.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
    model = Bowl(c)
    y = torch.zeros(4, dtype=torch.long)
    x_adv = apgd(
        model, x, y, threat=ThreatModel(norm, eps), params=APGDParams(steps=100, loss="margin", random_start=False)
    )
    error = (x_adv - c).flatten(1)
    error = error.abs().amax(dim=1) if norm == "inf" else error.norm(dim=1)
    assert bool((error <= eps / 40).all()), error
    # One step of 2ε, the first iterate without any halving, is nowhere near.
    first = apgd(
        model, x, y, threat=ThreatModel(norm, eps), params=APGDParams(steps=1, loss="margin", random_start=False)
    )
    first_error = (first - c).flatten(1)
    first_error = first_error.abs().amax(dim=1) if norm == "inf" else first_error.norm(dim=1)
    assert bool((first_error > eps / 4).all())


def test_targeted_version_goes_through_several_targets() -> None:
    """APGD-T fools samples that need a particular wrong class: a 4-class linear model where only
    the third most likely class is reachable within ε."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4, bias=True)).double().eval()
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([3.0, 2.0, 1.0, 0.0], dtype=torch.float64))
        model[1].weight[2, 0] = 20.0  # class 2 grows fast with pixel 0; classes 1 and 3 cannot move
    x = torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    y = torch.zeros(3, dtype=torch.long)
    threat = ThreatModel("inf", 0.2)  # z_2 = 1 + 20·0.2 = 5 > 3 = z_0
    one = apgd_targeted(
        model, x, y, threat=threat, params=APGDTParams(steps=10, target_classes=1, loss="ce", random_start=False)
    )
    three = apgd_targeted(
        model, x, y, threat=threat, params=APGDTParams(steps=10, target_classes=3, loss="ce", random_start=False)
    )
    with torch.no_grad():
        assert bool((model(one).argmax(1) == 0).all())  # the most likely wrong class (1) cannot be reached
        assert bool((model(three).argmax(1) == 2).all())


def test_bad_parameters() -> None:
    with pytest.raises(UsageError):
        APGDParams(momentum=1.5).validate()
    with pytest.raises(UsageError):
        APGDParams(steps=0).validate()
    with pytest.raises(UsageError):
        APGDTParams(target_classes=0).validate()
