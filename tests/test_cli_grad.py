"""`advgrad grad` through Typer's CliRunner: ∇ₓJ to a file, norms, saliency maps and --check."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F
from helpers import INPUT_ERRORS, assert_bad_input, invoke, is_png, listing


def test_check_prints_the_largest_relative_error_and_passes_on_the_default_model():
    result = invoke(["grad", "--limit", "8", "--check"])
    assert result.exit_code == 0, result.stderr
    match = re.search(r"largest relative error ([0-9.e+-]+)", result.stdout)
    assert match is not None, result.stdout
    assert float(match.group(1)) < 1e-4
    assert "ok" in result.stdout


def test_check_as_json():
    result = invoke(["grad", "--limit", "4", "--check", "--coordinates", "8", "--json", "-"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    check = report["check"]
    assert check["passed"] is True and check["max_relative_error"] < check["tolerance"] == 1e-4
    assert check["n_coordinates"] == 32 and check["dtype"] == "float64"
    assert report["n_samples"] == 4 and len(report["samples"]) == 4
    assert {"index", "label", "pred", "loss", "l1", "l2", "linf"} <= set(report["samples"][0])


def test_check_that_fails_its_tolerance_exits_1():
    result = invoke(["grad", "--limit", "4", "--check", "--tolerance", "0"])
    assert result.exit_code == 1
    assert "FAILED" in result.stdout


def test_out_file_holds_the_autograd_gradient(tmp_path, digits_model, digits_test):
    result = invoke(["grad", "--limit", "10", "--batch-size", "4", "--out", tmp_path / "g.pt"])
    assert result.exit_code == 0, result.stderr
    data = torch.load(tmp_path / "g.pt", weights_only=True)
    assert {"x", "y", "grad", "loss", "pred"} <= set(data)
    x, y = digits_test.x[:10], digits_test.y[:10]
    assert torch.equal(data["x"], x) and torch.equal(data["y"], y)
    x_var = x.clone().requires_grad_(True)
    logits = digits_model(x_var)
    loss = F.cross_entropy(logits, y, reduction="none")
    (expected,) = torch.autograd.grad(loss.sum(), x_var)
    assert torch.allclose(data["grad"], expected, rtol=1e-4, atol=1e-7)
    assert torch.allclose(data["loss"], loss.detach(), rtol=1e-5, atol=1e-7)
    assert torch.equal(data["pred"], logits.argmax(1))
    assert all(p.grad is None for p in digits_model.parameters())


def test_per_sample_norms_in_the_json(digits_model, digits_test):
    result = invoke(["grad", "--limit", "5", "--loss", "margin", "--json", "-"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["loss"] == "margin"
    x, y = digits_test.x[:5].clone().requires_grad_(True), digits_test.y[:5]
    logits = digits_model(x)
    other = logits.masked_fill(F.one_hot(y, 10).bool(), float("-inf")).amax(1)
    (grad,) = torch.autograd.grad((other - logits.gather(1, y[:, None]).squeeze(1)).sum(), x)
    l2 = grad.flatten(1).norm(dim=1)
    assert [s["l2"] for s in report["samples"]] == pytest.approx(l2.tolist(), rel=1e-4)


def test_table_and_saliency_images(tmp_path):
    result = invoke(["grad", "--limit", "12", "--show", "3", "--images", tmp_path / "sal"])
    assert result.exit_code == 0, result.stderr
    assert "first 3 of 12 samples" in result.stdout
    assert is_png(tmp_path / "sal" / "saliency.png")


def test_check_on_a_torchscript_model(files):
    result = invoke(["grad", "--model", files.digits_script, "--data", files.digits_npz, "--limit", "4", "--check"])
    assert result.exit_code == 0, result.stderr
    assert "largest relative error" in result.stdout
    assert "warning" not in result.stderr


@pytest.mark.parametrize("case_id, make, message", INPUT_ERRORS, ids=[c[0] for c in INPUT_ERRORS])
def test_bad_inputs(tmp_path, files, case_id, make, message):
    result = invoke(
        ["grad", *make(files), "--out", tmp_path / "g.pt", "--images", tmp_path / "img", "--json", tmp_path / "g.json"]
    )
    assert_bad_input(result, message)
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "options, message",
    [(["--loss", "hinge"], "unknown loss"), (["--coordinates", "0"], "--coordinates")],
)
def test_bad_options(tmp_path, options, message):
    result = invoke(["grad", *options, "--out", tmp_path / "g.pt"])
    assert_bad_input(result, message)
    assert listing(tmp_path) == []


def test_table_caption_does_not_claim_an_output_file(tmp_path, monkeypatch):
    result = invoke(["grad", "--limit", "12", "--show", "4"])
    assert result.exit_code == 0, result.stderr
    assert "first 4 of 12 samples" in result.stdout and "output file" not in result.stdout
    assert "--out FILE or --json FILE keeps them all" in result.stdout
    monkeypatch.chdir(tmp_path)  # a short path: the caption wraps a long one wherever the width ends
    saved = invoke(["grad", "--limit", "12", "--show", "4", "--out", "g.pt"])
    assert saved.exit_code == 0 and "all are in g.pt" in " ".join(saved.stdout.split())


def test_saliency_draws_as_many_samples_as_asked(tmp_path):
    from advgrad.report.images import saliency_figure

    x, g = torch.rand(20, 1, 8, 8), torch.randn(20, 1, 8, 8)
    y = torch.zeros(20, dtype=torch.long)
    for count, signed in ((14, False), (3, True)):
        fig = saliency_figure(x, g, y, y, count=count, signed=signed, title="t")
        inputs = [ax for ax in fig.axes if ax.get_title().startswith("#")]
        maps = [ax for ax in fig.axes if ax.get_title().startswith("max |∇|")]
        assert len(inputs) == len(maps) == count
        assert any("sample's max" in ax.get_ylabel() for ax in fig.axes)  # the colour bar
        assert fig._suptitle.get_text() == "t"
        if signed:
            assert maps[0].images[0].get_clim() == (-1.0, 1.0)
    result = invoke(["grad", "--limit", "16", "--show", "12", "--signed", "--images", tmp_path])
    assert result.exit_code == 0, result.stderr
    assert is_png(tmp_path / "saliency.png")


def test_a_loss_of_exactly_zero_is_never_printed_as_minus_zero():
    """A sample classified with probability 1 in float32 has loss −log 1 = −0.0; the table and the JSON
    say 0."""
    import io
    import json

    import torch
    from rich.console import Console

    from advgrad.evaluation.input_gradients import GradientSet, sample_rows
    from advgrad.report.table import gradient_table

    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[100.0, 0.0], [-100.0, 0.0]]))
        model.bias.zero_()
    x, y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    loss = torch.nn.functional.cross_entropy(model(x), y, reduction="none")
    assert str(float(loss[0])) == "-0.0"  # the case itself
    rows = sample_rows(GradientSet(x=x, y=y, grad=torch.zeros_like(x), loss=loss, pred=torch.tensor([0])))
    assert "-0" not in json.dumps(rows)
    console = Console(file=io.StringIO(), width=120)
    console.print(gradient_table(rows))
    assert "-0" not in console.file.getvalue()
