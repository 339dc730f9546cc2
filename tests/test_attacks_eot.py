"""Expectation over transformation (``eot``) for every gradient attack, and the predictions of a
randomized model (advgrad/core/gradient.py ``expectation``, advgrad/evaluation/randomized.py, the sweep)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from helpers import assert_bad_input, invoke
from torch import Tensor, nn

from advgrad.attacks import get_attack, list_attacks
from advgrad.attacks.iterative import gradient_of
from advgrad.core.errors import UsageError
from advgrad.core.gradient import expectation
from advgrad.core.threat import ThreatModel
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.randomized import prediction_passes, wrong_in_repeats
from advgrad.evaluation.sweep import evaluate
from advgrad.io.data.load_data import load_default
from advgrad.io.model.defended import noisy_digits

GRADIENT_ATTACKS = [s.name for s in list_attacks() if s.kind == "gradient"] + ["cw", "deepfool"]


class CyclingScale(nn.Module):
    """z = s_k·(W x) with s_k = 1, 3, 1, 3, … on successive calls: a randomized model whose
    expected gradient is known in closed form (E[s] = 2)."""

    def __init__(self, weight: Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        scale = 1.0 if self.calls % 2 == 0 else 3.0
        self.calls += 1
        return scale * x.flatten(1) @ self.weight.T


class WrongEveryThird(nn.Module):
    """Classifies every sample as its true class (the label is stored in the model), except on
    every third call, which predicts the next class: correct once, fooled with three passes."""

    def __init__(self, labels: Tensor, classes: int = 10):
        super().__init__()
        self.labels, self.classes, self.calls = labels, classes, 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        shift = 1 if self.calls % 3 == 0 else 0
        # which sample is which: the first pixel holds the sample's index (x is never attacked at ε = 0)
        # (clamped: the sanity checks' finite differences move inputs by 10⁻³)
        index = (x.flatten(1)[:, 0] * 1000).round().long().clamp(0, self.labels.shape[0] - 1)
        cls = (self.labels[index] + shift) % self.classes
        return 5.0 * nn.functional.one_hot(cls, self.classes).float() + 0 * x.flatten(1)[:, :1]


def test_expectation_is_the_mean_of_the_draws_and_one_draw_is_unchanged():
    values = iter([torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0]), torch.tensor([5.0, 1.0])])
    (mean,) = expectation(3, lambda: (next(values),))
    assert torch.equal(mean, torch.tensor([3.0, 3.0]))
    only = torch.tensor([7.0], dtype=torch.float16)
    assert expectation(1, lambda: (only,))[0] is only


def test_eot_gradient_is_the_expected_gradient_of_a_randomized_linear_model():
    # margin loss of a 2-class linear model: J = z_1 − z_0 = s·(w_1 − w_0)·x, so ∇ₓJ = s·(w_1 − w_0)
    w = torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.0, 1.0, -1.0, 2.0]], dtype=torch.float64)
    model = CyclingScale(w)
    x = torch.rand(3, 4, dtype=torch.float64)
    y = torch.zeros(3, dtype=torch.long)
    with torch.enable_grad():
        one, _, _ = gradient_of(model, x, y, None, "margin")
        four, _, value = gradient_of(model, x, y, None, "margin", eot=4)
    expected = (w[1] - w[0]).expand(3, 4)
    assert torch.allclose(one, expected)  # the first draw has s = 1
    assert torch.allclose(four, 2 * expected)  # E[s] = 2 over 3, 1, 3, 1
    assert torch.allclose(value, 2 * (x @ (w[1] - w[0])))
    assert model.calls == 5


@pytest.mark.parametrize("name", ["fgsm", "bim", "mifgsm", "pgd"])
def test_each_step_costs_eot_passes_as_the_cost_formula_says(name):
    w = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    model = CyclingScale(w)
    spec = get_attack(name)
    params = spec.make_params(eot=3, steps=4)
    x, y = torch.rand(5, 4), torch.tensor([0, 1, 2, 0, 1])
    spec.function(model, x, y, threat=ThreatModel("inf", 0.1), params=params)
    assert model.calls == params.passes_per_sample() == 3 * (1 if name == "fgsm" else 4)


@pytest.mark.parametrize("name", GRADIENT_ATTACKS + ["strong", "autoattack-rand"])
def test_every_gradient_attack_takes_eot_and_counts_it_in_its_cost(name):
    spec = get_attack(name)
    once = spec.make_params(eot=1)
    twice = spec.make_params(eot=2)
    assert twice.to_dict()["eot"] == 2
    assert twice.passes_per_sample() > once.passes_per_sample()


@pytest.mark.parametrize("value", [0, -1, 1.5])
def test_eot_must_be_a_whole_number_of_at_least_one(value):
    with pytest.raises(UsageError, match="eot"):
        get_attack("pgd").make_params(eot=value)


def test_cli_refuses_a_bad_eot_in_one_line():
    assert_bad_input(invoke(["attack", "--eot", "0", "--limit", "4"]), "--eot")
    assert invoke(["eval", "--eot", "2.5", "--limit", "4"]).exit_code == 2  # not a whole number: click says so
    assert_bad_input(invoke(["eval", "--predictions", "0", "--limit", "4"]), "--predictions must be ≥ 1")
    assert_bad_input(invoke(["attack", "--predictions", "0", "--limit", "4"]), "--predictions must be ≥ 1")


def test_wrong_in_repeats_and_prediction_passes():
    labels = torch.tensor([3, 4])
    model = WrongEveryThird(labels)
    x = torch.zeros(2, 1, 8, 8)
    x[1, 0, 0, 0] = 0.001
    hit, first = wrong_in_repeats(model, x, labels, 2)
    assert not hit.any() and (first == -1).all()
    hit, first = wrong_in_repeats(model, x, labels, 1)  # the third call
    assert hit.all() and torch.equal(first, torch.tensor([4, 5]))
    pgd = get_attack("pgd")
    assert prediction_passes([pgd.make_params(), pgd.make_params(eot=7), get_attack("square").make_params()]) == 7


def test_a_sample_counts_as_correct_only_when_every_prediction_is():
    n = 6
    labels = load_default().y[:n]
    model = WrongEveryThird(labels)
    x = torch.zeros(n, 1, 8, 8)
    x[:, 0, 0, 0] = torch.arange(n) / 1000
    pgd = EvalAttack(get_attack("pgd"), get_attack("pgd").make_params(steps=1))
    once = evaluate(model, [(x, labels)], [pgd], EvalConfig(eps=[0.0]))
    model.calls = 0
    thrice = evaluate(model, [(x, labels)], [pgd], EvalConfig(eps=[0.0], predictions=3))
    assert once.clean_accuracy == 1.0 and "predictions" not in once.config
    assert thrice.clean_accuracy == 0.0 and thrice.config["predictions"] == 3


# --- a randomized model: Gaussian noise on the input ---------------------------------------------


def _noisy_run(attacks, n=100, eps=0.1, predictions=1):
    data = load_default()
    return evaluate(
        noisy_digits(),
        [(data.x[:n], data.y[:n])],
        attacks,
        EvalConfig(eps=[0.0, eps], predictions=predictions),
    )


def test_eot_pgd_beats_plain_pgd_on_a_noisy_model_and_the_check_fires():
    pgd = get_attack("pgd")
    attacks = [
        EvalAttack(pgd, pgd.make_params(steps=20), "pgd"),
        EvalAttack(pgd, pgd.make_params(steps=20, eot=20), "pgd-eot"),
    ]
    report = _noisy_run(attacks)  # one prediction for both: the same yardstick
    plain, eot = (report.attacks[k].points[-1].accuracy for k in ("pgd", "pgd-eot"))
    assert report.clean_accuracy > 0.85
    assert eot < plain - 0.12, (plain, eot)
    check = next(c for c in report.checks if c["name"] == "randomized-model")
    assert check["status"] == "warning" and check["details"]["without_eot"] == ["pgd"]
    assert "--eot" in check["message"] and "autoattack-rand" in check["message"]


def test_randomized_model_check_passes_when_every_gradient_attack_uses_eot():
    pgd = get_attack("pgd")
    report = _noisy_run([EvalAttack(pgd, pgd.make_params(steps=2, eot=2))], n=20, predictions=None)
    check = next(c for c in report.checks if c["name"] == "randomized-model")
    assert check["status"] == "passed" and "randomized" in check["message"]
    assert report.config["predictions"] == 2  # the run judged its predictions over the EOT count


def test_randomized_model_check_is_quiet_on_the_default_model(digits_model):
    data = load_default()
    pgd = get_attack("pgd")
    report = evaluate(
        digits_model,
        [(data.x[:40], data.y[:40])],
        [EvalAttack(pgd, pgd.make_params(steps=2))],
        EvalConfig(eps=[0, 0.1]),
    )
    check = next(c for c in report.checks if c["name"] == "randomized-model")
    assert check["status"] == "passed" and check["details"]["changed"] == 0


def test_autoattack_rand_is_the_rand_version_and_breaks_the_noisy_model():
    spec = get_attack("autoattack-rand")
    defaults = spec.params_type()
    assert (defaults.steps, defaults.restarts, defaults.eot) == (100, 1, 20)
    assert defaults.passes_per_sample() == 2 * 100 * 20
    small = dataclasses.replace(defaults, steps=10, eot=5)
    pgd = get_attack("pgd")
    report = _noisy_run(
        [EvalAttack(pgd, pgd.make_params(steps=10), "pgd"), EvalAttack(spec, small, "autoattack-rand")], n=60
    )
    curve = report.attacks["autoattack-rand"]
    assert curve.params["version"] == "rand" and curve.params["eot"] == 5 and curve.kind == "ensemble"
    assert curve.points[-1].accuracy < report.attacks["pgd"].points[-1].accuracy - 0.1


def test_cli_attack_judges_a_randomized_model_over_the_eot_passes():
    args = ["attack", "--model", "advgrad.io.model.defended:noisy_digits", "--method", "fgsm", "--limit", "24"]
    result = invoke([*args, "--eot", "3", "--json", "-"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["params"]["eot"] == 3 and summary["predictions"] == 3
    assert summary["accuracy"] <= summary["clean_accuracy"]
    single = json.loads(invoke([*args, "--eot", "3", "--predictions", "1", "--json", "-"]).stdout)
    assert "predictions" not in single


def test_fab_boundary_is_the_expected_boundary_of_a_randomized_linear_model():
    # FAB's linearised boundary z_1 − z_0 of the cycling model: value and gradient scale with E[s] = 2
    from advgrad.attacks.fab import _linearised
    from advgrad.core.geometry import L2

    w = torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.0, 1.0, -1.0, 2.0]])
    x = torch.rand(3, 4)
    y = torch.zeros(3, dtype=torch.long)
    for up in (None, torch.ones(3, dtype=torch.long)):
        model = CyclingScale(w)
        with torch.enable_grad():
            f, g = _linearised(model, x, y, up, L2, eot=4)
        assert model.calls == 4
        assert torch.allclose(g, 2 * (w[1] - w[0]).expand(3, 4), atol=1e-6)
        assert torch.allclose(f, 2 * (x @ (w[1] - w[0])), atol=1e-5)


@pytest.mark.parametrize("name", ["fab", "fab-t", "autoattack"])
def test_fab_and_autoattack_take_eot(name):
    spec = get_attack(name)
    twice = spec.make_params(eot=2)
    assert twice.to_dict()["eot"] == 2 and twice.passes_per_sample() > spec.make_params().passes_per_sample()
    if name == "autoattack":
        assert spec.make_params().to_dict()["as_published"] and not twice.to_dict()["as_published"]
