"""The strong preset: the cascade catches what gradient attacks miss, on any number of classes."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advgrad.attacks import StrongParams, apgd, strong
from advgrad.core.threat import ThreatModel
from advgrad.io.data.load_data import DataOptions, load_data
from advgrad.io.model.load_model import load_model


class _ZeroGradient(torch.autograd.Function):
    """Identity forward, zero backward: a model that masks its gradients."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return torch.zeros_like(grad)


class Masked(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(_ZeroGradient.apply(x))


def _digits(n: int):
    model = load_model(None).module.eval()
    x, y = load_data(None, DataOptions(split="test")).fetch(torch.arange(n))
    return model, x, y


def test_square_stage_breaks_a_model_that_masks_its_gradients() -> None:
    model, x, y = _digits(30)
    masked = Masked(model)
    threat = ThreatModel("inf", 0.3)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        gradient_only = (masked(apgd(masked, x, y, threat=threat, generator=gen)).argmax(1) != y).float().mean()
        x_adv = strong(
            masked,
            x,
            y,
            threat=threat,
            params=StrongParams(steps=10, target_classes=2, survivor_queries=10, queries=500),
            generator=gen,
        )
        cascade = (masked(x_adv).argmax(1) != y).float().mean()
    assert gradient_only <= 0.3  # zero gradients: APGD only has its random start
    assert cascade >= 0.9 and cascade >= gradient_only + 0.5
    assert bool(threat.contains(x_adv, x).all())


def test_strong_on_a_binary_model() -> None:
    """Fewer than 4 classes: the targeted stage falls back to cross-entropy instead of failing."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).eval()
    x = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    threat = ThreatModel("2", 5.0)
    x_adv = strong(model, x, y, threat=threat, params=StrongParams(steps=10, survivor_queries=50, queries=50))
    with torch.no_grad():
        assert bool((model(x_adv).argmax(1) != y).all())
    assert bool(threat.contains(x_adv, x).all())


def test_a_sample_no_stage_fools_keeps_the_first_stage_point() -> None:
    """With ε = tiny nothing is fooled; the result is APGD-CE's point, inside the ball."""
    model, x, y = _digits(8)
    threat = ThreatModel("inf", 1e-4)
    x_adv = strong(
        model,
        x,
        y,
        threat=threat,
        params=StrongParams(steps=5, target_classes=1, survivor_queries=5, queries=5),
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        assert bool((model(x_adv).argmax(1) == y).all())
    assert bool(threat.contains(x_adv, x).all()) and not torch.equal(x_adv, x)


def test_malt_ranking_is_the_linear_distance_to_each_boundary() -> None:
    """For a linear model z = Wx + b the almost-linear estimate is exact: class k's boundary lies at
    (z_y − z_k) / ‖w_y − w_k‖₁ in L∞ and / ‖w_y − w_k‖₂ in L2; the ranking sorts those, nearest first."""
    from advgrad.attacks.strong import malt_ranking

    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 6)).double().eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(6, 16, generator=gen, dtype=torch.float64))
    x = torch.rand(9, 1, 4, 4, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        z = model(x)
    y = z.argmax(1)
    w = model[1].weight.detach()
    for norm, p in (("inf", 1), ("2", 2)):
        ranked = malt_ranking(model, x, y, ThreatModel(norm, 0.1))
        for i in range(x.shape[0]):
            others = [k for k in range(6) if k != int(y[i])]
            dist = {k: float((z[i, y[i]] - z[i, k]) / (w[y[i]] - w[k]).norm(p=p)) for k in others}
            assert ranked[i].tolist() == sorted(others, key=dist.get)


def test_square_runs_only_where_gradients_do_not_help() -> None:
    """On the default model, whose gradients work, the gradient stages move every sample they do not
    fool: Square's further queries are not spent, only its gate's forward passes."""
    from advgrad.attacks.strong import RANDOM_POINTS, observe_stages

    model, x, y = _digits(30)
    seen: list[tuple[str, int]] = []

    calls: list[int] = []
    square_calls: list[int] = []

    class Log:
        def begin(self, name: str) -> None:
            self.start = len(calls)

        def end(self, name: str, fooled: int) -> None:
            seen.append((name, fooled))
            if name == "square-unmoved":
                square_calls.append(len(calls) - self.start)

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x: Tensor) -> Tensor:
            calls.append(x.shape[0])
            return self.model(x)

    with observe_stages(Log()):
        params = StrongParams(steps=20, survivor_queries=20, queries=300)
        strong(Spy(), x, y, threat=ThreatModel("inf", 0.02), params=params)
    assert [name for name, _ in seen] == ["apgd-ce", "apgd-t-malt", "square", "square-unmoved"]
    assert seen[-1][1] == 0
    assert square_calls == [1 + RANDOM_POINTS]  # the gate's clean and random points; no query of Square
