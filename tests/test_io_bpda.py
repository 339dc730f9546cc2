"""BPDA: ``--bpda NAME[=package.module:callable]`` (advgrad/io/model/bpda.py)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import assert_bad_input, invoke

from advgrad.attacks import get_attack
from advgrad.core.errors import UsageError
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.sweep import evaluate
from advgrad.io.data.load_data import load_default
from advgrad.io.model.bpda import BackwardReplaced, apply_bpda, parse_bpda
from advgrad.io.model.defended import Quantize, quantized_digits

QUANTIZED = "advgrad.io.model.defended:quantized_digits"


def double(x):
    """A stand-in whose derivative is 2 everywhere."""
    return 2 * x


def test_forward_is_the_layer_and_backward_the_stand_in():
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    for standin, slope in ((None, 1.0), (double, 2.0)):
        layer = BackwardReplaced(Quantize(8), standin, "quantize")
        y = layer(x)
        assert torch.equal(y, torch.round(x * 7) / 7)  # the value is the real layer's
        (grad,) = torch.autograd.grad((y * 3).sum(), x)
        assert torch.allclose(grad, torch.full_like(x, 3 * slope))  # the derivative is the stand-in's
    with torch.no_grad():
        assert torch.equal(BackwardReplaced(Quantize(8), None, "q")(x), torch.round(x * 7) / 7)


def test_parse_bpda_takes_repeats_commas_and_stand_ins():
    requests = parse_bpda(["a, b.c=pkg.mod:fn", "d"])
    assert [(r.name, r.standin) for r in requests] == [("a", None), ("b.c", "pkg.mod:fn"), ("d", None)]
    for bad in (["a=notacallable"], ["=pkg:fn"], ["a", "a"]):
        with pytest.raises(UsageError, match="bpda"):
            parse_bpda(bad)


def test_apply_bpda_accepts_the_normalisation_wrapper_prefix_and_refuses_unknown_names():
    model = apply_bpda(quantized_digits(), parse_bpda(["model.quantize"]), "factory", QUANTIZED)
    assert isinstance(model.quantize, BackwardReplaced)
    with pytest.raises(UsageError, match="close names: quantize"):
        apply_bpda(quantized_digits(), parse_bpda(["quantise"]), "factory", QUANTIZED)


def test_bpda_pgd_breaks_a_quantising_model_as_square_does():
    data = load_default()
    x, y = data.x[:60], data.y[:60]
    pgd, square = get_attack("pgd"), get_attack("square")
    config = EvalConfig(eps=[0.0, 0.1])
    plain = evaluate(
        quantized_digits(),
        [(x, y)],
        [EvalAttack(pgd, pgd.make_params(steps=10)), EvalAttack(square, square.make_params(queries=300))],
        config,
    )
    bpda = evaluate(
        apply_bpda(quantized_digits(), parse_bpda(["quantize"]), "factory", QUANTIZED),
        [(x, y)],
        [EvalAttack(pgd, pgd.make_params(steps=10))],
        config,
    )
    plain_pgd, square_acc = (plain.attacks[k].points[-1].accuracy for k in ("pgd", "square"))
    bpda_pgd = bpda.attacks["pgd"].points[-1].accuracy
    assert plain_pgd > 0.8  # the rounding hides every gradient
    assert bpda_pgd <= square_acc + 0.1 and bpda_pgd < plain_pgd - 0.5, (plain_pgd, square_acc, bpda_pgd)
    fired = {c["name"] for c in plain.checks if c["status"] == "warning"}
    zero = next(c for c in plain.checks if c["name"] == "zero-gradients")
    assert "zero-gradients" in fired and "--bpda" in zero["message"]
    assert next(c for c in bpda.checks if c["name"] == "zero-gradients")["status"] == "passed"


def test_cli_bpda_with_a_stand_in_reaches_the_report(tmp_path):
    out = tmp_path / "r.json"
    result = invoke(
        [
            "eval", "--model", QUANTIZED, "--bpda", "quantize=test_io_bpda:double", "--attack", "fgsm",
            "--eps", "0,0.1", "--limit", "16", "--json", out,
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["config"]["inputs"]["bpda"] == ["quantize=test_io_bpda:double"]
    assert report["attacks"]["fgsm"]["points"][-1]["accuracy"] < 0.9


def test_cli_refuses_bpda_on_torchscript_and_exported_programs(files, tmp_path):
    assert_bad_input(invoke(["eval", "--model", files.digits_script, "--bpda", "features.0"]), "needs a module tree")
    pt2 = tmp_path / "m.pt2"
    small = torch.nn.Sequential(Quantize(8), torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    torch.export.save(torch.export.export(small, (torch.rand(2, 1, 8, 8),)), pt2)
    line = assert_bad_input(invoke(["attack", "--model", pt2, "--bpda", "0"]), "needs a module tree")
    assert "ExportedProgram" in line


def test_cli_refuses_unknown_names_and_bad_stand_ins_in_one_line():
    line = assert_bad_input(invoke(["eval", "--model", QUANTIZED, "--bpda", "quantiser"]), "no submodule 'quantiser'")
    assert "quantize" in line
    assert_bad_input(invoke(["eval", "--bpda", "features.9"]), "no submodule")
    assert_bad_input(invoke(["eval", "--bpda", "features=torch.nn"]), "NAME=package.module:callable")
    assert_bad_input(invoke(["eval", "--model", QUANTIZED, "--bpda", "quantize=test_io_bpda:missing"]), "missing")


def test_library_and_config_file_take_bpda(tmp_path):
    import advgrad

    model = advgrad.load_model(QUANTIZED, bpda=["quantize"])
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x).sum(), x)
    assert grad.abs().sum() > 0  # without BPDA the rounding gives exactly zero
    config = tmp_path / "run.toml"
    config.write_text(
        f'model = "{QUANTIZED}"\nbpda = ["quantize"]\neot = 2\nattack = "fgsm"\neps = ["0", "0.1"]\nlimit = 8\n'
    )
    out = tmp_path / "r.json"
    result = invoke(["eval", "--config", config, "--json", out])
    assert result.exit_code == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["config"]["inputs"]["bpda"] == ["quantize"]
    assert report["attacks"]["fgsm"]["params"]["eot"] == 2 and report["config"]["predictions"] == 2
