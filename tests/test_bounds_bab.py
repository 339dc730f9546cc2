"""advgrad.bounds.bab: every verdict of branch and bound agrees with an exact MILP, every
counterexample is real, and the limits leave samples unknown, never wrongly decided."""

from __future__ import annotations

import math

import pytest
import torch
from bab_nets import GRID, NETS, properties
from milp_oracle import min_margin
from torch import nn

from advgrad.bounds import BoundedModel
from advgrad.bounds.bab import FALSIFIED, UNKNOWN, VERIFIED, BabParams
from advgrad.bounds.rewrite import max_pools_as_relus
from advgrad.core.threat import ThreatModel

#: node budgets, not seconds, so that the verdicts do not depend on the machine's speed
DECIDING = BabParams(max_domains=20_000)


def _check_against_milp(net, x, y, eps, verdicts) -> dict[int, int]:
    """Each verdict against the MILP's exact minimum margin; counterexamples re-checked. Returns
    how many samples got each verdict (properties within 1e-3 of the boundary are not counted:
    the certification slack makes them undecidable by design)."""
    counts = {VERIFIED: 0, FALSIFIED: 0, UNKNOWN: 0}
    threat = ThreatModel("inf", eps)
    for i in range(len(y)):
        truth, _ = min_margin(net, x[i], int(y[i]), eps)
        status = int(verdicts.status[i])
        if abs(truth) < 1e-3:
            continue
        counts[status] += 1
        if status == VERIFIED:
            assert truth > 0, f"sample {i} verified, yet the MILP finds margin {truth:.4g} at ε={eps:.4g}"
        elif status == FALSIFIED:
            assert truth < 0, f"sample {i} falsified, yet the MILP proves margin {truth:.4g} at ε={eps:.4g}"
            point = verdicts.counterexample[i : i + 1]
            with torch.no_grad():
                assert int(net(point).argmax(1)) != int(y[i])
            assert bool(threat.contains(point, x[i : i + 1]).all())
    return counts


def _agreement(cases, enough: int) -> dict[int, int]:
    """Verdicts against the MILP on the properties of ``cases`` (kind, seed) until ``enough`` are
    counted; networks that nothing falsifies on the whole ε grid (dead ones) are passed over."""
    total = {VERIFIED: 0, FALSIFIED: 0, UNKNOWN: 0}
    for kind, seed in cases:
        net, x, y, eps = properties(kind, seed)
        if eps >= GRID[-1] * 0.9:
            continue
        verdicts = BoundedModel(net, x[:1]).verify(x, y, eps, params=DECIDING)
        for k, v in _check_against_milp(net, x, y, eps, verdicts).items():
            total[k] += v
        if sum(total.values()) >= enough:
            break
    return total


def test_bab_agrees_with_the_milp_on_tiny_networks():
    total = _agreement([("mlp", 0), ("mlp", 4), ("cnn", 0), ("cnn", 1), ("pool", 5)], 40)
    assert sum(total.values()) >= 38  # a property within 1e-3 of the boundary is not counted
    assert total[UNKNOWN] == 0, total
    assert min(total[VERIFIED], total[FALSIFIED]) >= 10, total  # the properties sit near the boundary


@pytest.mark.slow
def test_bab_agrees_with_the_milp_on_200_properties():
    cases = [(kind, seed) for seed in range(100, 200) for kind in NETS]
    total = _agreement(cases, 200)
    assert sum(total.values()) >= 200
    assert total[UNKNOWN] == 0, total
    assert min(total[VERIFIED], total[FALSIFIED]) >= 50, total


