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
            masked, x, y, threat=threat, params=StrongParams(steps=10, target_classes=2, queries=500), generator=gen
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
    x_adv = strong(model, x, y, threat=threat, params=StrongParams(steps=10, queries=50))
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
        params=StrongParams(steps=5, target_classes=1, queries=5),
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        assert bool((model(x_adv).argmax(1) == y).all())
    assert bool(threat.contains(x_adv, x).all()) and not torch.equal(x_adv, x)
