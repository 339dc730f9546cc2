"""advgrad/attacks/fgsm.py: known answers on linear classifiers, where ∇ₓJ has a closed form.

For z = Wx + b and J = CE(z, y), ∇ₓJ = Wᵀ(softmax(z) − e_y); with two classes this is
p_other·(w_other − w_y), a positive multiple of w_other − w_y. Inputs stay away from the box edges
so that clipping to [0, 1] does not bind, unless a test is about the box.
"""

from __future__ import annotations

import pytest
import torch
from helpers import linear_model, tiny_net, two_class_linear

from advgrad.attacks import FGSMParams, fgsm, get_attack, run_attack
from advgrad.core.errors import UsageError
from advgrad.core.threat import ThreatModel

SPEC = get_attack("fgsm")


def _two_class(seed: int, n: int = 6, low: float = 0.4, high: float = 0.6):
    return two_class_linear(seed, n, low, high)


@pytest.mark.parametrize("seed", range(4))
def test_linf_fgsm_is_eps_times_sign_of_closed_form_gradient(seed):
    model, x, y, away = _two_class(seed)
    eps = 0.1
    x_adv = run_attack(SPEC, model, x, y, threat=ThreatModel("inf", eps))
    assert torch.allclose(x_adv - x, eps * away.sign(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_l2_fgm_moves_eps_along_normalised_closed_form_gradient(seed):
    model, x, y, away = _two_class(seed, low=0.35, high=0.65)
    eps = 0.3
    unit = away / away.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
    x_adv = run_attack(SPEC, model, x, y, threat=ThreatModel("2", eps))
    assert torch.allclose(x_adv - x, eps * unit, rtol=0, atol=1e-12)


def test_targeted_at_the_true_class_moves_the_opposite_way():
    model, x, y, away = _two_class(7)
    eps = 0.05
    for norm, direction in (("inf", away.sign()), ("2", away / away.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1))):
        x_adv = run_attack(SPEC, model, x, y, threat=ThreatModel(norm, eps), target=y)
        assert torch.allclose(x_adv - x, -eps * direction, rtol=0, atol=1e-12)


def test_targeted_fgsm_three_classes_closed_form():
    """x' = x − ε·sign(∇ₓCE(z, t)) with ∇ₓCE(z, t) = Wᵀ(softmax(z) − e_t)."""
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(3, 16, generator=gen, dtype=torch.float64)
    x = 0.3 + 0.4 * torch.rand(5, 1, 4, 4, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1])
    target = torch.tensor([1, 2, 0, 2, 0])
    z = x.flatten(1) @ w.T
    p = torch.softmax(z, dim=1)
    grad_t = (p - torch.nn.functional.one_hot(target, 3)) @ w
    x_adv = fgsm(linear_model(w), x, y, threat=ThreatModel("inf", 0.1), target=target)
    assert torch.allclose(x_adv - x, -0.1 * grad_t.sign().reshape(x.shape), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_fgsm_on_a_confidently_classified_float64_sample(seed):
    """A correct sample with a logit gap of 30: 1 − p_y ≈ 1e-13 is resolved in float64 but rounds
    to 0 in float32, where ∇ₓCE collapses to p_other·w_other and its sign is no longer that of
    w_other − w_y. A float64 model must be attacked in float64 to get the closed-form answer."""
    model, x, _, _ = _two_class(20 + seed, n=1)
    with torch.no_grad():
        model.fc.bias.zero_()
        z = model(x)[0]
        model.fc.weight.mul_(30.0 / float((z[0] - z[1]).abs()))
        z = model(x)[0]
        y = z.argmax().reshape(1)
    assert float(z.max() - z.min()) == pytest.approx(30.0)
    away = (model.fc.weight[1 - y] - model.fc.weight[y]).detach().reshape(x.shape)
    x_adv = run_attack(SPEC, model, x, y, threat=ThreatModel("inf", 0.05))
    assert torch.allclose(x_adv - x, 0.05 * away.sign(), rtol=0, atol=1e-12)


def test_step_size_below_eps_moves_by_the_step():
    model, x, y, away = _two_class(5)
    params = SPEC.make_params(step_size=0.03)
    x_adv = run_attack(SPEC, model, x, y, threat=ThreatModel("inf", 0.1), params=params)
    assert torch.allclose(x_adv - x, 0.03 * away.sign(), rtol=0, atol=1e-12)


def test_step_size_above_eps_is_projected_back():
    model, x, y, away = _two_class(6)
    params = FGSMParams(step_size=0.5)
    x_adv = run_attack(SPEC, model, x, y, threat=ThreatModel("inf", 0.1), params=params)
    assert torch.allclose(x_adv - x, 0.1 * away.sign(), rtol=0, atol=1e-12)


def test_box_binds_at_the_edges():
    model, x, y, away = _two_class(8)
    x = x.clone()
    up = away > 0
    x[up] = 1.0  # would move up: stays at 1
    x[~up] = torch.where(torch.arange((~up).sum()) % 2 == 0, 0.0, 0.5).double()  # some at 0 moving down
    x_adv = run_attack(SPEC, model, x, y, threat=ThreatModel("inf", 0.1))
    expected = (x + 0.1 * away.sign()).clamp(0, 1)
    assert torch.allclose(x_adv, expected, rtol=0, atol=1e-12)


def test_fgsm_on_a_nonlinear_model_is_eps_sign_of_autograd_gradient():
    model = tiny_net(seed=2, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    x = 0.3 + 0.4 * torch.rand(4, 2, 5, 5, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1])
    x_var = x.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model.eval()(x_var), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x_var)
    x_adv = run_attack(SPEC, model, x, y, threat=ThreatModel("inf", 0.1))
    assert torch.allclose(x_adv - x, 0.1 * grad.sign(), rtol=0, atol=1e-12)


def test_zero_eps_returns_the_input():
    model, x, y, _ = _two_class(9)
    x_adv = run_attack(SPEC, model, x, y, threat=ThreatModel("inf", 0.0))
    assert torch.equal(x_adv, x) and x_adv is not x


def test_l1_is_not_supported():
    model, x, y, _ = _two_class(10)
    assert "1" not in SPEC.norms
    with pytest.raises(UsageError, match="does not support"):
        run_attack(SPEC, model, x, y, threat=ThreatModel("1", 1.0))


def test_default_step_size_is_eps():
    assert FGSMParams().resolve(ThreatModel("inf", 0.2)).step_size == 0.2
    assert FGSMParams(step_size=0.1).resolve(ThreatModel("inf", 0.2)).step_size == 0.1


def test_negative_step_size_is_rejected():
    with pytest.raises(UsageError, match="`step_size`"):
        SPEC.make_params(step_size=-0.1)


def test_spec_describes_the_attack():
    assert SPEC.name == "fgsm" and SPEC.kind == "gradient" and set(SPEC.norms) == {"inf", "2"}
    assert "Goodfellow" in SPEC.reference
    assert SPEC.ignored_options(steps=10, restarts=None, step_size=0.1) == ["steps"]
