"""The binarization test (advgrad/evaluation/binarization.py; Zimmermann et al., NeurIPS 2022): each
binarized model holds an adversarial example inside the ball; PGD and APGD find it on the default and
the PGD-trained model; a crippled attack and a masked model fail; the check and `--check` read it."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import assert_bad_input, invoke
from report_helpers import Rounding, run_default

from advgrad.attacks import get_attack
from advgrad.attacks.pgd import PGDParams
from advgrad.core.seeding import generator_for
from advgrad.core.threat import ThreatModel
from advgrad.evaluation.binarization import SAMPLES, attack_binarized, binarize, wanted
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.io.data.load_data import load_default
from advgrad.io.model.load_model import load_default_model, load_model


def _samples(model, n: int = SAMPLES):
    data = load_default()
    x, y = data.x[:64], data.y[:64]
    with torch.no_grad():
        keep = model(x).argmax(dim=1) == y
    return x[keep][:n], y[keep][:n]


def _models():
    return {"default": load_default_model(), "default-robust": load_model("default-robust").module.eval()}


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_every_feasible_binarized_model_holds_an_adversarial_example_in_the_ball(norm):
    model = load_default_model()
    x, y = _samples(model, 8)
    eps = {"inf": 0.1, "2": 1.0, "1": 4.0}[norm]
    threat = ThreatModel(norm, eps)
    made = [binarize(model, x[i : i + 1], int(y[i]), 10, threat, generator_for(x.device, 0, "t", i)) for i in range(8)]
    assert sum(m is not None for m in made) >= 4
    for i, item in enumerate(made):
        if item is None:
            continue
        binarized, boundary = item
        assert bool(threat.contains(boundary, x[i : i + 1]).all()) and 0 <= float(boundary.min()) <= 1
        with torch.no_grad():
            logits = binarized(torch.cat([x[i : i + 1], boundary]))
        assert logits.argmax(dim=1).tolist() == [int(y[i]), binarized.other]
        assert logits[0, binarized.other].item() == pytest.approx(-1.0, abs=1e-4)  # h(x) = −1: no saturation


@pytest.mark.parametrize("model", ["default", "default-robust"])
@pytest.mark.parametrize("name", ["pgd", "apgd-ce"])
def test_pgd_and_apgd_pass_on_the_default_and_robust_models(model, name):
    net = _models()[model]
    x, y = _samples(net)
    spec = get_attack(name)
    result = attack_binarized(net, EvalAttack(spec, spec.make_params()), 0, x, y, 0.1, EvalConfig(eps=[0, 0.1]))
    assert result.samples >= 15 and result.found == result.samples


def test_a_crippled_attack_and_a_masked_model_fail():
    net = load_default_model()
    x, y = _samples(net)
    crippled = EvalAttack(get_attack("pgd"), PGDParams(steps=1, step_size=0.0), label="crippled")
    result = attack_binarized(net, crippled, 0, x, y, 0.1, EvalConfig(eps=[0, 0.1]))
    assert result.samples >= 15 and result.found == 0
    masked = Rounding(net)  # zero gradients: PGD stays at its random start
    pgd = EvalAttack(get_attack("pgd"), get_attack("pgd").make_params())
    result = attack_binarized(masked, pgd, 0, x, y, 0.1, EvalConfig(eps=[0, 0.1]))
    assert result.samples >= 10 and result.found < 0.5 * result.samples


def test_the_check_fires_for_the_crippled_attack_only():
    attacks = [
        EvalAttack(get_attack("pgd"), get_attack("pgd").make_params(steps=10)),
        EvalAttack(get_attack("pgd"), PGDParams(steps=1, step_size=0.0), label="crippled"),
    ]
    report = run_default(attacks, eps=(0.0, 0.1), limit=40, binarization=True)
    found = next(c for c in report.checks if c["name"] == "binarization")
    assert found["status"] == "warning" and found["message"].startswith("crippled found")
    assert "the attack, not the model, is failing" in found["message"]
    tested = {a["attack"]: a for a in found["details"]["attacks"]}
    assert tested["pgd"]["found"] == tested["pgd"]["samples"] and tested["crippled"]["found"] == 0


def test_it_runs_by_default_for_ensembles_when_cheap():
    strong = [EvalAttack(get_attack("strong"), get_attack("strong").make_params())]
    pgd = [EvalAttack(get_attack("pgd"), get_attack("pgd").make_params())]
    config = EvalConfig(eps=[0, 0.05, 0.1])
    assert wanted(config, strong, 450, 10) and not wanted(config, strong, 20, 10)  # 20 samples: the test costs more
    assert not wanted(config, pgd, 450, 10)
    assert wanted(EvalConfig(eps=[0, 0.1], binarization=True), pgd, 1, 10)
    assert not wanted(EvalConfig(eps=[0, 0.1], binarization=False), strong, 450, 10)


def test_cli_check_binarization(tmp_path):
    args = ["eval", "--limit", "40", "--attack", "pgd", "--steps", "10", "--eps", "0,0.1", "--json", "-"]
    report = json.loads(invoke(args + ["--check", "binarization"]).stdout)
    [tested] = report["diagnostics"]["binarization"]["attacks"]
    assert tested["attack"] == "pgd" and tested["found"] == tested["samples"] >= 15
    assert next(c for c in report["checks"] if c["name"] == "binarization")["status"] == "passed"
    assert "binarization" not in json.loads(invoke(args).stdout)["diagnostics"]
    assert_bad_input(invoke(args + ["--check", "everything"]), "--check")
