"""advgrad/core/gradient.py: ∇ₓJ against hand-derived gradients, finite differences, and `frozen`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import linear_model, linear_setup, tiny_net, torchscript
from torch import Tensor, nn

from advgrad.core.errors import UsageError
from advgrad.core.gradient import finite_difference_check, frozen, input_gradient

# ---------------------------------------------------------------- the worked example


class SigmoidNet(nn.Module):
    """ŷ = σ(W₂σ(W₁x + b₁) + b₂): one hidden sigmoid layer, sigmoid outputs."""

    def __init__(self, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor):
        super().__init__()
        self.w1, self.b1 = nn.Parameter(w1.clone()), nn.Parameter(b1.clone())
        self.w2, self.b2 = nn.Parameter(w2.clone()), nn.Parameter(b2.clone())

    def forward(self, x: Tensor) -> Tensor:
        a1 = torch.sigmoid(x.flatten(1) @ self.w1.T + self.b1)
        return torch.sigmoid(a1 @ self.w2.T + self.b2)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _chain_rule(w1, b1, w2, b2, x, dj_dyhat_of):
    """Backpropagation written out by hand (NumPy, column vectors), for one sample x.

    Forward:  z₁ = W₁x + b₁, a₁ = σ(z₁), z₂ = W₂a₁ + b₂, ŷ = a₂ = σ(z₂).
    Backward: δ₂ = ∂J/∂z₂ = ∂J/∂ŷ ∘ a₂∘(1−a₂)          (∂a/∂z = a∘(1−a))
              ∂J/∂a₁ = W₂ᵀδ₂                            (∂z/∂a_prev = W)
              δ₁ = ∂J/∂z₁ = W₂ᵀδ₂ ∘ a₁∘(1−a₁)
              ∂J/∂W₁ = δ₁ xᵀ                            (∂z/∂W = a_prev, here a₀ = x)
              ∂J/∂x = W₁ᵀδ₁                             (∂z/∂a_prev = W once more)
    ``dj_dyhat_of(ŷ, z₂)`` gives ∂J/∂ŷ for the loss at hand.
    """
    z1 = w1 @ x + b1
    a1 = _sigmoid(z1)
    z2 = w2 @ a1 + b2
    a2 = _sigmoid(z2)
    delta2 = dj_dyhat_of(a2, z2) * a2 * (1 - a2)
    delta1 = (w2.T @ delta2) * a1 * (1 - a1)
    return np.outer(delta1, x), w1.T @ delta1


def _worked_example(seed: int = 0):
    rng = np.random.default_rng(seed)
    w1, b1 = rng.normal(size=(3, 4)), rng.normal(size=3)
    w2, b2 = rng.normal(size=(2, 3)), rng.normal(size=2)
    x = rng.uniform(0.1, 0.9, size=4)
    y = np.array([1.0, 0.0])
    return w1, b1, w2, b2, x, y


def test_worked_example_chain_rule_matches_autograd():
    """The worked example this project grew from.

    Network ŷ = σ(W₂σ(W₁x + b₁) + b₂) with J = ½‖y − ŷ‖². The hand-written chain rule needs
    ∂J/∂ŷ, and the sign matters: J = ½ Σ_k (y_k − ŷ_k)², so ∂J/∂ŷ_k = −(y_k − ŷ_k) = ŷ_k − y_k.
    The text the example comes from writes the factor as (y − ŷ): that is −∂J/∂ŷ, the direction
    of gradient *descent* (what a weight update adds), not the gradient itself. With ŷ − y the
    hand-derived ∂J/∂W₁ and ∂J/∂x equal autograd's; with y − ŷ both come out negated.
    An attack needs the true gradient ∂J/∂x: it steps *up* the loss.
    """
    w1, b1, w2, b2, x, y = _worked_example()
    dw1, dx = _chain_rule(w1, b1, w2, b2, x, lambda yhat, _z: yhat - y)

    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in dict(w1=w1, b1=b1, w2=w2, b2=b2).items()}
    net = SigmoidNet(t["w1"], t["b1"], t["w2"], t["b2"])
    x_t = torch.tensor(x[None], dtype=torch.float64, requires_grad=True)
    yhat = net(x_t)
    loss = 0.5 * ((torch.tensor(y[None]) - yhat) ** 2).sum()
    auto_dw1, auto_dx = torch.autograd.grad(loss, (net.w1, x_t))

    assert np.allclose(dw1, auto_dw1.numpy(), rtol=1e-12, atol=1e-15)
    assert np.allclose(dx, auto_dx[0].numpy(), rtol=1e-12, atol=1e-15)

    # The sign detail: the source text's (y − ŷ) gives the negative gradient.
    neg_dw1, neg_dx = _chain_rule(w1, b1, w2, b2, x, lambda yhat, _z: y - yhat)
    assert np.allclose(neg_dw1, -auto_dw1.numpy(), rtol=1e-12)
    assert np.allclose(neg_dx, -auto_dx[0].numpy(), rtol=1e-12)
    assert not np.allclose(neg_dx, auto_dx[0].numpy())


def test_worked_example_chain_rule_matches_central_differences():
    """The same hand-derived ∂J/∂x checked without autograd: (J(x + h·e_k) − J(x − h·e_k)) / 2h."""
    w1, b1, w2, b2, x, y = _worked_example(seed=1)
    _, dx = _chain_rule(w1, b1, w2, b2, x, lambda yhat, _z: yhat - y)

    def j(v: np.ndarray) -> float:
        yhat = _sigmoid(w2 @ _sigmoid(w1 @ v + b1) + b2)
        return 0.5 * float(((y - yhat) ** 2).sum())

    h = 1e-6
    fd = np.array([(j(x + h * e) - j(x - h * e)) / (2 * h) for e in np.eye(4)])
    assert np.allclose(dx, fd, rtol=1e-6, atol=1e-10)


def test_input_gradient_on_the_worked_example_network_with_cross_entropy():
    """advgrad's input_gradient on the same network, with its outputs read as logits and J = CE:
    ∂CE/∂ŷ = softmax(ŷ) − e_y, and the rest of the chain rule is unchanged."""
    w1, b1, w2, b2, _, _ = _worked_example(seed=2)
    rng = np.random.default_rng(3)
    xs = rng.uniform(0.1, 0.9, size=(5, 4))
    labels = np.array([0, 1, 1, 0, 1])

    def dce_dyhat(label):
        def fn(yhat, _z):
            p = np.exp(yhat - yhat.max())
            p /= p.sum()
            return p - np.eye(2)[label]

        return fn

    expected = np.stack([_chain_rule(w1, b1, w2, b2, xs[i], dce_dyhat(labels[i]))[1] for i in range(5)])
    t = [torch.tensor(v, dtype=torch.float64) for v in (w1, b1, w2, b2)]
    grad, loss, logits = input_gradient(
        SigmoidNet(*t), torch.tensor(xs, dtype=torch.float64), torch.tensor(labels), loss="ce"
    )
    assert np.allclose(grad.numpy(), expected, rtol=1e-10, atol=1e-14)
    assert loss.shape == (5,) and logits.shape == (5, 2)


# ---------------------------------------------------------------- closed forms on linear models


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_input_gradient_cross_entropy_closed_form(classes):
    """For z = Wx + b, ∇ₓCE(z, y) = Wᵀ(softmax(z) − e_y); targeted J = −CE(z, t) gives −Wᵀ(p − e_t)."""
    w, b, x, y = linear_setup(classes)
    z = x.flatten(1) @ w.T + b
    p = torch.exp(z - z.logsumexp(1, keepdim=True))
    expected = ((p - F.one_hot(y, classes)) @ w).reshape(x.shape)
    grad, loss, logits = input_gradient(linear_model(w, b), x, y)
    assert torch.allclose(grad, expected, rtol=1e-12, atol=1e-15)
    assert torch.allclose(logits, z, rtol=1e-12)
    assert torch.allclose(loss, -(z.gather(1, y[:, None]).squeeze(1) - z.logsumexp(1)), rtol=1e-12)

    target = (y + 1) % classes
    expected_t = (-(p - F.one_hot(target, classes)) @ w).reshape(x.shape)
    grad_t, _, _ = input_gradient(linear_model(w, b), x, y, target=target)
    assert torch.allclose(grad_t, expected_t, rtol=1e-12, atol=1e-15)


def test_input_gradient_two_classes_points_from_true_to_other_class():
    """With 2 classes ∇ₓCE = p_other·(w_other − w_y): a positive multiple of w_other − w_y."""
    w, b, x, y = linear_setup(2, seed=4)
    grad, _, _ = input_gradient(linear_model(w, b), x, y)
    direction = (w[1 - y] - w[y]).reshape(x.shape)
    cos = F.cosine_similarity(grad.flatten(1), direction.flatten(1), dim=1)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-12)


def test_input_gradient_margin_closed_form():
    """∇ₓ(max_{j≠y} z_j − z_y) = w_{j*} − w_y on a linear model."""
    w, b, x, y = linear_setup(4, seed=5)
    z = x.flatten(1) @ w.T + b
    other = z.masked_fill(F.one_hot(y, 4).bool(), float("-inf")).argmax(1)
    grad, _, _ = input_gradient(linear_model(w, b), x, y, loss="margin")
    assert torch.allclose(grad, (w[other] - w[y]).reshape(x.shape), rtol=1e-12, atol=1e-15)


def test_input_gradient_unknown_loss():
    w, b, x, y = linear_setup(2)
    with pytest.raises(UsageError):
        input_gradient(linear_model(w, b), x, y, loss="nope")


# ---------------------------------------------------------------- side effects


def test_input_gradient_restores_mode_and_requires_grad_and_computes_no_weight_gradients():
    model = tiny_net()
    model.train()
    model.head.eval()
    model.conv.weight.requires_grad_(False)
    modes = {name: m.training for name, m in model.named_modules()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(3, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    x_before = x.clone()
    rng = torch.get_rng_state()
    grad, _, _ = input_gradient(model, x, torch.tensor([0, 1, 2]))
    assert grad.shape == x.shape and grad.dtype == x.dtype
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # BN stats untouched
    assert torch.equal(torch.get_rng_state(), rng)  # dropout was off: eval mode inside
    assert torch.equal(x, x_before) and not x.requires_grad


def test_frozen_restores_state_after_an_exception():
    model = tiny_net()
    model.train()
    model.bn.eval()
    model.head.bias.requires_grad_(False)
    with pytest.raises(RuntimeError), frozen(model):
        assert not model.training and not model.bn.training
        assert not any(p.requires_grad for p in model.parameters())
        raise RuntimeError("boom")
    assert model.training and model.conv.training and not model.bn.training
    assert model.conv.weight.requires_grad and not model.head.bias.requires_grad


# ---------------------------------------------------------------- finite differences


class _WrongSquare(torch.autograd.Function):
    """Forward x², backward claims 3x (the true derivative is 2x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return grad_out * 3 * x


class _SquareNet(nn.Module):
    def __init__(self, wrong: bool):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.a = nn.Linear(8, 6)
        self.b = nn.Linear(6, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
        self.wrong = wrong

    def forward(self, x):
        h = self.a(x.flatten(1))
        h = _WrongSquare.apply(h) if self.wrong else h * h
        return self.b(torch.tanh(h))


def _fd_inputs():
    gen = torch.Generator().manual_seed(1)
    return torch.rand(4, 1, 2, 4, generator=gen), torch.tensor([0, 1, 2, 0])


def test_finite_differences_agree_with_autograd_on_a_smooth_model():
    x, y = _fd_inputs()
    model = _SquareNet(wrong=False)
    rng = torch.get_rng_state()
    result = finite_difference_check(model, x, y, coordinates=8)
    assert result.dtype == "float64"
    assert result.n_coordinates == 32
    assert result.max_relative_error < 1e-6
    assert result.max_relative_error <= result.default_tolerance
    assert next(model.parameters()).dtype == torch.float32  # checked on a copy
    assert torch.equal(torch.get_rng_state(), rng)


def test_finite_differences_catch_a_wrong_backward():
    x, y = _fd_inputs()
    result = finite_difference_check(_SquareNet(wrong=True), x, y, coordinates=8)
    assert result.max_relative_error > 0.05
    assert result.max_relative_error > result.default_tolerance


def test_finite_differences_on_the_default_model(digits_model, digits_test):
    x, y = digits_test.x[:8], digits_test.y[:8]
    result = finite_difference_check(digits_model, x, y, coordinates=16)
    assert result.max_relative_error < 1e-4


class _Float32Only(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = _SquareNet(wrong=False)

    def forward(self, x):
        if x.dtype != torch.float32:
            raise TypeError("float32 only")
        return self.inner(x)


def test_finite_differences_fall_back_to_float32():
    x, y = _fd_inputs()
    result = finite_difference_check(_Float32Only(), x, y, coordinates=4)
    assert result.dtype == "float32"
    assert result.step == pytest.approx(1e-3)
    assert result.max_relative_error < result.default_tolerance == 1e-2


def test_finite_differences_on_a_torchscript_model_run_in_float64(digits_model, digits_test):
    """TorchScript is the documented model format: its float64 copy must still be differentiable."""
    scripted = torchscript(digits_model)
    x, y = digits_test.x[:4], digits_test.y[:4]
    result = finite_difference_check(scripted, x, y, coordinates=8)
    assert result.dtype == "float64"
    assert result.max_relative_error < 1e-4
    assert all(p.requires_grad and p.dtype == torch.float32 for p in scripted.parameters())  # original untouched
