"""NaN or infinite logits are never a success of an attack (issue 9, item 5).

The model ``factory_models:make_off_grid_nan`` is linear on inputs whose pixels are multiples of
1/4 and returns NaN (or +∞) logits as soon as a pixel leaves that grid: every perturbation an
attack tries gives non-finite logits, so no sample can be fooled and accuracy under attack must
equal clean accuracy. Counting a NaN row's argmax (class 0) as a prediction would report every
clean-correct sample of another class as fooled.
"""

from __future__ import annotations

import json

import factory_models as fm
import jsonschema
import pytest
import torch
from loading_fixtures import run_cli, save_tensors

from advgrad.attacks import get_attack
from advgrad.attacks.base import run_attack
from advgrad.core.losses import is_successful
from advgrad.core.threat import ThreatModel
from advgrad.report.schema import report_schema

N = 24


def _grid_data(value: str = "nan", off_grid: int = 0):
    """Pixels on the 1/4 grid; labels = the model's prediction for 18 samples (at least 12 of a
    class other than 0 among them: checked), wrong for the rest. The last ``off_grid`` samples are
    moved off the grid, so their clean logits are non-finite."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(0, 5, (N, 1, 8, 8), generator=gen).float() / 4
    model = fm.make_off_grid_nan(value=value).eval()
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    y = pred.clone()
    y[18:] = (pred[18:] + 1) % 3
    assert int((y[:18] != 0).sum()) >= 6  # samples a NaN argmax (class 0) would count as fooled
    if off_grid:  # labelled 0: the argmax of a NaN row, which must not count as a correct prediction
        x[N - off_grid :] = x[N - off_grid :] * 0.9 + 0.01
        y[N - off_grid :] = 0
    return x, y


def _finite_correct(x, y, value="nan") -> int:
    model = fm.make_off_grid_nan(value=value).eval()
    with torch.no_grad():
        logits = model(x)
    return int(((logits.argmax(dim=1) == y) & torch.isfinite(logits).all(dim=1)).sum())


def test_a_nan_row_is_never_a_success():
    logits = torch.tensor([[float("nan")] * 3, [0.0, 1.0, float("inf")], [0.0, 2.0, 1.0]])
    y = torch.tensor([1, 0, 0])
    assert is_successful(logits, y).tolist() == [False, False, True]
    assert is_successful(logits, y, torch.tensor([0, 2, 1])).tolist() == [False, False, True]


@pytest.mark.parametrize("method", ["fgsm", "pgd", "mifgsm", "apgd", "square", "deepfool"])
def test_attacks_return_points_that_are_not_counted_as_fooled(method):
    x, y = _grid_data()
    x, y = x[:18], y[:18]  # the clean-correct samples
    model = fm.make_off_grid_nan().eval()
    spec = get_attack(method)
    threat = ThreatModel("inf" if "inf" in spec.norms else spec.norms[0], 0.1)
    params = spec.make_params(queries=50, steps=5)
    x_adv = run_attack(
        spec, model, x, y, threat=threat, params=params, generator=torch.Generator().manual_seed(0), early_stop=True
    )
    assert torch.isfinite(x_adv).all()
    assert bool(threat.contains(x_adv, x).all())
    with torch.no_grad():
        assert not bool(is_successful(model(x_adv), y).any())


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_eval_counts_non_finite_logits_as_not_fooled_and_the_check_fires(tmp_path, value):
    x, y = _grid_data(value)
    data = save_tensors(tmp_path / "grid.pt", x, y)
    result = run_cli(
        "eval",
        "--model",
        "factory_models:make_off_grid_nan",
        "--model-arg",
        f"value='{value}'",
        "--data",
        data,
        "--attack",
        "fgsm,pgd",
        "--steps",
        "5",
        "--eps",
        "0,0.1",
        "--device",
        "cpu",
        "--batch-size",
        "10",
        "--json",
        "-",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    clean = _finite_correct(x, y, value)
    assert report["clean_correct"] == clean == 18
    for curve in report["attacks"].values():
        assert [p["robust"] for p in curve["points"]] == [clean, clean]
    check = next(c for c in report["checks"] if c["name"] == "non-finite-logits")
    assert check["status"] == "warning"
    attacked = {(a["attack"], a["eps"]) for a in check["details"]["attacks"]}
    assert attacked == {("fgsm", 0.1), ("pgd", 0.1)}
    assert all(a["inputs"] >= clean for a in check["details"]["attacks"])
    assert "non-finite-logits" in result.stderr
    jsonschema.Draft202012Validator(report_schema()).validate(report)


def test_eval_counts_non_finite_clean_logits_as_misclassified(tmp_path):
    x, y = _grid_data(off_grid=4)
    data = save_tensors(tmp_path / "grid.pt", x, y)
    result = run_cli(
        "eval",
        "--model",
        "factory_models:make_off_grid_nan",
        "--data",
        data,
        "--attack",
        "fgsm",
        "--eps",
        "0,0.1",
        "--device",
        "cpu",
        "--batch-size",
        "8",
        "--json",
        "-",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    clean = _finite_correct(x, y)
    assert report["clean_correct"] == clean == 18
    assert report["diagnostics"]["clean_nonfinite"] == 4
    assert [p["robust"] for p in report["attacks"]["fgsm"]["points"]] == [clean, clean]
    check = next(c for c in report["checks"] if c["name"] == "non-finite-logits")
    assert check["status"] == "warning" and check["details"]["clean_samples"] == 4


def test_an_honest_model_passes_the_check(tmp_path):
    x, y = _grid_data()
    data = save_tensors(tmp_path / "grid.pt", x, y)
    result = run_cli(
        "eval",
        "--model",
        "factory_models:Linear",
        "--model-arg",
        "features=64",
        "--data",
        data,
        "--attack",
        "fgsm",
        "--eps",
        "0,0.1",
        "--device",
        "cpu",
        "--json",
        "-",
    )
    assert result.exit_code == 0, result.stderr
    check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "non-finite-logits")
    assert check["status"] == "passed"


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_attack_counts_non_finite_logits_as_not_fooled(tmp_path, method):
    x, y = _grid_data()
    data = save_tensors(tmp_path / "grid.pt", x, y)
    out = tmp_path / "adv.pt"
    result = run_cli(
        "attack",
        "--method",
        method,
        "--eps",
        "0.1",
        "--model",
        "factory_models:make_off_grid_nan",
        "--data",
        data,
        "--device",
        "cpu",
        "--json",
        "-",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["clean_accuracy"] == pytest.approx(18 / N)
    assert summary["accuracy"] == pytest.approx(18 / N)
    assert summary["successes"] == 0 and summary["nonfinite_inputs"] >= N
    assert "non-finite-logits" in result.stderr
    saved = torch.load(out)
    assert torch.isfinite(saved["x_adv"]).all()


def test_a_non_finite_model_arg_is_refused(tmp_path):
    x, y = _grid_data()
    data = save_tensors(tmp_path / "grid.pt", x, y)
    result = run_cli(
        "eval",
        "--model",
        "factory_models:make_off_grid_nan",
        "--model-arg",
        "value=nan",
        "--data",
        data,
        "--eps",
        "0.1",
        "--device",
        "cpu",
    )
    assert result.exit_code == 2 and "must be finite" in result.stderr, (result.exit_code, result.stderr)


class _FiniteNearGrey(torch.nn.Module):
    """Two classes, logits (s, −s) with s = Σ(x − 0.5) + 0.01: class 0 at the all-grey input;
    NaN logits as soon as a pixel is more than 0.05 from 0.5."""

    def forward(self, x):
        s = (x - 0.5).flatten(1).sum(dim=1) + 0.01
        far = ((x - 0.5).abs() > 0.05 + 1e-6).flatten(1).any(dim=1)
        s = torch.where(far, torch.full_like(s, float("nan")), s)
        return torch.stack([s, -s], dim=1)


@pytest.mark.parametrize("early_stop", [True, False])
def test_the_loop_keeps_its_last_finite_candidate(early_stop):
    """BIM's first step (0.02) already fools the model at a point with finite logits; its third
    would leave the region where the logits are finite. The sample must end fooled at a finite
    point: on main the iterate ran on into the NaN region, whose argmax (class 0) is the label."""
    model = _FiniteNearGrey()
    x, y = torch.full((2, 1, 4, 4), 0.5), torch.zeros(2, dtype=torch.long)
    spec = get_attack("bim")
    x_adv = run_attack(
        spec,
        model,
        x,
        y,
        threat=ThreatModel("inf", 0.1),
        params=spec.make_params(steps=10, step_size=0.02),
        early_stop=early_stop,
    )
    with torch.no_grad():
        logits = model(x_adv)
    assert torch.isfinite(logits).all()
    assert bool(is_successful(logits, y).all())


def test_the_probe_warns_about_some_non_finite_rows_and_refuses_all():
    from advgrad.core.errors import ModelError
    from advgrad.io.probe import probe

    x, y = _grid_data(off_grid=4)
    model = fm.make_off_grid_nan().eval()
    result = probe(model, x, y)  # the last four samples have NaN logits
    assert any("4 of 24 samples of the probe batch have NaN or infinite logits" in w for w in result.warnings)
    assert not any("differ between two identical calls" in w for w in result.warnings)
    assert result.correct == 18
    with pytest.raises(ModelError, match="NaN or infinite"):
        probe(model, x[20:], y[20:])
