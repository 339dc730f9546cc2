"""advgrad/attacks/iterative.py: the one gradient loop, its directions, starts and bookkeeping."""

from __future__ import annotations

import pytest
import torch
from helpers import Recorder, assert_inside, independent_norm, linear_model, tiny_net
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor

from advgrad.attacks import FGSMParams, LoopConfig, PGDParams, fgsm, gradient_attack, pgd
from advgrad.attacks.iterative import random_start, steepest_direction
from advgrad.core.threat import NORMS, ThreatModel

# ---------------------------------------------------------------- directions


def test_steepest_direction_linf_is_sign():
    g = torch.tensor([[0.5, -2.0, 0.0, 1e-30]])
    assert steepest_direction(g, ThreatModel("inf", 1.0)).tolist() == [[1.0, -1.0, 0.0, 1.0]]


@given(st.integers(0, 2**31 - 1), st.integers(1, 30))
def test_steepest_direction_l2_is_unit_and_parallel(seed, d):
    g = torch.randn(3, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    direction = steepest_direction(g, ThreatModel("2", 1.0))
    assert torch.allclose(independent_norm(direction, "2"), torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(direction * g.norm(dim=1, keepdim=True), g, atol=1e-12)


def test_steepest_direction_l2_of_zero_gradient_is_zero():
    assert torch.equal(steepest_direction(torch.zeros(2, 5), ThreatModel("2", 1.0)), torch.zeros(2, 5))


def test_steepest_direction_l1_spreads_over_the_largest_coordinates():
    g = torch.tensor([[0.1, -5.0, 0.2, 4.0, 0.0, -0.3, 0.05, 0.01, 0.02, 0.03]], dtype=torch.float64)
    direction = steepest_direction(g, ThreatModel("1", 1.0), sparsity=0.8)  # top 20% = 2 coordinates
    assert direction.tolist() == [[0, -0.5, 0, 0.5, 0, 0, 0, 0, 0, 0]]
    assert float(independent_norm(direction, "1")[0]) == pytest.approx(1.0)


# ---------------------------------------------------------------- random starts


@pytest.mark.parametrize("norm", NORMS)
def test_random_start_is_inside_the_ball_and_uses_only_the_generator(norm):
    threat = ThreatModel(norm, 0.3)
    rng = torch.get_rng_state()
    a = random_start(torch.Size((64, 1, 3, 3)), threat, torch.Generator().manual_seed(5), torch.float64)
    b = random_start(torch.Size((64, 1, 3, 3)), threat, torch.Generator().manual_seed(5), torch.float64)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(a, b) and a.dtype == torch.float64
    norms = independent_norm(a, norm)
    assert bool((norms <= 0.3 + 1e-12).all())
    assert float(norms.min()) > 0.0  # not all at the centre
    if norm == "inf":  # uniform over the cube: the extremes come close to ±ε
        assert float(a.max()) > 0.25 and float(a.min()) < -0.25
    else:  # uniform in the ball: most of the volume is near the surface in 9 dimensions
        assert float(norms.median()) > 0.2


# ---------------------------------------------------------------- the loop


def test_fgsm_is_the_one_step_case_of_the_loop():
    model = tiny_net(seed=2)
    x = torch.rand(5, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1])
    for norm in ("inf", "2"):
        threat = ThreatModel(norm, 0.1)
        a = fgsm(model, x, y, threat=threat)
        b = gradient_attack(model, x, y, threat, LoopConfig(steps=1, step_size=0.1, random_start=False)).x_adv
        c = pgd(model, x, y, threat=threat, params=PGDParams(steps=1, step_size=0.1, random_start=False))
        assert torch.equal(a, b) and torch.equal(a, c)


def test_momentum_on_a_two_class_linear_model_keeps_the_direction():
    """The gradient direction is constant on a 2-class linear model, so the momentum average
    points the same way: L∞ momentum steps still end at x + ε·sign(w_other − w_y)."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(2, 9, generator=gen, dtype=torch.float64)
    x = 0.4 + 0.2 * torch.rand(4, 1, 3, 3, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0])
    config = LoopConfig(steps=5, step_size=0.03, random_start=False, momentum=0.9)
    x_adv = gradient_attack(linear_model(w), x, y, ThreatModel("inf", 0.1), config).x_adv
    assert torch.allclose(x_adv - x, 0.1 * (w[1 - y] - w[y]).reshape(x.shape).sign(), atol=1e-12)


@pytest.mark.parametrize("norm", NORMS)
def test_loop_results_stay_in_ball_and_box_for_every_norm(norm):
    model = tiny_net(seed=4)
    x = torch.rand(6, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    eps = {"inf": 0.1, "2": 0.5, "1": 2.0}[norm]
    config = LoopConfig(steps=4, step_size=eps / 2, restarts=2, momentum=0.5)
    result = gradient_attack(model, x, y, ThreatModel(norm, eps), config, generator=torch.Generator().manual_seed(0))
    assert_inside(result.x_adv, x, eps, norm)


def test_early_stop_reports_success_and_compacts_the_batch():
    model = tiny_net(seed=4)
    x = torch.rand(16, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    recorder = Recorder(model)
    config = LoopConfig(steps=6, step_size=0.02, random_start=False)
    result = gradient_attack(recorder, x, y, ThreatModel("inf", 0.1), config, early_stop=True)
    with torch.no_grad():
        fooled = model(result.x_adv).argmax(1) != y
    assert torch.equal(result.success, fooled)
    assert 0 < int(fooled.sum()) < 16
    assert recorder.sizes[0] == 16
    assert recorder.sizes == sorted(recorder.sizes, reverse=True)  # the batch only shrinks
    assert min(recorder.sizes) < 16


def test_without_early_stop_every_sample_gets_every_step():
    model = tiny_net(seed=4)
    x = torch.rand(8, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(8, dtype=torch.long)
    recorder = Recorder(model)
    result = gradient_attack(recorder, x, y, ThreatModel("inf", 0.3), LoopConfig(steps=5, step_size=0.1))
    assert recorder.sizes == [8] * 5  # no extra forward pass and no compaction
    assert result.success is None


def test_restarts_with_early_stop_only_rerun_unbroken_samples(monkeypatch):
    import advgrad.attacks.iterative as loop

    calls: list[tuple[int, Tensor]] = []
    original = loop._one_run

    def recording(model, x, *args, **kwargs):
        out = original(model, x, *args, **kwargs)
        calls.append((x.shape[0], out[1].clone()))
        return out

    monkeypatch.setattr(loop, "_one_run", recording)
    model = tiny_net(seed=4)
    x = torch.rand(16, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    config = LoopConfig(steps=2, step_size=0.02, restarts=4)
    result = gradient_attack(
        model, x, y, ThreatModel("inf", 0.06), config, early_stop=True, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        assert torch.equal(result.success, model(result.x_adv).argmax(1) != y)
    assert len(calls) >= 2 and calls[0][0] == 16
    unbroken = 16 - int(calls[0][1].sum())
    for size, success in calls[1:]:
        assert size == unbroken  # exactly the samples no earlier start broke
        unbroken -= int(success.sum())
    assert unbroken == 16 - int(result.success.sum())
    assert 0 < int(result.success.sum()) < 16


def test_loop_restores_model_state_and_leaves_x_alone():
    model = tiny_net(seed=0)
    model.train()
    x = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    x0 = x.clone()
    gradient_attack(
        model,
        x,
        torch.tensor([0, 1, 2]),
        ThreatModel("inf", 0.1),
        LoopConfig(steps=2, step_size=0.05),
        generator=torch.Generator().manual_seed(0),
    )
    assert model.training and all(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(x, x0)


def test_fgsm_random_start_draws_from_the_generator():
    model = tiny_net(seed=2)
    x = torch.rand(4, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0])
    params = FGSMParams(random_start=True, step_size=0.05)
    a = fgsm(model, x, y, threat=ThreatModel("inf", 0.1), params=params, generator=torch.Generator().manual_seed(1))
    b = fgsm(model, x, y, threat=ThreatModel("inf", 0.1), params=params, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(a, b)
    assert_inside(a, x, 0.1, "inf")


def test_each_loop_attack_configures_the_shared_loop_from_its_own_fields():
    from advgrad.attacks.bim import BIMParams
    from advgrad.attacks.fgsm import FGSMParams
    from advgrad.attacks.iterative import LoopConfig
    from advgrad.attacks.mifgsm import MIFGSMParams
    from advgrad.attacks.pgd import PGDParams

    assert FGSMParams(step_size=0.1, random_start=True, loss="dlr", eot=3).loop_config() == LoopConfig(
        steps=1, step_size=0.1, random_start=True, loss="dlr", eot=3
    )
    assert BIMParams(steps=4, step_size=0.2).loop_config() == LoopConfig(steps=4, step_size=0.2, random_start=False)
    mi = MIFGSMParams(steps=5, step_size=0.3, momentum=0.7).loop_config()
    assert (mi.steps, mi.momentum, mi.random_start, mi.restarts) == (5, 0.7, False, 1)
    pgd = PGDParams(steps=6, step_size=0.4, restarts=3, random_start=False, loss="margin").loop_config()
    assert pgd == LoopConfig(steps=6, step_size=0.4, random_start=False, restarts=3, loss="margin")
