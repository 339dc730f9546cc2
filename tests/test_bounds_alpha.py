"""advgrad.bounds.alpha: α-CROWN's bounds are valid at any slopes in range and any β ≥ 0 (checked
against an exact MILP at random ones), and optimising them never loosens CROWN's bounds."""

from __future__ import annotations

import pytest
import torch
from bab_nets import NETS
from milp_oracle import min_margin

import advgrad.bounds.alpha as alpha
from advgrad.bounds import BoundedModel, margin_bounds
from advgrad.bounds.propagate import InputSet, interval_bounds, margin_rows


def _setup(kind: str, seed: int, eps: float, samples: int = 4):
    net, shape = NETS[kind](seed)
    x = torch.rand(samples, *shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = net(x).argmax(1)
    graph = BoundedModel(net, x[:1]).relu_graph
    inputs = InputSet(x, eps, "inf", 0.0, 1.0)
    return net, x, y, graph, inputs


def _random_slopes(gen: torch.Generator):
    """A stand-in for CROWN's starting slopes: uniform in each node's range, per neuron and row."""

    def start(graph, bounds, rows):
        out = {}
        for name, op in alpha.sloped_nodes(graph).items():
            low, high = op.slope_range()
            n = next(iter(bounds.values()))[0].shape[0]
            out[name] = low + (high - low) * torch.rand(n, rows, *graph.shapes[name], generator=gen)
        return out

    return start


def _truth(net, x, y, eps, classes: int, splits=None) -> torch.Tensor:
    """The MILP's exact minimum of each margin z_y − z_j (N, classes); +inf at y (and where the
    split constraints leave no point)."""
    out = torch.full((len(y), classes), torch.inf, dtype=torch.float64)
    for i in range(len(y)):
        for j in range(classes):
            if j == int(y[i]):
                continue
            try:
                out[i, j] = min_margin(net, x[i], int(y[i]), eps, only=j, splits=splits)[0]
            except RuntimeError:  # infeasible: the sub-domain is empty, every bound holds
                pass
    return out


@pytest.mark.parametrize("kind", ["mlp", "cnn", "pool"])
def test_bounds_hold_at_random_slopes(kind, monkeypatch):
    net, x, y, graph, inputs = _setup(kind, 0, {"mlp": 0.15, "cnn": 0.05, "pool": 0.1}[kind])
    bounds = interval_bounds(graph, inputs, refine=True)
    rows = margin_rows(y, 3, x.dtype)
    truth = _truth(net, x, y, inputs.eps, 3)
    gen = torch.Generator().manual_seed(1)
    monkeypatch.setattr(alpha, "initial_slopes", _random_slopes(gen))  # every slope, final and intermediate
    for _ in range(4):
        low = alpha.optimise(graph, inputs, rows, bounds, alpha.AlphaParams(iterations=0)).lower
        assert (low.double() <= truth + 1e-4).all(), (low, truth)


def test_bounds_with_splits_hold_at_random_slopes_and_multipliers(monkeypatch):
    net, x, y, graph, inputs = _setup("mlp", 0, 0.15, samples=3)
    relus = [name for name in alpha.sloped_nodes(graph)]
    pre = {name: next(n for n in graph.nodes if n.name == name).inputs[0] for name in relus}
    base = interval_bounds(graph, inputs, refine=True)
    gen = torch.Generator().manual_seed(2)
    monkeypatch.setattr(alpha, "initial_slopes", _random_slopes(gen))
    rows = margin_rows(y, 3, x.dtype)
    checked = 0
    for _ in range(6):
        # split two unstable neurons of each sample at random, the same for all samples
        splits, oracle = {}, {}
        for k, name in enumerate(relus):
            lo, hi = base[pre[name]]
            unstable = ((lo < 0) & (hi > 0)).all(0).nonzero().flatten()
            s = torch.zeros(lo.shape, dtype=torch.int8)
            pick = unstable[torch.randperm(len(unstable), generator=gen)[:1]]
            for neuron in pick.tolist():
                sign = 1 if torch.rand(1, generator=gen) < 0.5 else -1
                s[:, neuron] = sign
                oracle.setdefault(k, {})[neuron] = sign
            splits[pre[name]] = s
        known = interval_bounds(graph, inputs, refine=True, constrain=alpha.known_and_split(None, splits))
        betas = {name: 3 * torch.rand(len(y), 3, *graph.shapes[name], generator=gen) for name in relus}
        low = alpha.optimise(graph, inputs, rows, known, alpha.AlphaParams(iterations=0), splits=splits, betas=betas)
        truth = _truth(net, x, y, inputs.eps, 3, splits=oracle)
        assert (low.lower.double() <= truth + 1e-4).all(), (low.lower, truth)
        checked += int(torch.isfinite(truth).sum())
    assert checked > 0


def test_optimised_bounds_are_valid_and_tighter_than_crown():
    improved = 0
    for kind, eps in (("mlp", 0.15), ("cnn", 0.05), ("pool", 0.1)):
        net, x, y, _, _ = _setup(kind, 0, eps)
        crown = margin_bounds(net, x, y, eps, method="crown")
        tight = margin_bounds(net, x, y, eps, method="alpha-crown")
        truth = _truth(net, x, y, eps, 3)
        finite = torch.isfinite(crown)
        assert (tight[finite] >= crown[finite] - 1e-5).all()
        assert (tight.double()[finite] <= truth[finite] + 1e-4).all()
        improved += int((tight[finite] > crown[finite] + 1e-3).sum())
    assert improved > 0


@pytest.mark.slow
def test_alpha_crown_certifies_more_of_the_default_model_than_crown():
    from advgrad.bounds import certified
    from advgrad.io.data.load_data import load_default
    from advgrad.io.model.load_model import load_default_model

    model = load_default_model()
    x, y = load_default().fetch(torch.arange(60))
    ok = {m: certified(model, x, y, [0.03], method=m)[0] for m in ("crown", "alpha-crown")}
    assert (ok["alpha-crown"] >= ok["crown"]).all()
    assert ok["alpha-crown"].sum() > ok["crown"].sum()
