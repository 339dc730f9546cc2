"""STAPS training (Mao et al. 2023): the latent box, the latent attack, the gradient connector, the cut."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_bad_input, invoke
from torch import Tensor, nn
from train_models import margin_problem, mlp

from advgrad.bounds import margin_bounds
from advgrad.core.errors import ModelError
from advgrad.io.data.sources import TensorSource
from advgrad.models import DigitsCNN
from advgrad.train import TrainConfig, Trainer
from advgrad.train.staps import LatentBounds, checked_split, connect, head_margins, latent_attack, lower_share

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")  # training on one thread (conftest)


def _cnn() -> DigitsCNN:
    torch.manual_seed(0)
    return DigitsCNN(channels=2, hidden=8).eval()


def _head_ibp(head: nn.Sequential, low: Tensor, high: Tensor, y: Tensor) -> Tensor:
    """An independent IBP of a Flatten/Linear/ReLU head over [low, high]: lower bounds of z_y − z_j."""
    lo, hi = low.flatten(1), high.flatten(1)
    layers = [layer for layer in head if not isinstance(layer, nn.Flatten)]
    for layer in layers[:-1]:
        if isinstance(layer, nn.ReLU):
            lo, hi = lo.clamp(min=0), hi.clamp(min=0)
        else:
            mid, rad = (lo + hi) / 2 @ layer.weight.T + layer.bias, (hi - lo) / 2 @ layer.weight.abs().T
            lo, hi = mid - rad, mid + rad
    last = layers[-1]
    rows = last.weight[y][:, None, :] - last.weight[None]  # (N, C, H): w_y − w_j
    bias = last.bias[y][:, None] - last.bias[None]
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    return (rows * mid[:, None]).sum(-1) - (rows.abs() * rad[:, None]).sum(-1) + bias


def test_the_latent_box_holds_the_features_of_every_point_of_the_input_box():
    model = _cnn()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 1, 8, 8, generator=g)
    extractor, _ = checked_split(model, x)
    with torch.no_grad():
        low, high = LatentBounds(model, extractor, x).box(x, 0.05)
        corners = torch.randint(0, 2, (64, *x.shape), generator=g).float() * 2 - 1
        inside = torch.rand(64, *x.shape, generator=g) * 2 - 1
        for delta in (corners, inside):
            points = (x + 0.05 * delta).clamp(0, 1)
            features = extractor(points.flatten(0, 1)).unflatten(0, (64, len(x)))
            assert features.shape[1:] == low.shape
            assert (features >= low - 1e-5).all() and (features <= high + 1e-5).all()
    assert (high - low).max() > 0  # a box, not a point


def test_latent_points_stay_in_the_box_and_are_never_looser_than_ibp():
    model = _cnn()
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(5, 1, 8, 8, generator=g), torch.randint(0, 10, (5,), generator=g)
    extractor, head = checked_split(model, x)
    with torch.no_grad():
        low, high = LatentBounds(model, extractor, x).box(x, 0.1)
    z = latent_attack(head, low, high, y, 10, 8, torch.Generator().manual_seed(0))
    lo, hi = low.repeat_interleave(10, 0), high.repeat_interleave(10, 0)
    assert ((z >= lo) & (z <= hi)).all()
    with torch.no_grad():
        margins = head_margins(head, z, y, 10)
        ibp = _head_ibp(head, low, high, y)
    others = torch.ones_like(margins, dtype=torch.bool).scatter(1, y[:, None], False)
    assert (margins[others] >= ibp[others] - 1e-5).all()
    assert (margins[~others] == 0).all()


def test_on_a_linear_head_the_latent_attack_finds_the_exact_worst_margin():
    """The margin of a linear head is smallest at a vertex, where it equals IBP's bound: signed steps
    that cover the box's width reach it from any start."""
    torch.manual_seed(3)
    head = nn.Sequential(nn.Flatten(), nn.Linear(6, 4))
    g = torch.Generator().manual_seed(3)
    low = torch.randn(3, 6, generator=g)
    high = low + torch.rand(3, 6, generator=g)
    y = torch.tensor([0, 2, 3])
    z = latent_attack(head, low, high, y, 4, 8, torch.Generator().manual_seed(0))
    with torch.no_grad():
        margins, exact = head_margins(head, z, y, 4), _head_ibp(head, low, high, y)
    others = torch.ones_like(margins, dtype=torch.bool).scatter(1, y[:, None], False)
    assert torch.allclose(margins[others], exact[others], atol=1e-5)


def test_the_connector_sends_the_gradient_to_the_nearer_end_and_keeps_its_total():
    torch.manual_seed(4)
    head = nn.Linear(4, 3)
    low = torch.zeros(1, 4, requires_grad=True)
    high = torch.full((1, 4), 2.0, requires_grad=True)
    z = torch.tensor([[0.0, 2.0, 0.4, 1.6]])  # at l, at u, near l, near u
    head(connect(z, low, high)).sum().backward()
    direct = head.weight.sum(0)  # the gradient at z of the summed logits
    assert torch.allclose(low.grad + high.grad, direct[None])
    assert torch.allclose(low.grad[0], torch.stack([direct[0], torch.tensor(0.0), direct[2], torch.tensor(0.0)]))
    assert torch.allclose(high.grad[0], torch.stack([torch.tensor(0.0), direct[1], torch.tensor(0.0), direct[3]]))
    assert torch.equal(connect(z, low, high), z)  # the value is z's


