"""advgrad.bounds: IBP and CROWN margin bounds are sound, exact where closed forms exist, and
consistent with attacks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advgrad.bounds import METHODS, BoundedModel, UnsupportedOperation, certified, margin_bounds
from advgrad.bounds.propagate import InputSet, interval_bounds
from advgrad.io.model.normalize import Normalization, Normalized

EPS = {"inf": 0.08, "2": 0.3}


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.skip = nn.Conv2d(2, 4, 1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 4))

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.head(torch.relu(self.b(h) + self.skip(x)))


class Branches(nn.Module):
    def __init__(self):
        super().__init__()
        self.left = nn.Sequential(nn.Linear(6, 5), nn.Tanh())
        self.right = nn.Sequential(nn.Linear(6, 3), nn.LeakyReLU(0.2))
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.cat([self.left(x), self.right(x)], dim=1)
        return self.out(h * 2.0 - 0.5)


def _bn(c):
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(-1.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return bn


def _models() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    torch.manual_seed(0)
    flat = (6,)
    image = (2, 6, 6)
    mlp = lambda act: nn.Sequential(nn.Linear(6, 10), act, nn.Linear(10, 10), act, nn.Linear(10, 4))  # noqa: E731
    conv = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, stride=1),
        _bn(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(36, 4),
    )
    pool = nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=1, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=1, padding=1),
        nn.Conv2d(4, 4, 3, stride=2),
        nn.Sigmoid(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    norm = Normalized(
        nn.Sequential(nn.Conv2d(2, 3, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(12, 3)),
        Normalization((0.4, 0.6), (0.3, 0.5)),
    )
    return {
        "mlp-relu": (mlp(nn.ReLU()), flat),
        "mlp-leaky": (mlp(nn.LeakyReLU(0.1)), flat),
        "mlp-sigmoid": (mlp(nn.Sigmoid()), flat),
        "mlp-tanh": (mlp(nn.Tanh()), flat),
        "mlp-relu6": (mlp(nn.ReLU6()), flat),
        "mlp-hardtanh": (mlp(nn.Hardtanh(-0.5, 0.7)), flat),
        "conv-bn-avgpool": (conv, image),
        "maxpool": (pool, image),
        "residual": (Residual(), image),
        "cat": (Branches(), flat),
        "normalized": (norm, image),
    }


MODELS = _models()


def _random_points(x0: torch.Tensor, eps: float, norm: str, n: int, gen: torch.Generator) -> torch.Tensor:
    """n points of the ε-ball ∩ [0, 1] around each sample: (n, N, ...)."""
    shape = (n, *x0.shape)
    if norm == "inf":
        delta = (torch.rand(shape, generator=gen) * 2 - 1) * eps
        # a third of the points on the corners, where linear pieces take their extremes
        corners = torch.sign(delta[: n // 3]) * eps
        delta = torch.cat([corners, delta[n // 3 :]])
    else:
        d = torch.randn(shape, generator=gen)
        d = d / d.flatten(2).norm(dim=-1).reshape(n, x0.shape[0], *([1] * (x0.dim() - 1)))
        r = torch.rand((n, x0.shape[0]) + (1,) * (x0.dim() - 1), generator=gen) ** (1 / x0[0].numel())
        delta = d * r * eps
    # clamping into the box moves no point away from x0 (x0 is in the box)
    return (x0 + delta).clamp(0, 1)


def _project(x: torch.Tensor, x0: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    d = x - x0
    if norm == "inf":
        d = d.clamp(-eps, eps)
    else:
        n = d.flatten(1).norm(dim=1).clamp(min=1e-12).reshape(-1, *([1] * (x.dim() - 1)))
        d = d * (eps / n).clamp(max=1)
    return (x0 + d).clamp(0, 1)


def _attacked_margins(model, x0, y, eps, norm, steps=40) -> torch.Tensor:
    """For every class j, the smallest z_y − z_j that projected gradient descent finds: (N, C)."""
    with torch.no_grad():
        classes = model(x0).shape[1]
    out = torch.full((x0.shape[0], classes), torch.inf)
    rows = torch.arange(x0.shape[0])
    for j in range(classes):
        x = x0.clone()
        step = 2.5 * eps / steps
        for _ in range(steps):
            x.requires_grad_(True)
            z = model(x)
            margin = z[rows, y] - z[:, j]
            (g,) = torch.autograd.grad(margin.sum(), x)
            with torch.no_grad():
                if norm == "inf":
                    x = x - step * g.sign()
                else:
                    gn = g.flatten(1).norm(dim=1).clamp(min=1e-12).reshape(-1, *([1] * (x.dim() - 1)))
                    x = x - step * g / gn
                x = _project(x, x0, eps, norm)
                out[:, j] = torch.minimum(out[:, j], model(x)[rows, y] - model(x)[:, j])
    out[rows, y] = torch.inf
    return out


@pytest.mark.parametrize("norm", ["inf", "2"])
@pytest.mark.parametrize("name", list(MODELS))
def test_bounds_are_below_sampled_and_attacked_margins(name, norm):
    model, shape = MODELS[name]
    model.eval()
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand((3, *shape), generator=gen)
    y = torch.tensor([0, 1, 2])
    eps = EPS[norm]
    bounded = BoundedModel(model, x0)
    points = _random_points(x0, eps, norm, 1500, gen)
    with torch.no_grad():
        z = model(points.flatten(0, 1)).reshape(1500, 3, -1)
    true_min = (z.gather(2, y.reshape(1, 3, 1).expand(1500, 3, 1)) - z).amin(0)
    true_min = torch.minimum(true_min, _attacked_margins(model, x0, y, eps, norm))
    true_min[torch.arange(3), y] = torch.inf
    for method in METHODS:
        low = bounded.margin_bounds(x0, y, eps, norm=norm, method=method)
        assert low.shape == true_min.shape
        assert torch.isinf(low[torch.arange(3), y]).all()
        finite = torch.isfinite(true_min)
        assert (low[finite] <= true_min[finite] + 1e-4).all(), (method, (low - true_min)[finite].max())


@pytest.mark.parametrize("name", list(MODELS))
def test_crown_is_at_least_as_tight_as_ibp_and_widths_are_not_negative(name):
    model, shape = MODELS[name]
    x0 = torch.rand((4, *shape), generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 0])
    bounded = BoundedModel(model, x0)
    ibp = bounded.margin_bounds(x0, y, 0.05, method="ibp")
    crown = bounded.margin_bounds(x0, y, 0.05, method="crown")
    finite = torch.isfinite(ibp)
    assert crown[finite].mean() >= ibp[finite].mean()
    for refine in (False, True):
        bounds = interval_bounds(bounded.graph, InputSet(x0, 0.05, "inf", 0.0, 1.0), refine=refine)
        for lo, hi in bounds.values():
            assert (hi >= lo).all()


def test_crown_is_exact_on_a_linear_network():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3)).eval()
    x0 = torch.rand(6, 5) * 0.6 + 0.2
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    w = (model[1].weight @ model[0].weight).double()
    b = (model[1].weight @ model[0].bias + model[1].bias).double()
    wd = w[y].unsqueeze(1) - w.unsqueeze(0)  # (N, C, 5): rows w_y − w_j
    bd = b[y].unsqueeze(1) - b.unsqueeze(0)
    x = x0.double()
    # L∞ ∩ box, with ε large enough that the box cuts the ball
    eps = 0.5
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    expected = torch.minimum(wd * lo.unsqueeze(1), wd * hi.unsqueeze(1)).sum(-1) + bd
    got = margin_bounds(model, x0, y, eps, norm="inf", method="crown").double()
    off = torch.arange(6), y
    expected[off] = torch.inf
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # L2, the ball inside the box: w·x0 − ε‖w‖
    eps = 0.15
    expected = (wd * x.unsqueeze(1)).sum(-1) + bd - eps * wd.norm(dim=-1)
    expected[off] = torch.inf
    got = margin_bounds(model, x0, y, eps, norm="2", method="crown").double()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_crown_on_a_tiny_relu_network_is_sound_and_close_to_a_dense_grid():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x0 = torch.tensor([[0.5, 0.4]])
    y = torch.tensor([0])
    eps = 0.1
    g = torch.linspace(-eps, eps, 301)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2) + x0
    with torch.no_grad():
        z = model(grid)
    margins = z[:, :1] - z
    grid_min, grid_max = margins.amin(0), margins.amax(0)
    crown = margin_bounds(model, x0, y, eps, method="crown")[0]
    ibp = margin_bounds(model, x0, y, eps, method="ibp")[0]
    for j in (1, 2):
        assert crown[j] <= grid_min[j] + 1e-5
        assert crown[j] >= ibp[j] - 1e-6
        # not absurdly loose: within the range the margin takes over the box
        assert grid_min[j] - crown[j] <= grid_max[j] - grid_min[j]


def test_certified_needs_a_correct_clean_prediction_and_zero_eps_certifies_exactly_those():
    model, shape = MODELS["mlp-relu"]
    x = torch.rand((8, *shape), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        pred = model(x).argmax(1)
    y = pred.clone()
    y[::2] = (pred[::2] + 1) % 4  # half of the labels wrong
    ok = certified(model, x, y, [0.0, 0.01, 0.05])
    assert ok.shape == (3, 8)
    assert not ok[:, ::2].any()
    assert ok[0, 1::2].all()  # ε = 0: the bound is the clean margin, positive when the prediction is right
    assert (ok[2].int() <= ok[1].int()).all()  # a larger ball certifies no more samples


def test_mode_is_restored_and_parameters_untouched():
    model, shape = MODELS["conv-bn-avgpool"]
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand((2, *shape))
    margin_bounds(model, x, torch.tensor([0, 1]), 0.02)
    assert all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()


class Sorting(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.sort(x, dim=1).values)


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 5, batch_first=True)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(self.lstm(x)[0][:, -1])


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "model, shape, op",
    [
        (Sorting(), (4,), "sort"),
        (Recurrent(), (2, 4), "lstm"),
        (nn.Sequential(nn.Linear(4, 3), nn.GELU()), (4,), "gelu"),
    ],
)
def test_an_unsupported_operator_is_named(model, shape, op):
    with pytest.raises(UnsupportedOperation) as info:
        margin_bounds(model.eval(), torch.rand((2, *shape)), torch.tensor([0, 1]), 0.01)
    message = str(info.value)
    assert op in message.lower() and "\n" not in message


def test_bad_method_and_norm_are_usage_errors():
    from advgrad.core.errors import UsageError

    model, shape = MODELS["mlp-relu"]
    x = torch.rand((1, *shape))
    with pytest.raises(UsageError):
        margin_bounds(model, x, torch.tensor([0]), 0.1, method="deeppoly")
    with pytest.raises(UsageError):
        margin_bounds(model, x, torch.tensor([0]), 0.1, norm="1")
    with pytest.raises(UsageError):
        margin_bounds(model, x, torch.tensor([0]), -0.1)


def _random_interval(shape, gen):
    lo = torch.randn(shape, generator=gen) * 2
    width = torch.rand(shape, generator=gen) * 3
    width[..., :2] = 1e-7  # (nearly) degenerate intervals
    return lo, lo + width


@pytest.mark.parametrize("op", ["relu", "leaky", "steep-leaky", "sigmoid", "tanh", "hardtanh", "clamp-min"])
def test_each_activation_relaxation_holds_on_its_interval(op):
    from advgrad.bounds import ops

    make = {
        "relu": lambda: ops.LeakyReLU(0.0),
        "leaky": lambda: ops.LeakyReLU(0.1),
        "steep-leaky": lambda: ops.LeakyReLU(3.0),
        "sigmoid": ops.sigmoid_op,
        "tanh": ops.tanh_op,
        "hardtanh": lambda: ops.Clamp(-0.5, 1.0),
        "clamp-min": lambda: ops.Clamp(0.3, math.inf),
    }[op]()
    gen = torch.Generator().manual_seed(6)
    lo, hi = _random_interval((64, 50), gen)
    al, bl, au, bu = make.relax(lo, hi)
    t = torch.rand((200, 64, 50), generator=gen)
    t[0], t[1] = 0, 1  # the end points
    x = lo + (hi - lo) * t
    fx = make.f(x)
    assert (al * x + bl <= fx + 1e-6).all()
    assert (au * x + bu >= fx - 1e-6).all()
    flo, fhi = make.interval([(lo, hi)])
    assert (flo <= fx + 1e-6).all() and (fhi >= fx - 1e-6).all()


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_max_pool_linear_bounds_hold_at_points_of_the_box(kernel, stride, padding):
    from advgrad.bounds import ops

    gen = torch.Generator().manual_seed(7)
    n, c, h = 3, 2, 6
    out = (h + 2 * padding - kernel) // stride + 1
    op = ops.MaxPool2d((c, h, h), (c, out, out), kernel, stride, padding, 1)
    centre = torch.randn((n, c, h, h), generator=gen)
    radius = torch.rand((n, c, h, h), generator=gen) * torch.rand((n, 1, 1, 1), generator=gen)
    lo, hi = centre - radius, centre + radius
    rows = torch.randn((n, 5, c, out, out), generator=gen)
    (a_in,), bias = op.backward(rows, [(lo, hi)])
    x = lo + (hi - lo) * torch.rand((100, n, c, h, h), generator=gen)
    pooled = torch.nn.functional.max_pool2d(x.flatten(0, 1), kernel, stride, padding).reshape(100, n, 1, -1)
    exact = (rows.flatten(2) * pooled).sum(-1)  # (100, n, 5)
    linear = (a_in.flatten(2) * x.reshape(100, n, 1, -1)).sum(-1) + bias
    assert (linear <= exact + 1e-5).all()
    plo, phi = op.interval([(lo, hi)])
    assert (plo.flatten(1) <= pooled[:, :, 0].amin(0) + 1e-6).all() and (
        phi.flatten(1) >= pooled[:, :, 0].amax(0) - 1e-6
    ).all()


def test_default_model_certified_samples_resist_pgd_and_crown_beats_ibp():
    from advgrad.attacks.pgd import PGDParams, pgd
    from advgrad.core.threat import ThreatModel
    from advgrad.io.data.load_data import load_default
    from advgrad.io.model.load_model import load_default_model

    model = load_default_model()
    x, y = load_default().fetch(torch.arange(0, 450, 5))  # 90 samples
    eps = 0.02
    ok = {m: certified(model, x, y, [eps], method=m)[0] for m in METHODS}
    assert ok["crown"].sum() >= ok["crown-ibp"].sum() >= ok["ibp"].sum()
    assert ok["crown"].float().mean() > 0.8  # CROWN certifies most samples at this ε (about 90%)
    threat = ThreatModel("inf", eps)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    for loss in ("ce", "margin"):
        adv = pgd(
            model,
            x,
            y,
            threat=threat,
            params=PGDParams(steps=20, loss=loss),
            generator=torch.Generator().manual_seed(0),
        )
        with torch.no_grad():
            robust = model(adv).argmax(1) == y
        assert not (ok["crown"] & ~robust).any()  # certified yet fooled would be a contradiction
    assert (ok["crown"] <= clean).all()


@pytest.mark.parametrize(
    "in_shape, kw",
    [
        ((2, 7, 7), dict(stride=2, padding=1, dilation=1, groups=1)),
        ((4, 6, 6), dict(stride=1, padding=2, dilation=2, groups=2)),
        ((2, 8, 8), dict(stride=3, padding=0, dilation=1, groups=1)),
    ],
)
def test_conv_transpose_paths_agree_with_the_vector_jacobian_product(in_shape, kw):
    from advgrad.bounds import ops

    gen = torch.Generator().manual_seed(8)
    weight = torch.randn((4, in_shape[0] // kw["groups"], 3, 3), generator=gen)
    out = torch.nn.functional.conv2d(torch.zeros((1, *in_shape)), weight, None, **kw).shape[1:]
    op = ops.Conv2d(in_shape, out, weight, torch.randn(4, generator=gen), **kw)
    rows = torch.randn((2, 3, *out), generator=gen)
    reference = ops.Affine.transpose(op, rows)[0]
    torch.testing.assert_close(op._conv_transpose(rows)[0], reference, atol=1e-4, rtol=1e-4)
    big = torch.randn((2, 400, *out), generator=gen)  # enough rows for the dense path
    torch.testing.assert_close(op.transpose(big)[0], ops.Affine.transpose(op, big)[0], atol=1e-4, rtol=1e-4)


def test_l2_bound_uses_the_box_when_it_cuts_the_ball():
    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(6, 3)).eval()
    x0 = torch.tensor([[0.0, 0.0, 1.0, 0.5, 0.05, 0.97]])
    y = torch.tensor([0])
    eps = 0.4
    got = margin_bounds(model, x0, y, eps, norm="2", method="crown")[0].double()
    w = model[0].weight.detach().double()
    b = model[0].bias.detach().double()
    for j in (1, 2):
        a, c = w[0] - w[j], b[0] - b[j]
        ball_only = a @ x0[0].double() + c - eps * a.norm()
        # the optimum over ball ∩ box by many projected steps (alternating projections: box, ball)
        x = x0[0].double().clone()
        for _ in range(3000):
            x = x - 1e-3 * a
            d = x - x0[0].double()
            x = x0[0].double() + d * min(1.0, eps / float(d.norm()))
            x = x.clamp(0, 1)
        optimum = a @ x + c
        assert got[j] <= optimum + 1e-5
        assert got[j] >= optimum - 1e-2  # near the optimum
        assert got[j] > ball_only + 1e-3  # and tighter than the ball alone


def test_empty_batches_and_bad_labels():
    from advgrad.core.errors import UsageError

    model, shape = MODELS["conv-bn-avgpool"]
    empty = torch.zeros((0, *shape))
    assert margin_bounds(model, empty, torch.zeros(0, dtype=torch.long), 0.1).shape == (0, 4)
    assert certified(model, empty, torch.zeros(0, dtype=torch.long), [0.1, 0.2]).shape == (2, 0)
    with pytest.raises(UsageError):
        margin_bounds(model, torch.rand((2, *shape)), torch.tensor([0, 7]), 0.1)


def test_an_exported_program_gives_the_same_bounds_as_its_module():
    model, shape = MODELS["residual"]
    x = torch.rand((3, *shape), generator=torch.Generator().manual_seed(10))
    y = torch.tensor([0, 1, 2])
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    expected = margin_bounds(model, x, y, 0.03)
    torch.testing.assert_close(margin_bounds(program, x, y, 0.03), expected)
    assert torch.equal(certified(program, x, y, [0.03]), certified(model, x, y, [0.03]))


def test_row_chunks_do_not_change_the_bounds(monkeypatch):
    from advgrad.bounds import propagate

    model, shape = MODELS["maxpool"]
    x = torch.rand((3, *shape), generator=torch.Generator().manual_seed(11))
    y = torch.tensor([0, 1, 2])
    bounded = BoundedModel(model, x)
    whole = bounded.margin_bounds(x, y, 0.05)
    monkeypatch.setattr(propagate, "ROW_BUDGET", 1)  # one row per backward pass
    torch.testing.assert_close(bounded.margin_bounds(x, y, 0.05), whole)


class _BranchOnData(nn.Module):
    def forward(self, x):
        if bool(x.sum() > 0):
            return x.flatten(1)[:, :3]
        return -x.flatten(1)[:, :3]


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit's deprecation notice
@pytest.mark.parametrize("how", ["trace", "script"])
def test_torchscript_models_give_the_bounds_of_the_module_they_came_from(how):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4)).eval()
    x = torch.rand(6, 1, 6, 6)
    y = net(x).argmax(1)
    ts = torch.jit.trace(net, x[:2]) if how == "trace" else torch.jit.script(net)
    wrapped = Normalized(ts, Normalization((0.5,), (0.25,)))  # TorchScript inside a Python module
    for method in METHODS:
        want = margin_bounds(net, x, y, 0.02, method=method)
        assert torch.allclose(margin_bounds(ts, x, y, 0.02, method=method), want, atol=1e-5)
        plain = margin_bounds(Normalized(net, Normalization((0.5,), (0.25,))), x, y, 0.02, method=method)
        assert torch.allclose(margin_bounds(wrapped, x, y, 0.02, method=method), plain, atol=1e-5)
    assert isinstance(wrapped.model, torch.jit.ScriptModule)  # the model is left as it was


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_that_does_not_convert_is_refused_in_one_line():
    scripted = torch.jit.script(_BranchOnData())
    with pytest.raises(UnsupportedOperation) as caught:
        margin_bounds(scripted, torch.rand(2, 1, 4, 4), torch.tensor([0, 1]), 0.01)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_max_pool_undecided_marks_the_inputs_of_open_windows(kernel, stride, padding):
    from advgrad.bounds import ops

    gen = torch.Generator().manual_seed(3)
    n, c, h = 4, 2, 6
    out = (h + 2 * padding - kernel) // stride + 1
    op = ops.MaxPool2d((c, h, h), (c, out, out), kernel, stride, padding, 1)
    centre = torch.randn((n, c, h, h), generator=gen)
    radius = 0.4 * torch.rand((n, c, h, h), generator=gen)
    lo, hi = centre - radius, centre + radius
    want = torch.zeros((n, c, h, h), dtype=torch.bool)
    for b in range(n):
        for ch in range(c):
            for i in range(out):
                for j in range(out):
                    cells = [
                        (r, q)
                        for r in range(i * stride - padding, i * stride - padding + kernel)
                        for q in range(j * stride - padding, j * stride - padding + kernel)
                        if 0 <= r < h and 0 <= q < h
                    ]
                    decided = any(
                        all(lo[b, ch, r, q] >= hi[b, ch, r2, q2] for (r2, q2) in cells if (r2, q2) != (r, q))
                        for (r, q) in cells
                    )
                    if not decided:
                        for r, q in cells:
                            want[b, ch, r, q] = True
    got = op.undecided([(lo, hi)])
    assert torch.equal(got, want)
    assert 0 < int(want.sum()) < want.numel()  # both kinds of window occur


def test_crown_tightens_the_active_neurons_a_max_pool_reads(monkeypatch):
    # ReLU → max-pool: the pool's relaxation uses the bounds of the stably active neurons too, so
    # CROWN refines them (not only the unstable ones): tighter margins, never looser, and sound.
    # Dense rows (the patches tighten every neuron of a convolution whatever the mode)
    import advgrad.bounds.patches as patches
    import advgrad.bounds.propagate as propagate
    from advgrad.io.data.load_data import load_default
    from advgrad.io.model.load_model import load_default_model

    monkeypatch.setattr(patches, "conv_chain", lambda graph, name: None)
    model = load_default_model()
    x, y = load_default().fetch(torch.arange(0, 450, 15))  # 30 samples
    bounded = BoundedModel(model, x[:1])
    tight = bounded.margin_bounds(x, y, 0.025, method="crown")
    original = propagate._refinement
    try:
        propagate._refinement = lambda graph, name: (
            propagate.UNSTABLE if original(graph, name) == propagate.MAYBE_ACTIVE else original(graph, name)
        )
        loose = bounded.margin_bounds(x, y, 0.025, method="crown")
    finally:
        propagate._refinement = original
    finite = torch.isfinite(tight)
    assert (tight[finite] >= loose[finite] - 1e-4).all()
    assert (tight[finite] > loose[finite] + 1e-3).any()
    assert int((tight > 1e-5).all(1).sum()) > int((loose > 1e-5).all(1).sum())
    with torch.no_grad():
        z = model(x)
    assert (tight[finite] <= (z.gather(1, y[:, None]) - z)[finite] + 1e-4).all()  # below the clean margins


class _Chain(nn.Module):
    """Convolutions of every geometry the patches take, with the operators allowed between them."""

    def __init__(self, kind: str):
        super().__init__()
        c = 4
        if kind == "strided":
            layers = [nn.Conv2d(2, c, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, stride=2, padding=2)]
        elif kind == "dilated-groups":
            layers = [nn.Conv2d(2, c, 3, padding=2, dilation=2), nn.LeakyReLU(0.1), nn.Conv2d(c, c, 3, groups=2)]
        elif kind == "batchnorm-head":  # the refined neurons are batch-norm outputs
            layers = [nn.Conv2d(2, c, 3, padding=1), _bn(c), nn.ReLU(), nn.Conv2d(c, c, 3, stride=2), _bn(c)]
        elif kind == "maxpool":  # ReLU → max-pool (two geometries) between the convolutions
            layers = [nn.Conv2d(2, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(c, c, 3, padding=1)]
            layers += [nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1), nn.Conv2d(c, c, 2)]
        elif kind == "batchnorm-sigmoid":
            layers = [nn.Conv2d(2, c, 3, padding=1), _bn(c), nn.Sigmoid(), nn.Conv2d(c, c, 5, padding=2)]
        elif kind == "no-activation":  # convolution straight into a padded convolution
            layers = [nn.Conv2d(2, c, 3), nn.Conv2d(c, c, 3, padding=1, bias=False), nn.Tanh(), nn.Conv2d(c, c, 3)]
        else:  # deep: a third convolution reads rows that differ per sample from the start
            layers = [nn.Conv2d(2, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU()]
            layers += [nn.Conv2d(c, c, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(c, c, 4, padding=1)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))

    def forward(self, x):
        return self.head(self.body(x))


_KINDS = ["strided", "dilated-groups", "maxpool", "batchnorm-head", "batchnorm-sigmoid", "no-activation", "deep"]


@pytest.mark.parametrize(
    "kind, matrix, norm",
    [(k, True, "inf") for k in _KINDS] + [(k, False, "inf") for k in _KINDS] + [(k, True, "2") for k in _KINDS],
)
def test_conv_bounds_in_patches_equal_the_dense_rows(kind, matrix, norm, monkeypatch):
    # two computations of the same CROWN bounds: rows on receptive-field windows, and dense rows
    # over whole layers (every neuron refined in both); on a normalised, non-square input
    import advgrad.bounds.patches as patches
    import advgrad.bounds.propagate as propagate
    from advgrad.bounds import ops

    torch.manual_seed(3)
    net = _Chain(kind)
    x = torch.rand(5, 2, 9, 7)
    net(x)  # sizes the lazy head
    model = Normalized(net.eval(), Normalization((0.4, 0.5), (0.3, 0.2)))
    if not matrix:
        monkeypatch.setattr(patches, "MATRIX_LIMIT", 0)  # transposed convolutions instead
    bounded = BoundedModel(model, x[:1])
    graph = bounded.graph
    inputs = InputSet(x, 0.03 if norm == "inf" else 0.2, norm, 0.0, 1.0)
    found = {}
    for node in graph.nodes:
        chain = patches.conv_chain(graph, node.name)
        if chain is not None:
            found[node.name] = chain
    convs = [n.name for n in graph.nodes if n.name.startswith("conv2d")]
    assert set(convs) <= set(found)  # every convolution, and the batch norms after them
    if kind == "batchnorm-head":
        assert sum(name.startswith("batch_norm") for name in found) == 2
    bounds = {graph.input: inputs.box()}
    checked = tightened = 0
    for node in graph.nodes:
        bounds[node.name] = node.op.interval([bounds[i] for i in node.inputs])
        if node.name in found:
            with_patches = dict(bounds)
            propagate._refine_in_patches(graph, inputs, found[node.name], with_patches)
            with monkeypatch.context() as dense:
                dense.setattr(patches, "conv_chain", lambda graph, name: None)
                propagate._refine(graph, inputs, node.name, bounds, propagate.EVERY)
            for got, want in zip(with_patches[node.name], bounds[node.name], strict=True):
                assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), node.name
            if any(isinstance(n.op, ops.Elementwise) for n in found[node.name]):
                width = bounds[node.name][1] - bounds[node.name][0]
                ibp = node.op.interval([bounds[i] for i in node.inputs])
                tightened += bool((width < ibp[1] - ibp[0] - 1e-4).any())
            checked += 1
    assert checked == len(found)
    assert tightened  # CROWN did tighten something: the comparison is not between two no-ops


def test_patches_refuse_what_they_cannot_hold():
    # average pooling, additions and non-square kernels keep the dense rows
    import advgrad.bounds.patches as patches

    torch.manual_seed(0)
    for net in (
        nn.Sequential(
            nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.Flatten(), nn.LazyLinear(2)
        ),
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, (3, 1)), nn.Flatten(), nn.LazyLinear(2)),
    ):
        x = torch.rand(2, 1, 10, 10)
        net(x)
        graph = BoundedModel(net.eval(), x[:1]).graph
        last = [n.name for n in graph.nodes if n.name.startswith("conv2d")][-1]
        assert patches.conv_chain(graph, last) is None
    graph = BoundedModel(Residual().eval(), torch.rand(1, 2, 6, 6)).graph
    convs = [n.name for n in graph.nodes if n.name.startswith("conv2d")]
    added = [n.name for n in graph.nodes if n.name.startswith("add")]
    assert patches.conv_chain(graph, convs[1]) is not None  # b reads relu(a(x)): a chain
    assert added and patches.conv_chain(graph, added[0]) is None  # the residual sum is not a convolution


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_max_pool_in_patches_moves_each_coefficient_where_the_dense_rule_does(kernel, stride, padding):
    # random rows on the pool's output (a 3×3 window per position, off-map entries zero) through
    # the pool: the window rows and the dense rows give the same linear function and constant, on
    # intervals where some windows take the line and others the constant
    import advgrad.bounds.patches as patches
    from advgrad.bounds import ops

    gen = torch.Generator().manual_seed(kernel * 10 + stride + padding)
    c, h, w = 2, 7, 7
    op = ops.MaxPool2d((c, h, w), (0, 0, 0), kernel, stride, padding, 1)
    ho = (h + 2 * padding - kernel) // stride + 1
    op.out_shape = (c, ho, ho)
    centre = torch.randn(3, c, h, w, generator=gen)
    radius = torch.rand(3, c, h, w, generator=gen) * 1.5
    bounds = (centre - radius, centre + radius)
    use_line = op.relaxation([bounds])[2]
    assert (~use_line).any() and use_line.any()
    k, hw = 3, (ho, ho)  # windows of 3×3 pool outputs centred on each position
    rows = torch.randn(1, 2, ho * ho, c, k, k, generator=gen)
    rows = rows * patches._inside((c, ho, ho), k, 1, 1, hw, rows).unsqueeze(1)
    a, bias, k2, s2, p2 = patches._through_pool(
        op, bounds, slice(None), rows, torch.zeros(1, 2, ho * ho), k, 1, 1, hw, 3
    )
    # the same rows, dense: row (r, l) holds window l's numbers at their places on the output map
    dense = torch.zeros(3, 2, ho * ho, c, ho + 2, ho + 2)
    for q in range(ho * ho):
        i, j = divmod(q, ho)
        dense[:, :, q, :, i : i + k, j : j + k] = rows[0, :, q]
    dense = dense[..., 1 : ho + 1, 1 : ho + 1].reshape(3, 2 * ho * ho, c, ho, ho)
    (a_dense,), bias_dense = op.backward(dense, [bounds])
    x = torch.randn(3, c, h, w, generator=gen)
    got = (a * patches._windows(x, k2, s2, p2, hw).unsqueeze(1)).sum(dim=(-3, -2, -1)) + bias
    want = (a_dense.flatten(2) * x.flatten(1).unsqueeze(1)).sum(-1) + bias_dense
    assert torch.allclose(got.reshape(3, -1), want, atol=1e-4)
