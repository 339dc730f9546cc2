"""An attack added from outside ``advgrad/cli``: one module (here, this test module) and one
registry line give it its command-line options, its config keys, its help and its listing.

The toy attack has a parameter no built-in attack has (``wobble``); nothing in ``advgrad/cli``
names it, yet ``advgrad attack``, ``advgrad eval``, ``advgrad attacks``, ``--help`` and a config
file all take it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
import typer
from loading_fixtures import run_cli
from torch import Tensor, nn

from advgrad.attacks import AttackParams, AttackSpec, register_attack
from advgrad.attacks.base import param, prepare_params
from advgrad.attacks.registry import unregister_attack
from advgrad.cli import app
from advgrad.core.threat import ThreatModel

FAST = ["--limit", "8", "--device", "cpu"]
SEEN: list[float] = []  # the wobble each call of the toy attack received


@dataclass
class ToyParams(AttackParams):
    """A parameter of a name that no built-in attack has."""

    wobble: float = param(0.5, "how much to wobble")
    shakes: int = param(2, "how often to shake")

    at_least_one = ("shakes",)
    cost_formula = "shakes"


def toy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: ToyParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """Moves every pixel by ±wobble·ε (a random sign); run_attack keeps it in the ball and box."""
    params = prepare_params(params, ToyParams, threat)
    SEEN.append(params.wobble)
    signs = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
    return x + params.wobble * threat.eps * signs


@pytest.fixture
def toy_attack():
    SEEN.clear()
    spec = register_attack(
        AttackSpec(
            name="toy",
            function=toy,
            params_type=ToyParams,
            norms=("inf", "2"),
            kind="score",
            summary="random ±wobble·ε",
            reference="none",
        )
    )
    try:
        yield spec
    finally:
        unregister_attack("toy")


def _json(result) -> dict:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def test_attack_command_takes_the_new_parameter(toy_attack):
    summary = _json(run_cli("attack", "--method", "toy", "--eps", "0.1", "--wobble", "0.7", *FAST, "--json", "-"))
    assert summary["attack"] == "toy" and summary["params"]["wobble"] == 0.7
    assert SEEN and set(SEEN) == {0.7}


def test_eval_command_takes_the_new_parameter(toy_attack):
    report = _json(
        run_cli(
            "eval",
            "--attack",
            "toy",
            "--eps",
            "0,0.1",
            "--wobble",
            "0.7",
            "--shakes",
            "3",
            *FAST,
            "--no-resume",
            "--json",
            "-",
        )
    )
    curve = report["attacks"]["toy"]
    assert (
        list(report["attacks"]) == ["toy"]
        and curve["kind"] == "score"
        and curve["params"]["wobble"] == 0.7
        and curve["params"]["shakes"] == 3
    )
    assert SEEN and set(SEEN) == {0.7}


def test_config_file_key_sets_the_new_parameter(toy_attack, tmp_path):
    config = tmp_path / "toy.toml"
    config.write_text('attack = "toy"\neps = ["0", "0.1"]\n[attacks]\nwobble = 0.7\n')
    report = _json(run_cli("eval", "--config", config, *FAST, "--no-resume", "--json", "-"))
    assert report["attacks"]["toy"]["params"]["wobble"] == 0.7
    assert set(SEEN) == {0.7}


def test_new_parameter_is_checked_like_the_others(toy_attack):
    for value, needle in (("-1", "--wobble must be ≥ 0"), ("nan", "--wobble must be a finite number")):
        result = run_cli("attack", "--method", "toy", "--wobble", value, *FAST)
        assert result.exit_code == 2 and needle in result.stderr, result.stderr
    result = run_cli("attack", "--method", "pgd", "--shakes", "0", *FAST)  # checked though pgd does not take it
    assert result.exit_code == 2 and "--shakes must be ≥ 1" in result.stderr, result.stderr
    assert SEEN == []
    ignored = run_cli("attack", "--method", "fgsm", "--wobble", "0.7", *FAST, "--json", "-")
    assert ignored.exit_code == 0 and "fgsm does not use --wobble; ignored" in ignored.stderr


def test_listing_and_help_show_the_new_attack(toy_attack):
    listing = _json(run_cli("attacks", "--json", "-"))
    toy_row = next(row for row in listing["attacks"] if row["name"] == "toy")
    assert [(p["option"], p["default"], p["help"]) for p in toy_row["params"]] == [
        ("--wobble", 0.5, "how much to wobble"),
        ("--shakes", 2, "how often to shake"),
    ]
    assert toy_row["cost"]["formula"] == "shakes" and toy_row["cost"]["default"] == 2
    for command in ("attack", "eval"):
        assert "--wobble" in run_cli(command, "--help").stdout
        options = {p.name: p for p in typer.main.get_command(app).commands[command].params}
        assert options["wobble"].help == "How much to wobble (toy; default: 0.5)."
        assert options["shakes"].help == "How often to shake (toy; default: 2)."


def test_the_new_option_leaves_with_its_attack(toy_attack):
    unregister_attack("toy")
    try:
        result = run_cli("attack", "--method", "pgd", "--wobble", "0.7", *FAST)
        assert result.exit_code == 2 and "no such option --wobble" in result.stderr
    finally:
        register_attack(toy_attack)  # the fixture removes it again
