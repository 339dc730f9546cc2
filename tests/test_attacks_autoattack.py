"""The `autoattack` preset (advgrad/attacks/autoattack.py): same robust accuracy as the reference
implementation (pyautoattack), its stages and parameters, and `advgrad eval --attack autoattack`."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import advgrad
from advgrad.attacks import AutoAttackParams, get_attack, run_attack
from advgrad.attacks.autoattack import VERSIONS
from advgrad.cli import app
from advgrad.core.errors import UsageError
from advgrad.core.threat import ThreatModel


def _small_mlp() -> nn.Module:
    """A 64-32-10 MLP trained for a second on the embedded digits' training split: a model whose
    passes are cheap, so both implementations run their full standard budgets in a test."""
    torch.manual_seed(0)
    x, y = advgrad.load_data(split="train")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    return model.eval()


@pytest.mark.slow
def test_same_robust_accuracy_as_pyautoattack() -> None:
    """AutoAttack standard, L∞, ε = 0.1, 100 test digits: advgrad's robust accuracy is within 1% of
    the samples (one sample) of pyautoattack's on the same model and data."""
    reference = pytest.importorskip("pyautoattack", reason="pyautoattack (the `test` extra) is not installed")
    model = _small_mlp()
    x, y = advgrad.load_data(limit=100)
    eps = 0.1
    x_adv = run_attack(
        get_attack("autoattack"),
        model,
        x,
        y,
        threat=ThreatModel("inf", eps),
        generator=torch.Generator().manual_seed(0),
    )
    runner = reference.AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=0)
    x_ref, _ = runner.run_standard_evaluation(x, y, batch_size=100)
    with torch.no_grad():
        ours = int((model(x_adv).argmax(dim=1) == y).sum())
        theirs = int((model(x_ref).argmax(dim=1) == y).sum())
        clean = int((model(x).argmax(dim=1) == y).sum())
    assert 0 < theirs < clean  # the comparison means something: some fooled, some robust
    assert abs(ours - theirs) <= 1


def test_standard_version_is_autoattacks_composition() -> None:
    version = VERSIONS["standard"]
    assert [s.name for s in version.stages] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    params = AutoAttackParams().resolve(ThreatModel("inf", 0.03))
    apgd_ce, apgd_t, fab_t, square = (s.params(params, 10) for s in version.stages)
    assert (apgd_ce.steps, apgd_ce.restarts, apgd_ce.loss, apgd_ce.momentum) == (100, 1, "ce", 0.75)
    assert (apgd_t.steps, apgd_t.restarts, apgd_t.loss, apgd_t.target_classes) == (100, 1, "dlr", 9)
    assert (fab_t.steps, fab_t.restarts, fab_t.target_classes) == (100, 1, 9)
    assert (fab_t.alpha_max, fab_t.eta, fab_t.beta) == (0.1, 1.05, 0.9)
    assert (square.queries, square.p_init, square.rescale_schedule) == (5000, 0.8, False)


def test_params_name_the_version_and_the_paper() -> None:
    described = AutoAttackParams().resolve(ThreatModel("2", 0.5)).to_dict()
    assert described["version"] == "standard" and described["as_published"] is True
    assert "Croce & Hein, ICML 2020" in described["reference"]
    assert described["stages"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert AutoAttackParams(steps=10).to_dict()["as_published"] is False
    with pytest.raises(UsageError, match="version"):
        AutoAttackParams(version="fast").validate()
    assert AutoAttackParams().passes_per_sample(10) == 100 + 900 + 1800 + 5000


def test_fab_stage_counts_only_examples_within_eps() -> None:
    """At an ε below every sample's minimal perturbation nothing is fooled: FAB-T's examples beyond
    ε are dropped, not projected (a projection could fool only by luck, which AutoAttack never counts)."""
    model = nn.Linear(4, 2).double()
    x = torch.full((6, 4), 0.5, dtype=torch.float64) + 0.1 * torch.arange(6, dtype=torch.float64)[:, None] / 6
    with torch.no_grad():
        y = model(x).argmax(dim=1)
        w = model.weight[1] - model.weight[0]
        distance = (x @ w + model.bias[1] - model.bias[0]).abs() / w.abs().sum()
    threat = ThreatModel("inf", float(distance.min()) * 0.9)
    x_adv = run_attack(
        get_attack("autoattack"), model, x, y, threat=threat, params=AutoAttackParams(steps=10, queries=50)
    )
    with torch.no_grad():
        assert bool((model(x_adv).argmax(dim=1) == y).all())


def test_cli_eval_autoattack_end_to_end() -> None:
    result = CliRunner().invoke(
        app,
        ["eval", "--attack", "autoattack", "--eps", "0,0.1", "--steps", "5", "--target-classes", "2"]
        + ["--queries", "30", "--limit", "16", "--json", "-"],
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    curve = report["attacks"]["autoattack"]
    assert curve["kind"] == "ensemble"
    assert curve["params"]["version"] == "standard" and curve["params"]["as_published"] is False
    accuracy = [p["accuracy"] for p in curve["points"]]
    assert accuracy[1] < accuracy[0]
