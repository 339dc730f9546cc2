"""The Square attack: score-based (it must work on a model whose backward pass raises), its
schedule, its L2 pattern and its norm-preserving L2 update."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from advgrad.attacks import SquareParams, square
from advgrad.attacks.square import _propose_l2, meta_pattern, square_fraction
from advgrad.core.threat import ThreatModel
from advgrad.io.data.load_data import DataOptions, load_data
from advgrad.io.model.load_model import load_model


class _NoBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        raise RuntimeError("this model has no gradient")


class GradientFree(nn.Module):
    """The default digits model behind a layer whose backward raises, and that also refuses to
    run with autograd recording (a score-based attack has no reason to record a graph)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        assert not torch.is_grad_enabled(), "a score-based attack should not record a graph"
        return self.model(_NoBackward.apply(x))


@pytest.fixture(scope="module")
def digits():
    model = load_model(None).module.eval()
    data = load_data(None, DataOptions(split="test"))
    x, y = data.fetch(torch.arange(60))
    return model, x, y


def test_the_wrapper_really_blocks_gradients(digits) -> None:
    model, x, y = digits
    wrapped = GradientFree(model)
    with torch.no_grad():
        assert torch.equal(wrapped(x).argmax(1), model(x).argmax(1))
    with pytest.raises((RuntimeError, AssertionError)):
        x_var = x.clone().requires_grad_(True)
        wrapped(x_var).sum().backward()


@pytest.mark.parametrize("norm,eps", [("inf", 0.3), ("2", 2.5)])
def test_square_fools_a_model_without_gradients(digits, norm: str, eps: float) -> None:
    model, x, y = digits
    wrapped = GradientFree(model)
    threat = ThreatModel(norm, eps)
    x_adv = square(
        wrapped, x, y, threat=threat, params=SquareParams(queries=300), generator=torch.Generator().manual_seed(0)
    )
    assert bool(threat.contains(x_adv, x).all())
    with torch.no_grad():
        fooled = (model(x_adv).argmax(1) != y).float().mean()
    assert fooled >= 0.9


def test_square_targeted_reaches_the_target(digits) -> None:
    model, x, y = digits
    target = (y + 3) % 10
    x_adv = square(
        GradientFree(model),
        x,
        y,
        threat=ThreatModel("inf", 0.4),
        params=SquareParams(queries=500),
        target=target,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        reached = (model(x_adv).argmax(1) == target).float().mean()
    assert reached >= 0.9


def test_p_schedule_halves_at_the_published_iterations() -> None:
    # On a 10,000-query budget p halves after iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000.
    assert square_fraction(0.8, 10, 10000) == 0.8
    assert square_fraction(0.8, 11, 10000) == 0.4
    assert square_fraction(0.8, 51, 10000) == 0.2
    assert square_fraction(0.8, 201, 10000) == 0.1
    assert square_fraction(0.8, 9999, 10000) == 0.8 / 2**9
    # The same points rescaled to a 1,000-query budget.
    assert square_fraction(0.8, 1, 1000) == 0.8
    assert square_fraction(0.8, 2, 1000) == 0.4
    assert square_fraction(0.8, 999, 1000) == 0.8 / 2**9


def test_meta_pattern_known_values() -> None:
    # η^(3,3): n = 1; the centre sums 1/2² + 1/1², the ring 1/2².
    expected = torch.tensor([[0.25, 0.25, 0.25], [0.25, 1.25, 0.25], [0.25, 0.25, 0.25]])
    assert torch.allclose(meta_pattern(3, 3), expected)
    # η^(5,5): n = 2; rings 1/9, 1/9 + 1/4, 1/9 + 1/4 + 1 from the outside in.
    p = meta_pattern(5, 5)
    assert torch.allclose(p[0, 0], torch.tensor(1 / 9))
    assert torch.allclose(p[1, 1], torch.tensor(1 / 9 + 1 / 4))
    assert torch.allclose(p[2, 2], torch.tensor(1 / 9 + 1 / 4 + 1))


@pytest.mark.parametrize("start_norm", [1.0, 0.4, 0.0])
def test_l2_update_ends_on_the_sphere(start_norm: float) -> None:
    """ε² − ‖δ‖² of unused budget plus the mass of the two squares go into the first square, so
    the proposal always has norm exactly ε (before the box clip)."""
    gen = torch.Generator().manual_seed(0)
    eps = 1.5
    delta = torch.randn(7, 3, 8, 8, generator=gen)
    norms = delta.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
    delta = delta / norms * eps * start_norm
    x = torch.full_like(delta, 0.5)
    for p in (0.05, 0.3, 1.0):
        new = _propose_l2(x, delta, ThreatModel("2", eps), p, gen)
        assert torch.allclose(new.flatten(1).norm(dim=1), torch.full((7,), eps), rtol=1e-5)
        assert not torch.equal(new, delta)


def test_queries_are_counted(digits) -> None:
    """Each sample is queried at most ``queries`` times, and no more once it is fooled."""
    model, x, y = digits
    calls = []

    class Counting(nn.Module):
        def forward(self, inp: Tensor) -> Tensor:
            calls.append(inp.shape[0])
            return model(inp)

    square(
        Counting(),
        x,
        y,
        threat=ThreatModel("inf", 0.05),
        params=SquareParams(queries=40),
        generator=torch.Generator().manual_seed(0),
    )
    assert len(calls) <= 40
    assert sum(calls) <= 40 * x.shape[0]
    assert calls[0] == x.shape[0] and calls[-1] <= calls[0]