def test_the_rectified_linear_connector_splits_between_its_ends():
    low, high = torch.zeros(5), torch.ones(5)
    z = torch.tensor([0.0, 0.2, 0.3, 0.5, 0.9])
    share = lower_share(z, low, high, width=0.25)  # 1 up to t = 0.25, (0.75 − t)/0.5 to t = 0.75, then 0
    assert torch.allclose(share, torch.tensor([1.0, 1.0, 0.9, 0.5, 0.0]))
    assert torch.equal(lower_share(z, low, low), torch.full((5,), 0.5))  # a point interval: split evenly


class _NoCut(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)

    def forward(self, x):
        return self.linear(x.flatten(1))


class _SkipAround(_NoCut):
    def __init__(self):
        super().__init__()
        self.features, self.classifier = nn.Flatten(), nn.Linear(2, 2)

    def forward(self, x):
        return self.classifier(self.features(x)) + x.flatten(1)


@pytest.mark.parametrize("model", [_NoCut(), _SkipAround(), nn.Sequential(nn.Flatten(), nn.Linear(2, 2))], ids=str)
def test_a_model_that_does_not_cut_into_extractor_and_head_is_refused(model):
    with pytest.raises(ModelError, match="needs an nn.Sequential"):
        checked_split(model, torch.rand(2, 1, 1, 2))


def test_the_command_refuses_staps_on_a_model_it_cannot_cut(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = tmp_path / "random.pt"
    torch.save({"x": torch.rand(4, 3, 32, 32, generator=g), "y": torch.randint(0, 10, (4,), generator=g)}, data)
    args = ["train", "--method", "staps", "--eps", "0.01", "--model", "cifar-resnet", "--model-arg", "width=4"]
    result = invoke([*args, "--data", data, "--epochs", "1", "--device", "cpu"])
    assert_bad_input(result, "CifarResNet is neither")


def test_staps_certifies_the_margin_problem():
    x, y = margin_problem(128, 0)
    source = TensorSource(x, y, name="margin", description="margin problem")
    torch.manual_seed(0)
    model = nn.Sequential(*mlp(hidden=16, classes=16), nn.ReLU(), nn.Linear(16, 2))
    assert len(checked_split(model, x[:2])[1]) == 3  # the head: the last two linear layers
    config = TrainConfig(method="staps", eps=0.05, epochs=12, batch_size=32, lr=0.05, warmup=2, val_fraction=0.25)
    trainer = Trainer(
        model, source, config, device=CPU, train_indices=torch.arange(96), val_indices=torch.arange(96, 128)
    )
    trainer.run()
    low = margin_bounds(model.eval(), x[96:], y[96:], 0.05, method="ibp")
    assert float((low.min(dim=1).values > 0).float().mean()) == 1.0


@pytest.mark.slow
def test_a_staps_run_on_the_digits(tmp_path):
    """One epoch of the staps recipe on 64 digits through the command: it trains and certifies."""
    args = ["train", "--method", "staps", "--eps", "0.1", "--epochs", "1", "--limit", "64", "--val-fraction", "0"]
    result = invoke([*args, "--threads", "1", "--out", tmp_path / "w.safetensors", "--log", tmp_path / "l.json"])
    assert result.exit_code == 0, result.stderr
    assert "recipe staps (Mao et al. 2023" in result.stderr and "λ = 0.6" in result.stderr
    assert (tmp_path / "w.safetensors").exists()


def test_on_a_linear_head_the_loss_is_the_square_of_the_ibp_loss():
    """With a one-layer head the latent attack reaches IBP's margins exactly, so L_TAPS = L_IBP and
    the loss L_TAPS · L_IBP is L_IBP²; its gradient is (5 + 1)·L_IBP·∇L_IBP (the expansion)."""
    from advgrad.train.methods import Step, _ibp_ce, _small_box_centre, staps_loss

    torch.manual_seed(5)
    model = mlp(hidden=6, classes=3)
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(4, 1, 1, 2, generator=g), torch.tensor([0, 1, 2, 1])
    assert len(checked_split(model, x)[1]) == 1
    config = TrainConfig(method="staps", eps=0.1).resolve(100)
    bounds = LatentBounds(model, checked_split(model, x)[0], x)

    def step() -> Step:
        generator = torch.Generator().manual_seed(0)
        return Step(model, model, x, y, config, 0.1, 1.0, 0.0, generator, bounds)

    loss, _ = staps_loss(step())
    ibp = _ibp_ce(step(), _small_box_centre(step()), config.lam * 0.1)
    assert torch.allclose(loss, ibp**2, rtol=1e-5)
    weight = model[-1].weight
    (expected,) = torch.autograd.grad(6 * (ibp.detach() * ibp).sum(), weight)
    (got,) = torch.autograd.grad(staps_loss(step())[0].sum(), weight)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6)
