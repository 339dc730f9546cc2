"""advgrad/attacks/pgd.py: closed forms on linear models, step size defaults, restarts, seeds.

On a 2-class linear model ∇ₓCE = p_other·(w_other − w_y) always points along u = w_other − w_y,
so PGD without a random start walks along u until the projection stops it: the answer is
x + ε·u/‖u‖₂ for L2 and x + ε·sign(u) for L∞ (when the box does not bind).
"""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_net, two_class_linear

from advgrad.attacks import PGDParams, get_attack, pgd, run_attack
from advgrad.core.errors import UsageError
from advgrad.core.losses import cross_entropy
from advgrad.core.threat import ThreatModel

SPEC = get_attack("pgd")


def _unit(u: torch.Tensor) -> torch.Tensor:
    return u / u.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("steps", [1, 7, 20])
def test_l2_pgd_moves_exactly_eps_along_the_normalised_gradient(seed, steps):
    model, x, y, u = two_class_linear(seed)
    eps = 0.3  # |ε·u_k/‖u‖| ≤ 0.3 < 0.35: the box never binds
    params = PGDParams(steps=steps, random_start=False)
    x_adv = run_attack(SPEC, model, x, y, threat=ThreatModel("2", eps), params=params)
    assert torch.allclose(x_adv - x, eps * _unit(u), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_linf_pgd_reaches_the_corner_of_the_ball(seed):
    model, x, y, u = two_class_linear(seed)
    x_adv = run_attack(
        SPEC, model, x, y, threat=ThreatModel("inf", 0.1), params=PGDParams(steps=10, random_start=False)
    )
    assert torch.allclose(x_adv - x, 0.1 * u.sign(), rtol=0, atol=1e-12)


def test_targeted_pgd_moves_the_opposite_way():
    """Targeted at the true class, PGD descends CE(·, y): it moves along −u."""
    model, x, y, u = two_class_linear(4)
    params = PGDParams(steps=10, random_start=False)
    x_adv = run_attack(SPEC, model, x, y, threat=ThreatModel("2", 0.3), params=params, target=y)
    assert torch.allclose(x_adv - x, -0.3 * _unit(u), rtol=0, atol=1e-12)
    x_adv = run_attack(SPEC, model, x, y, threat=ThreatModel("inf", 0.1), params=params, target=y)
    assert torch.allclose(x_adv - x, -0.1 * u.sign(), rtol=0, atol=1e-12)


def test_targeted_at_the_other_class_moves_towards_it():
    model, x, y, u = two_class_linear(5)
    params = PGDParams(steps=10, random_start=False)
    x_adv = run_attack(SPEC, model, x, y, threat=ThreatModel("2", 0.3), params=params, target=1 - y)
    assert torch.allclose(x_adv - x, 0.3 * _unit(u), rtol=0, atol=1e-12)


def test_too_small_a_step_does_not_reach_the_boundary():
    """steps·α < ε: PGD stops after exactly steps·α along u (the projection never acts)."""
    model, x, y, u = two_class_linear(6)
    params = PGDParams(steps=4, step_size=0.05, random_start=False)
    x_adv = run_attack(SPEC, model, x, y, threat=ThreatModel("2", 0.3), params=params)
    assert torch.allclose(x_adv - x, 0.2 * _unit(u), rtol=0, atol=1e-12)


def test_random_start_changes_the_start_but_not_the_closed_form_endpoint_in_linf():
    """From any start in the L∞ ball, enough sign steps of size α ≥ ε/steps·2 reach x + ε·sign(u)."""
    model, x, y, u = two_class_linear(7)
    params = PGDParams(steps=10, step_size=0.05, random_start=True)
    gen = torch.Generator().manual_seed(3)
    x_adv = run_attack(SPEC, model, x, y, threat=ThreatModel("inf", 0.1), params=params, generator=gen)
    assert torch.allclose(x_adv - x, 0.1 * u.sign(), rtol=0, atol=1e-12)


def test_default_step_size_is_two_and_a_half_eps_over_steps():
    resolved = PGDParams(steps=10).resolve(ThreatModel("inf", 0.2))
    assert resolved.step_size == pytest.approx(0.05)
    assert PGDParams(steps=10, step_size=0.01).resolve(ThreatModel("inf", 0.2)).step_size == 0.01
    assert PGDParams().steps == 20 and PGDParams().random_start and PGDParams().restarts == 1


@pytest.mark.parametrize("options", [{"steps": 0}, {"restarts": 0}, {"step_size": -1.0}, {"steps": -3}])
def test_bad_parameters_are_rejected(options):
    with pytest.raises(UsageError):
        SPEC.make_params(**options)


def test_pgd_validates_params_given_directly():
    model, x, y, _ = two_class_linear(0)
    with pytest.raises(UsageError):
        pgd(model, x, y, threat=ThreatModel("inf", 0.1), params=PGDParams(steps=0))


def _objective_and_success(model, x_adv, y):
    with torch.no_grad():
        logits = model(x_adv)
    return cross_entropy(logits, y), logits.argmax(1) != y


def test_restarts_keep_the_best_result_per_sample():
    """The first restart draws exactly what a single run with the same generator draws; later
    restarts may only replace it by something better: per sample, success never lost and, when
    neither succeeds, the loss never lower."""
    model = tiny_net(seed=3)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 2, 4, 4, generator=gen)
    with torch.no_grad():
        y = model(x).argmax(1)  # all correct to start
    threat = ThreatModel("inf", 0.05)
    one = run_attack(
        SPEC, model, x, y, threat=threat, params=PGDParams(steps=3), generator=torch.Generator().manual_seed(7)
    )
    many = run_attack(
        SPEC,
        model,
        x,
        y,
        threat=threat,
        params=PGDParams(steps=3, restarts=5),
        generator=torch.Generator().manual_seed(7),
    )
    loss_one, fooled_one = _objective_and_success(model, one, y)
    loss_many, fooled_many = _objective_and_success(model, many, y)
    assert bool((fooled_many | ~fooled_one).all())
    both_failed = ~fooled_one & ~fooled_many
    assert bool((loss_many[both_failed] >= loss_one[both_failed] - 1e-6).all())
    assert not torch.equal(one, many)  # the later restarts did find something better somewhere


