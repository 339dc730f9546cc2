"""Cost before it is paid (advgrad/evaluation/cost.py and each attack's ``cost_formula``)."""

from __future__ import annotations

import json

import pytest
from helpers import invoke

from advgrad.attacks import (
    APGDParams,
    APGDTParams,
    CWParams,
    DeepFoolParams,
    FGSMParams,
    PGDParams,
    SquareParams,
    StrongParams,
    get_attack,
    list_attacks,
)
from advgrad.evaluation.cost import NOTICE_PASSES, estimate_cost
from advgrad.evaluation.eval_config import EvalAttack


@pytest.mark.parametrize(
    "params, classes, passes",
    [
        (PGDParams(steps=20, restarts=2), 10, 40),
        (PGDParams(), 10, 20),
        (FGSMParams(), 10, 1),
        (SquareParams(queries=300), 10, 300),
        (APGDParams(steps=50, restarts=3), 10, 150),
        (APGDTParams(steps=10, restarts=2, target_classes=4), 10, 80),
        (CWParams(steps=100, binary_steps=5), 10, 500),
        (DeepFoolParams(steps=50), 100, 51 * 10 + 13),  # ten candidate classes at most
        (DeepFoolParams(steps=50), 3, 51 * 3 + 13),
        (
            StrongParams(steps=10, restarts=1, target_classes=3, survivor_queries=50, queries=100),
            10,
            10 + 10 + 30 + 50 + 100,
        ),
    ],
)
def test_passes_per_sample(params, classes, passes):
    assert params.passes_per_sample(classes) == passes


def test_every_attack_has_a_cost_that_evaluates():
    for spec in list_attacks():
        cost = spec.params_type.describe_cost()
        assert cost["default"] >= 1 and cost["formula"]


def test_sweep_estimate_counts_bounded_attacks_per_eps_and_minimal_once():
    pgd = EvalAttack(get_attack("pgd"), PGDParams(steps=10))
    deepfool = EvalAttack(get_attack("deepfool"), DeepFoolParams(steps=5))
    estimate = estimate_cost([pgd, deepfool], [0, 0.1, 0.2, 0.3], samples=100, classes=10)
    assert [a.passes for a in estimate.attacks] == [10 * 3 * 100, (6 * 10 + 13) * 100]
    assert estimate.passes == 3000 + 7300
    assert estimate_cost([pgd], [0], samples=100, classes=10).passes == 0


def test_attacks_listing_shows_cost_in_table_and_json():
    result = invoke(["attacks", "pgd", "--json", "-"])
    assert result.exit_code == 0, result.stderr
    cost = json.loads(result.stdout)["attacks"][0]["cost"]
    assert cost["formula"] == "steps×restarts×eot" and cost["default"] == 20
    table = invoke(["attacks", "square"])
    assert "cost per sample: queries model passes (5,000 with the defaults)" in " ".join(table.stdout.split())


def _cost_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("cost:")]


def test_eval_states_the_cost_of_a_big_run_only():
    small = invoke(["eval", "--attack", "fgsm", "--eps", "0,0.1", "--limit", "20", "--json", "-"])
    assert small.exit_code == 0, small.stderr
    assert _cost_lines(small) == []
    # 300 samples × 2 ε × 2000 queries = 1.2M passes at most: announced (the run itself is far shorter:
    # early stop drops each sample Square fools, and at these large ε that is every one within a few queries)
    big = invoke(
        ["eval", "--attack", "square", "--eps", "0,0.5,1", "--queries", "2000", "--limit", "300", "--json", "-"]
    )
    assert big.exit_code == 0, big.stderr
    lines = _cost_lines(big)
    assert (
        len(lines) == 1
        and "up to 1,200,000 model passes" in lines[0]
        and "square 2,000 × 300 samples × 2 ε" in lines[0]
    )
    assert 300 * 2 * 2000 > NOTICE_PASSES
    assert "about " in lines[0] and "measured by running the sweep on the first 32 samples" in lines[0]


def test_the_pilot_scales_its_calls_to_the_runs_batches_and_budget(monkeypatch):
    """seconds ≈ Σ_batches F·(Σ_calls t(r·B/k) + o): a fake sweep on a fake clock makes two gradient calls on
    the 32 pilot rows and one forward-only call on 10, spending 1 s; PGD-40 runs 8× shorter in the pilot
    (F = 8); t(m) = a + b·m as given; the run has batches of 256 and 194."""
    import torch

    import advgrad.evaluation.cost as cost
    import advgrad.evaluation.sweep as sweep
    from advgrad.evaluation.eval_config import EvalConfig

    clock, seen = [100.0], {}

    def fake_evaluate(model, batches, attacks, config, *, device):
        ((x, _),) = batches
        seen.update(steps=attacks[0].params.steps, examples=config.examples, certify=config.certify)
        with torch.enable_grad():
            model(x), model(x)
        with torch.no_grad():
            model(x[:10])
        clock[0] += 1.0

    times = cost.CallTimes(grad=(0.01, 0.001), forward=(0.002, 0.0005))
    monkeypatch.setattr(cost.CallTimes, "measure", classmethod(lambda cls, *a, **k: times))
    monkeypatch.setattr(cost.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(sweep, "evaluate", fake_evaluate)
    x, y = torch.zeros(32, 4), torch.zeros(32, dtype=torch.long)
    pgd = EvalAttack(get_attack("pgd"), PGDParams(steps=40))
    config = EvalConfig(eps=[0.0, 0.1], certify="crown")
    seconds = cost.pilot_seconds(torch.nn.Identity(), x, y, [pgd], config, 450, 256, torch.device("cpu"))
    beside = 1.0 - (2 * (0.01 + 0.001 * 32) + (0.002 + 0.0005 * 10))

    def batch(size: int) -> float:
        return 2 * (0.01 + 0.001 * size) + (0.002 + 0.0005 * 10 * size / 32) + beside

    assert seconds == pytest.approx(8 * (batch(256) + batch(194)))
    assert seen == {"steps": 5, "examples": 0, "certify": None}  # 40 / 8 steps; nothing kept; no bounds


def test_the_pilots_budgets_are_eight_times_shorter_also_where_the_default_is_the_versions():
    from advgrad.attacks import AutoAttackParams
    from advgrad.core.threat import ThreatModel
    from advgrad.evaluation.cost import PILOT_SHORTER, shortened

    threat = ThreatModel("inf", 0.1)
    assert PILOT_SHORTER == 8
    assert shortened(PGDParams(steps=40, restarts=2), 8, threat) == PGDParams(steps=5, restarts=2)
    assert shortened(SquareParams(queries=5000), 8, threat).queries == 625
    auto = shortened(AutoAttackParams(), 8, threat)
    assert (auto.steps, auto.queries, auto.target_classes) == (13, 625, None)  # 100 / 8 rounded up
    assert shortened(FGSMParams(), 8, threat) == FGSMParams()