def test_bab_splits_leaky_relus_soundly():
    for seed in range(2):
        net, shape = NETS["mlp"](seed)
        net = nn.Sequential(*[nn.LeakyReLU(0.1) if isinstance(m, nn.ReLU) else m for m in net]).eval()
        x = torch.rand(8, *shape, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            y = net(x).argmax(1)
        for eps in (0.05, 0.15):
            verdicts = BoundedModel(net, x[:1]).verify(x, y, eps, params=DECIDING)
            counts = _check_against_milp(net, x, y, eps, verdicts)
            assert counts[UNKNOWN] == 0


def test_a_node_budget_leaves_hard_samples_unknown_and_runs_are_repeatable():
    net, x, y, eps = properties("cnn", 0)
    bounded = BoundedModel(net, x[:1])
    no_attack = {"attack_restarts": 0, "attack_steps": 0}  # the counterexamples must come from the branching
    first = bounded.verify(x, y, eps, params=BabParams(max_domains=0, **no_attack))
    again = bounded.verify(x, y, eps, params=BabParams(max_domains=0, **no_attack))
    assert torch.equal(first.status, again.status)
    assert int((first.status == UNKNOWN).sum()) > 0  # no branching allowed: α-CROWN alone cannot decide them
    full = bounded.verify(x, y, eps, params=BabParams(max_domains=4000, **no_attack))
    assert not (full.status == UNKNOWN).any()
    decided = first.status != UNKNOWN
    assert torch.equal(full.status[decided], first.status[decided])  # more effort never reverses a verdict
    assert first.domains.sum() == 0 and full.domains.sum() > 0


def test_misclassified_samples_are_falsified_by_themselves():
    net, x, y, _ = properties("mlp", 0)
    wrong = (y + 1) % 3
    verdicts = BoundedModel(net, x[:1]).verify(x, wrong, 0.01, params=DECIDING)
    assert (verdicts.status == FALSIFIED).all()
    assert torch.equal(verdicts.counterexample, x)


def test_input_splitting_decides_tables_and_holds_fixed_features():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 2)).eval()
    x = torch.rand(12, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = net(x).argmax(1)
    fixed = (1,)
    verdicts = BoundedModel(net, x[:1]).verify(x, y, 0.2, fixed=fixed, params=DECIDING)
    threat = ThreatModel("inf", 0.2, fixed=fixed)
    for i in range(len(y)):
        truth, _ = min_margin(net, x[i], int(y[i]), 0.2, fixed=fixed)
        if abs(truth) < 1e-3:
            continue
        assert int(verdicts.status[i]) == (VERIFIED if truth > 0 else FALSIFIED), (i, truth)
        if truth < 0:
            point = verdicts.counterexample[i : i + 1]
            assert point[0, 1] == x[i, 1] and bool(threat.contains(point, x[i : i + 1]).all())


class _Clamped(nn.Module):
    """ReLU6-like clamps and a tanh: relaxed by branch and bound, never split."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 10), nn.Linear(10, 10), nn.Linear(10, 3)

    def forward(self, x):
        return self.c(torch.tanh(self.b(torch.clamp(self.a(x), -0.5, 0.7))))


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_relaxed_operators_and_l2_give_sound_verdicts(norm):
    torch.manual_seed(5)
    net = _Clamped().eval()
    x = torch.rand(16, 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for layer in (net.a, net.b, net.c):  # steeper than PyTorch's initialisation: mixed verdicts
            layer.weight.mul_(4.0)
        y = net(x).argmax(1)
    eps = 0.1 if norm == "inf" else 0.2
    verdicts = BoundedModel(net, x[:1]).verify(x, y, eps, norm=norm, params=BabParams(max_domains=200))
    threat = ThreatModel(norm, eps)
    # verified: no point of the ball that projected gradient descent reaches is misclassified
    ok = verdicts.status == VERIFIED
    adv = x.clone()
    for _ in range(60):
        adv.requires_grad_(True)
        z = net(adv)
        other = z.masked_fill(torch.nn.functional.one_hot(y, 3).bool(), -math.inf).amax(1)
        (grad,) = torch.autograd.grad((z.gather(1, y[:, None])[:, 0] - other).sum(), adv)
        with torch.no_grad():
            adv = threat.clip(adv - 0.05 * threat.geometry.steepest(grad), x)
            assert not (ok & (net(adv).argmax(1) != y)).any()
    bad = verdicts.status == FALSIFIED
    with torch.no_grad():
        assert (net(verdicts.counterexample[bad]).argmax(1) != y[bad]).all()
    assert bool(threat.contains(verdicts.counterexample[bad], x[bad]).all())
    assert ok.any() and bad.any()


def test_max_pools_as_relus_compute_the_same_function():
    net, shape = NETS["pool"](0)
    x = torch.rand(5, *shape)
    graph = max_pools_as_relus(BoundedModel(net, x[:1]).graph)
    values = {graph.input: x}
    for node in graph.nodes:
        values[node.name] = node.op.interval([(values[i], values[i]) for i in node.inputs])[0]
    with torch.no_grad():
        torch.testing.assert_close(values[graph.output], net(x), rtol=1e-5, atol=1e-5)
    assert any(type(n.op).__name__ == "StridedPick" for n in graph.nodes)


def test_strided_pick_transpose_is_its_vector_jacobian_product():
    from advgrad.bounds.ops import Affine, StridedPick

    op = StridedPick((2, 6, 7), (2, 2, 3), (1, 2), (3, 2))
    a = torch.randn(2, 3, 2, 2, 3)
    torch.testing.assert_close(op.transpose(a)[0], Affine.transpose(op, a)[0])