def test_early_stop_never_loses_a_sample_the_full_budget_fools():
    """With the same generator, a sample early stop does not stop follows exactly the
    full-budget trajectory; one it stops is fooled by the returned iterate. So every sample the
    full budget fools is also fooled with early stop."""
    model = tiny_net(seed=4, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(24, 2, 4, 4, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    threat = ThreatModel("inf", 0.05)
    params = PGDParams(steps=8)
    full = run_attack(SPEC, model, x, y, threat=threat, params=params, generator=torch.Generator().manual_seed(2))
    early = run_attack(
        SPEC, model, x, y, threat=threat, params=params, generator=torch.Generator().manual_seed(2), early_stop=True
    )
    _, fooled_full = _objective_and_success(model, full, y)
    _, fooled_early = _objective_and_success(model, early, y)
    assert 0 < int(fooled_full.sum()) < len(y)  # the case is not trivial
    assert bool((fooled_early | ~fooled_full).all())
    assert torch.equal(early[~fooled_early], full[~fooled_early])


def test_same_seed_same_result_and_different_seed_different_start():
    model = tiny_net(seed=1)
    x = torch.rand(4, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0])
    threat = ThreatModel("2", 0.5)
    params = PGDParams(steps=2)

    def run(seed):
        return run_attack(
            SPEC, model, x, y, threat=threat, params=params, generator=torch.Generator().manual_seed(seed)
        )

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_spec_describes_the_attack():
    assert SPEC.name == "pgd" and SPEC.kind == "gradient" and set(SPEC.norms) == {"inf", "2", "1"}
    assert "Madry" in SPEC.reference
    assert SPEC.ignored_options(steps=5, restarts=2, step_size=None, random_start=True, loss="ce") == []
