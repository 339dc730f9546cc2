"""Attack parameters are resolved and validated in one place (``prepare_params``): by every attack
function called directly, once through ``run_attack``; the PGD family maps its parameters to the
shared loop's configuration and nothing else."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import linear_model

from advgrad.attacks import (
    BIMParams,
    FGSMParams,
    LoopConfig,
    MIFGSMParams,
    PGDParams,
    get_attack,
    gradient_attack,
    list_attacks,
    pgd,
    run_attack,
)
from advgrad.attacks.base import AttackParams, prepare_params
from advgrad.core.errors import UsageError
from advgrad.core.threat import ThreatModel

CLASSES = 5


def _batch():
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(CLASSES, 8, generator=gen)
    x = torch.rand(6, 1, 2, 4, generator=gen)
    return linear_model(weight), x, torch.arange(6) % CLASSES


def _negative(params_type: type[AttackParams]) -> AttackParams:
    """Default parameters with their first numeric field set to −1 (always invalid)."""
    for f in dataclasses.fields(params_type):
        if "int" in str(f.type) or "float" in str(f.type):
            return params_type(**{f.name: -1})
    raise AssertionError(f"{params_type.__name__} has no numeric parameter")


@pytest.mark.parametrize("spec", list_attacks(), ids=lambda s: s.name)
def test_every_attack_function_validates_its_parameters_when_called_directly(spec):
    model, x, y = _batch()
    with pytest.raises(UsageError, match="must be"):
        spec.function(model, x, y, threat=ThreatModel(spec.norms[0], 0.1), params=_negative(spec.params_type))


@pytest.mark.parametrize("name", ["fgsm", "pgd", "square", "deepfool"])
def test_run_attack_resolves_and_validates_once(name, monkeypatch):
    spec = get_attack(name)
    calls = {"resolve": 0, "validate": 0}
    resolve, validate = spec.params_type.resolve, spec.params_type.validate

    def counting_resolve(self, threat):
        calls["resolve"] += 1
        return resolve(self, threat)

    def counting_validate(self):
        calls["validate"] += 1
        validate(self)

    monkeypatch.setattr(spec.params_type, "resolve", counting_resolve)
    monkeypatch.setattr(spec.params_type, "validate", counting_validate)
    model, x, y = _batch()
    run_attack(spec, model, x, y, threat=ThreatModel(spec.norms[0], 0.1), generator=torch.Generator().manual_seed(0))
    assert calls == {"resolve": 1, "validate": 1}


def test_prepared_parameters_changed_afterwards_are_prepared_again():
    threat = ThreatModel("inf", 0.1)
    params = prepare_params(PGDParams(steps=4), PGDParams, threat)
    assert params.step_size == pytest.approx(2.5 * 0.1 / 4)
    assert prepare_params(params, PGDParams, threat) is params
    params.steps = 0
    with pytest.raises(UsageError, match="`steps` must be ≥ 1"):
        prepare_params(params, PGDParams, threat)
    assert prepare_params(None, PGDParams, threat) == PGDParams(step_size=2.5 * 0.1 / 20)


def test_the_pgd_family_declares_its_loop_configuration():
    threat = ThreatModel("inf", 0.2)
    assert FGSMParams().resolve(threat).loop_config() == LoopConfig(steps=1, step_size=0.2, random_start=False)
    assert BIMParams(steps=5, loss="margin").resolve(threat).loop_config() == LoopConfig(
        steps=5, step_size=pytest.approx(0.05), random_start=False, loss="margin"
    )
    assert MIFGSMParams(momentum=0.5).resolve(threat).loop_config() == LoopConfig(
        steps=10, step_size=pytest.approx(0.02), random_start=False, momentum=0.5
    )
    assert PGDParams(restarts=3).resolve(threat).loop_config() == LoopConfig(
        steps=20, step_size=pytest.approx(0.025), random_start=True, restarts=3
    )


def test_a_direct_call_with_no_parameters_runs_the_loop_with_the_defaults():
    model, x, y = _batch()
    threat = ThreatModel("2", 0.5)
    got = pgd(model, x, y, threat=threat, generator=torch.Generator().manual_seed(3))
    config = PGDParams().resolve(threat).loop_config()
    expected = gradient_attack(model, x, y, threat, config, generator=torch.Generator().manual_seed(3)).x_adv
    assert torch.equal(got, expected)
