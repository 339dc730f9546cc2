"""The attacks on advgrad's embedded default (digits CNN, test split): relations a correct
implementation must show on a real model."""

from __future__ import annotations

import pytest

from advgrad.attacks import get_attack, list_attacks
from advgrad.core.threat import ThreatModel
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.generate import generate
from advgrad.evaluation.sweep import evaluate
from advgrad.io.inputs import InputOptions, open_inputs


def _inputs(limit: int):
    return open_inputs(InputOptions(limit=limit, batch_size=256))


@pytest.mark.parametrize("norm,eps", [("inf", [0.05, 0.075, 0.1, 0.125]), ("2", [0.25, 0.5, 0.75])])
@pytest.mark.parametrize("steps", [10, pytest.param(20, marks=pytest.mark.slow)])
def test_apgd_is_at_least_as_strong_as_pgd_with_the_same_budget(norm, eps, steps) -> None:
    inputs = _inputs(450)  # the whole test split
    attacks = [EvalAttack(get_attack(name), get_attack(name).make_params(steps=steps)) for name in ("pgd", "apgd-ce")]
    report = evaluate(inputs.model.module, inputs.batches(), attacks, EvalConfig(eps=eps, norm=norm, seed=0))
    pgd, apgd = (report.attacks[name].points for name in ("pgd", "apgd-ce"))
    for p, a in zip(pgd, apgd, strict=True):
        assert a.robust <= p.robust, f"ε={p.eps}: APGD leaves {a.robust} robust, PGD {p.robust}"
    assert sum(a.robust for a in apgd) < sum(p.robust for p in pgd)  # and strictly stronger overall


# FGSM is one step: it is not expected to reach a chosen class.
TARGETED = [s for s in list_attacks() if s.name != "fgsm"]


# CW's default budget (binary search × steps) takes seconds per target kind: with the slow tests
@pytest.mark.parametrize(
    "spec",
    [pytest.param(s, marks=pytest.mark.slow) if s.name == "cw" else s for s in TARGETED],
    ids=[s.name for s in TARGETED],
)
@pytest.mark.parametrize("target", ["random", "least-likely", "3"])
def test_targeted_attacks_reach_the_requested_class_at_large_eps(spec, target) -> None:
    inputs = _inputs(24)
    norm = "inf" if "inf" in spec.norms else "2"
    threat = ThreatModel(norm, 0.5 if norm == "inf" else 4.0)
    # default budgets, Square shortened; EOT averages identical gradients on this deterministic model: one pass
    params = spec.make_params(queries=1000, eot=1)
    goal = int(target) if target.isdigit() else target
    result, summary = generate(inputs.model.module, inputs.batches(), spec, params, threat, target=goal, seed=0)
    assert summary.target == target
    attacked = (result.pred_clean == result.y) & (result.target != result.y)
    reached = (result.pred_adv == result.target)[attacked].float().mean()
    assert reached >= 0.95, f"{spec.name} reached the target for {float(reached):.0%}"
    assert bool(threat.contains(result.x_adv, result.x).all())


@pytest.mark.slow
def test_strong_is_at_most_every_single_attack() -> None:
    """The cascade's accuracy at each ε is ≤ that of each attack alone (at default budgets but for
    FAB's and Square's; other cascades, such as autoattack with more stages, may be stronger)."""
    inputs = _inputs(20)
    eps = [0.05, 0.1, 0.15]
    specs = [s for s in list_attacks() if "inf" in s.norms and (s.kind != "ensemble" or s.name == "strong")]
    # to keep the test short: FAB at 20 steps (a weaker FAB is still an attack strong must match), and
    # Square with 1,000 queries both alone and as strong's last stage
    short = {"fab": {"steps": 20}, "fab-t": {"steps": 20}, "square": {"queries": 1000}, "strong": {"queries": 1000}}
    attacks = [EvalAttack(s, s.make_params(**short.get(s.name, {}))) for s in specs]
    report = evaluate(inputs.model.module, inputs.batches(), attacks, EvalConfig(eps=eps, norm="inf", seed=0))
    strong = report.attacks["strong"].points
    for name, curve in report.attacks.items():
        for s, p in zip(strong, curve.points, strict=True):
            assert s.accuracy <= p.accuracy, f"ε={s.eps}: strong {s.accuracy} > {name} {p.accuracy}"
