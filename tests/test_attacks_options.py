"""The command line's attack options, merged from the registered attacks' parameter fields, and
the model and data options, declared once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import typer

from advgrad.attacks import AttackParams, AttackSpec, get_attack
from advgrad.attacks.base import param, parse_step
from advgrad.attacks.options import collect_options, read_options
from advgrad.cli import app
from advgrad.cli.shared_options import INPUT_OPTIONS, input_options
from advgrad.core.errors import UsageError
from advgrad.io.inputs import InputOptions


def _by_name():
    return {o.name: o for o in collect_options()}


def test_help_lines_give_each_attacks_default():
    options = _by_name()
    assert options["steps"].help_text() == (
        "Iterations N (default: 100; bim, mifgsm: 10; cw: 200; deepfool: 50; pgd: 20)."
    )
    assert options["loss"].help_text() == "Objective: ce, margin or dlr (default: ce; apgd-dlr, apgd-t: dlr)."
    assert options["random_start"].help_text().endswith("(default: on; fgsm: off).")
    assert options["binary_steps"].help_text() == "Binary-search steps over the constant c (cw; default: 9)."
    assert options["p_init"].help_text().endswith("(square; default: 0.05 for L∞, 0.1 for L2).")


def test_types_and_order():
    options = collect_options()
    takers = [len(o.defaults) for o in options]
    assert takers == sorted(takers, reverse=True)  # the most widely taken first
    assert options[0].name == "eot"  # every gradient attack takes it
    by_name = {o.name: o for o in options}
    assert by_name["steps"].type is int and by_name["momentum"].type is float
    assert by_name["random_start"].type is bool and by_name["loss"].type is str
    assert by_name["step_size"].parse is parse_step and by_name["steps"].parse is None
    fields = {
        f.name
        for spec in (get_attack(n) for n in ("pgd", "cw", "square"))
        for f in dataclasses.fields(spec.params_type)
    }
    assert fields <= set(by_name)


@pytest.mark.parametrize("command", ["attack", "eval"])
def test_click_options_follow_the_fields(command):
    params = {p.name: p for p in typer.main.get_command(app).commands[command].params}
    assert params["random_start"].opts == ["--random-start"] and params["random_start"].secondary_opts == [
        "--no-random-start"
    ]
    assert params["steps"].default is None and params["step_size"].default is None  # attack's default


def test_read_options_parses_and_checks_every_given_value():
    values = read_options({"step_size": "2/255", "steps": 7, "momentum": None})
    assert values == {"step_size": pytest.approx(2 / 255), "steps": 7, "momentum": None}
    with pytest.raises(UsageError, match="`step_size` must be > 0"):
        read_options({"step_size": "0"})
    with pytest.raises(UsageError, match="`target_classes` must be ≥ 1"):
        read_options({"target_classes": 0}, [get_attack("pgd"), get_attack("apgd-t")])


@dataclass
class _IntSteps(AttackParams):
    steps: int = param(3, "iterations")


@dataclass
class _FloatSteps(AttackParams):
    steps: float = param(0.5, "a fraction of the steps")


def test_one_name_with_two_types_is_refused():
    specs = [
        AttackSpec(name, lambda *a, **k: None, params, ("inf",), "gradient", "", "")
        for name, params in (("a", _IntSteps), ("b", _FloatSteps))
    ]
    with pytest.raises(TypeError, match="'steps'"):
        collect_options(specs)


def test_input_options_are_declared_once():
    assert input_options() == InputOptions()  # nothing given: every field's default
    fields = {f.name for f in dataclasses.fields(InputOptions)}
    assert sorted(spec.field or name for name, spec in INPUT_OPTIONS.items()) == sorted(fields)
    params = {p.name: p for p in typer.main.get_command(app).commands["eval"].params}
    defaults = InputOptions()
    for name, spec in INPUT_OPTIONS.items():  # each option's default is its field's
        field, default = spec.field or name, params[name].default
        assert (tuple(default) if field == "model_args" else default) == getattr(defaults, field), name
    given = input_options(model_arg=["a=1"], mean="0.5", std="0.25", threads=4, batch_size=8)
    assert given.model_args == ("a=1",) and given.mean == (0.5,) and given.std == (0.25,)
    assert given.threads == "4" and given.batch_size == 8


def test_python_api_reads_text_with_the_fields_parser(digits_model, digits_test):
    import torch

    import advgrad

    x, y = digits_test.x[:16], digits_test.y[:16]
    as_text = advgrad.attack(digits_model, x, y, "bim", eps=0.1, steps=3, step_size="1/40")
    as_number = advgrad.attack(digits_model, x, y, "bim", eps=0.1, steps=3, step_size=0.025)
    assert torch.equal(as_text, as_number) and not torch.equal(as_text, x)
    with pytest.raises(UsageError, match="step_size"):
        advgrad.attack(digits_model, x, y, "bim", eps=0.1, step_size="-1/40")
