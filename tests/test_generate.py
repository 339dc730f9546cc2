"""advgrad/evaluation/generate.py: adversarial examples for every sample, and their summary."""

from __future__ import annotations

import pytest
import torch
from helpers import Recorder, assert_inside, independent_norm, tiny_net

from advgrad.attacks import FGSMParams, PGDParams, get_attack
from advgrad.core.errors import UsageError
from advgrad.core.threat import ThreatModel
from advgrad.evaluation.generate import generate


def _batches(x, y, size):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, x.shape[0], size)]


def _data(n=20, seed=0):
    model = tiny_net(seed=4)
    x = torch.rand(n, 2, 4, 4, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:3] = (y[:3] + 1) % 3  # three samples misclassified before the attack
    return model, x, y


@pytest.mark.parametrize("norm, eps", [("inf", 0.1), ("2", 0.4)])
def test_generate_against_independent_predictions(norm, eps):
    model, x, y = _data()
    threat = ThreatModel(norm, eps)
    result, summary = generate(model, _batches(x, y, 7), get_attack("pgd"), PGDParams(steps=4), threat, seed=1)
    assert torch.equal(result.x, x) and torch.equal(result.y, y)
    assert result.x_adv.shape == x.shape and result.x_adv.dtype == x.dtype
    assert_inside(result.x_adv, x, eps, norm)
    with torch.no_grad():
        pred_clean, pred_adv = model(x).argmax(1), model(result.x_adv).argmax(1)
    assert torch.equal(result.pred_clean, pred_clean) and torch.equal(result.pred_adv, pred_adv)

    correct = pred_clean == y
    fooled = correct & (pred_adv != y)
    norms = independent_norm(result.x_adv - x, norm)
    assert summary.n_samples == 20 and summary.attacked == int(correct.sum()) == 17
    assert summary.successes == int(fooled.sum())
    assert summary.success_rate == pytest.approx(int(fooled.sum()) / 17)
    assert summary.clean_accuracy == pytest.approx(17 / 20)
    assert summary.accuracy == pytest.approx(float((pred_adv == y).float().mean()))
    assert summary.mean_norm == pytest.approx(float(norms.mean()), rel=1e-5)
    assert summary.max_norm == pytest.approx(float(norms.max()), rel=1e-5)
    assert summary.attack == "pgd" and summary.norm == norm and summary.eps == eps and summary.target is None
    assert 0 < summary.successes < 17


def test_every_sample_is_attacked_even_misclassified_ones():
    model, x, y = _data()
    result, _ = generate(model, _batches(x, y, 8), get_attack("fgsm"), FGSMParams(), ThreatModel("inf", 0.05))
    moved = (result.x_adv - x).flatten(1).abs().amax(1) > 0
    assert bool(moved.all())


def test_full_step_budget_by_default():
    """Without early stop: one clean pass, `steps` gradient passes and one pass on x_adv per sample."""
    model, x, y = _data()
    full, early = Recorder(model), Recorder(model)
    generate(full, _batches(x, y, 8), get_attack("pgd"), PGDParams(steps=5), ThreatModel("inf", 0.2))
    assert sum(full.sizes) == 20 * (1 + 5 + 1)
    generate(early, _batches(x, y, 8), get_attack("pgd"), PGDParams(steps=5), ThreatModel("inf", 0.2), early_stop=True)
    assert sum(early.sizes) < 20 * (1 + 5 + 1)


def test_targeted_generation():
    model, x, y = _data()
    threat = ThreatModel("inf", 0.3)
    result, summary = generate(model, _batches(x, y, 8), get_attack("pgd"), PGDParams(steps=10), threat, target=2)
    assert torch.equal(result.target, torch.full_like(y, 2))
    own = y == 2
    assert torch.equal(result.x_adv[own], x[own])  # nothing to do for samples already labelled 2
    attacked = (result.pred_clean == y) & ~own
    reached = attacked & (result.pred_adv == 2)
    assert summary.attacked == int(attacked.sum())
    assert summary.successes == int(reached.sum()) > 0
    assert summary.target == "2"
    assert "target" in result.to_dict()


def test_random_targets_are_seeded_and_never_the_label():
    model, x, y = _data()
    threat = ThreatModel("inf", 0.1)
    a, _ = generate(model, _batches(x, y, 8), get_attack("fgsm"), FGSMParams(), threat, target="random", seed=3)
    b, _ = generate(model, _batches(x, y, 8), get_attack("fgsm"), FGSMParams(), threat, target="random", seed=3)
    assert torch.equal(a.target, b.target) and torch.equal(a.x_adv, b.x_adv)
    assert bool((a.target != y).all())


def test_same_seed_same_examples():
    model, x, y = _data()
    threat = ThreatModel("2", 0.5)

    def run(seed):
        return generate(model, _batches(x, y, 8), get_attack("pgd"), PGDParams(steps=2), threat, seed=seed)[0].x_adv

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_generate_restores_the_model():
    model, x, y = _data()
    model.train()
    rng = torch.get_rng_state()
    generate(model, _batches(x, y, 8), get_attack("pgd"), PGDParams(steps=2), ThreatModel("inf", 0.1))
    assert model.training and all(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_no_samples_is_an_error():
    model, _, _ = _data()
    with pytest.raises(UsageError):
        generate(model, [], get_attack("fgsm"), FGSMParams(), ThreatModel("inf", 0.1))
