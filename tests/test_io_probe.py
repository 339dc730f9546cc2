"""The probe before a run, and open_inputs: model and data checked against each other."""

from __future__ import annotations

import factory_models as fm
import pytest
import torch
from loading_fixtures import save_tensors
from torch import nn

from advgrad.core.errors import DataError, ModelError, UsageError
from advgrad.io.inputs import InputOptions, open_inputs
from advgrad.io.model.logits import LogitsOf, OutputRule, logits_rule
from advgrad.io.probe import probe

X = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])


@pytest.mark.parametrize(
    ("factory", "rule"),
    [
        (fm.make, OutputRule("tensor")),
        (fm.make_tuple, OutputRule("index", 0)),
        (fm.make_dict, OutputRule("key", "logits")),
        (fm.make_object, OutputRule("attribute", "logits")),
    ],
)
def test_outputs_with_logits_inside(factory, rule):
    model = factory().eval()
    result = probe(model, X, Y)
    assert result.output == rule and result.num_classes == 10
    wrapped = LogitsOf(model, result.output)
    torch.testing.assert_close(wrapped(X), fm.make().eval()(X))  # same weights (seed 0) inside each wrapper


def test_logits_rule_edge_cases():
    t = torch.zeros(2, 3)
    assert logits_rule((None, "text", t)) == OutputRule("index", 2)
    assert logits_rule({"scores": t}) == OutputRule("key", "scores")  # the only tensor
    with pytest.raises(ModelError, match="holding no tensor"):
        logits_rule(("a", 1))
    with pytest.raises(ModelError, match="keys a, b and no 'logits'"):
        logits_rule({"a": t, "b": t})
    with pytest.raises(ModelError, match="returned str"):
        logits_rule("logits")


def test_wrong_channels_named():
    with pytest.raises(ModelError, match="wrong number of input channels: the model expects 3 but the data has 1"):
        probe(fm.make(channels=3).eval(), X, Y)


def test_labels_outside_classes():
    with pytest.raises(ModelError, match=r"labels go up to 7 but the model outputs 5 classes \(0..4\)"):
        probe(fm.make(classes=5).eval(), X, Y)


def test_output_not_logits_shape():
    with pytest.raises(ModelError, match="expected 8×classes logits"):
        probe(nn.Identity(), X, Y)


def test_non_finite_outputs():
    class Inf(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 10), float("inf")) + x.sum() * 0

    with pytest.raises(ModelError, match="NaN or infinite"):
        probe(Inf(), X, Y)


def test_detached_output_is_refused():
    with pytest.raises(ModelError, match="does not depend differentiably"):
        probe(fm.make_detached().eval(), X, Y)


def test_zero_gradient_warns():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.randn(10))

        def forward(self, x):
            return self.bias + 0 * x.flatten(1)[:, :1]

    result = probe(Constant(), X, Y)
    assert any("gradient is zero" in w for w in result.warnings)


def test_random_model_warns():
    result = probe(fm.make_noisy().eval(), X, Y)
    assert any("differ between two identical calls" in w for w in result.warnings)


def test_batch_dependent_model_warns():
    class Centred(nn.Module):  # subtracts the batch mean: a sample's output depends on its batch
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            h = x.flatten(1)
            return self.fc(h - h.mean(dim=0, keepdim=True))

    result = probe(Centred(), X, Y)
    assert any("depends on the rest of its batch" in w for w in result.warnings)
    assert probe(fm.make().eval(), X, Y).warnings == ()


def test_model_failing_on_one_sample_is_refused():
    training_bn = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(64), nn.Linear(64, 10)).train()
    with pytest.raises(ModelError, match="fails on a batch of one sample"):
        probe(training_bn, X, Y)


def test_probe_accuracy_is_counted():
    model = fm.make().eval()
    pred = model(X).argmax(1)
    y = pred.clone()
    y[:3] = (pred[:3] + 1) % 10  # three wrong on purpose
    result = probe(model, X, y)
    assert (result.correct, result.batch_size, result.accuracy) == (5, 8, 5 / 8)


# ---------------------------------------------------------------------------------------------
# open_inputs


def test_open_inputs_wraps_output_and_checks_labels_beyond_probe_batch(tmp_path):
    y = torch.zeros(100, dtype=torch.long)
    y[-1] = 12  # outside 10 classes, far outside the probe batch
    data = save_tensors(tmp_path / "d.pt", torch.rand(100, 1, 8, 8), y)
    with pytest.raises(ModelError, match="labels go up to 12 but the model outputs 10"):
        open_inputs(InputOptions(model="factory_models:make", data=str(data), batch_size=16, device="cpu"))
    # with --limit the offending sample is not used: it opens
    run = open_inputs(InputOptions(model="factory_models:make_tuple", data=str(data), limit=50, device="cpu"))
    assert isinstance(run.model.module, LogitsOf) and run.n_samples == 50
    assert run.to_dict()["model"]["output"].startswith("element 0")


def test_open_inputs_warns_on_class_count_mismatch(tmp_path):
    from loading_fixtures import write_image_folder

    root = write_image_folder(tmp_path / "imgs", {"a": 1, "b": 1})
    run = open_inputs(
        InputOptions(model="factory_models:make", model_args=("channels=3",), data=str(root), device="cpu")
    )
    assert any("the data has 2 classes but the model outputs 10" in w for w in run.warnings)


def test_open_inputs_checks_options():
    with pytest.raises(UsageError, match="`limit` must be at least 1"):
        open_inputs(InputOptions(limit=0))
    with pytest.raises(UsageError, match="`num_workers`"):
        open_inputs(InputOptions(num_workers=-1))
    with pytest.raises(UsageError, match="`model_args`"):
        open_inputs(InputOptions(model="factory_models:make", model_args=("oops",)))


def test_normalised_data_with_normalised_model_is_still_refused(tmp_path):
    x = (torch.rand(4, 1, 8, 8) - 0.5) / 0.25
    data = save_tensors(tmp_path / "d.pt", x, torch.zeros(4, dtype=torch.long))
    with pytest.raises(DataError, match="`mean`/`std`"):
        open_inputs(InputOptions(data=str(data), mean=(0.5,), std=(0.25,)))


def test_normalisation_hint_for_a_model_trained_on_standardised_inputs():
    import standardised_models as sm
    from helpers import invoke

    from advgrad.io.data.load_data import load_default
    from advgrad.io.probe import normalisation_hint

    x, y = load_default().fetch(torch.arange(64))
    hint = normalisation_hint(sm.expects_standardised(), x, y, 10)
    assert hint is not None and "`mean`" in hint and "`std`" in hint and hint.params == ("mean", "std")
    assert normalisation_hint(sm.expects_pixels(), x, y, 10) is None
    assert normalisation_hint(sm.expects_standardised(), x[:10], y[:10], 10) is None  # too few to tell
    warned = invoke(["info", "--model", "standardised_models:expects_standardised"])
    assert warned.exit_code == 0 and "trained on normalised inputs" in warned.stderr and "e.g. --mean " in warned.stderr
    given = invoke(["info", "--model", "standardised_models:expects_standardised", "--mean", "0.305", "--std", "0.376"])
    assert given.exit_code == 0 and "normalised inputs" not in given.stderr
    default = invoke(["info"])
    assert default.exit_code == 0 and "normalised inputs" not in default.stderr
