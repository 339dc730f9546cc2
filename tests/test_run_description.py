"""The one description of a run (advgrad/evaluation/run_description.py): the report's ``config`` is the
description, and the resume identity is the same description less what changes no number."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from advgrad import __version__
from advgrad.attacks import get_attack
from advgrad.cli import app
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.resume import run_identity, run_key
from advgrad.evaluation.run_description import NOT_IDENTITY, WHERE_IT_RUNS, RunDescription, RunSettings

INPUTS = {
    "model": None,
    "data": None,
    "split": "test",
    "limit": 100,
    "batch_size": 50,
    "seed": 0,
    "device": "auto",
    "threads": "auto",
}
SETTINGS = RunSettings(gates=["pgd@0.1=0.5"], strict=False, outputs={"json": "r.json"}, config_file=None, threads=2)


def _pgd(steps: int = 10) -> list[EvalAttack]:
    pgd = get_attack("pgd")
    return [EvalAttack(pgd, pgd.make_params(steps=steps))]


def test_the_report_config_is_the_description_in_a_fixed_order():
    run = RunDescription(_pgd(), EvalConfig(eps=[0.1, 0.0], target=3), INPUTS, SETTINGS)
    assert run.to_dict() == {
        "early_stop": True,
        "inputs": INPUTS,
        "attacks": ["pgd"],
        "target": "3",
        "eps": [0.0, 0.1],
        "norm": "inf",
        "gates": ["pgd@0.1=0.5"],
        "strict": False,
        "outputs": {"json": "r.json"},
        "config_file": None,
        "threads": 2,
    }
    assert list(run.to_dict()) == [
        "early_stop",
        "inputs",
        "attacks",
        "target",
        "eps",
        "norm",
        "gates",
        "strict",
        "outputs",
        "config_file",
        "threads",
    ]
    # without inputs and settings (the Python API): the sweep's part alone
    assert RunDescription(_pgd(), EvalConfig(eps=[0.0])).to_dict() == {
        "early_stop": True,
        "attacks": ["pgd"],
        "target": None,
        "eps": [0.0],
        "norm": "inf",
    }


def test_the_identity_is_what_earlier_versions_hashed():
    # saved states stay resumable: the identity holds exactly these facts
    run = RunDescription(_pgd(), EvalConfig(eps=[0.0, 0.1], seed=4, examples=8), INPUTS, SETTINGS)
    assert run.identity("cpu") == {
        "advgrad": __version__,
        "inputs": {k: v for k, v in INPUTS.items() if k not in ("device", "threads")},
        "device": "cpu",
        "files": {},
        "attacks": [["pgd", "pgd", get_attack("pgd").make_params(steps=10).to_dict()]],
        "eps": [0.0, 0.1],
        "norm": "inf",
        "target": None,
        "seed": 4,
        "early_stop": True,
        "examples": 8,
    }
    assert run.identity("cpu") == run_identity(INPUTS, run.attacks, run.config, "cpu")


def test_what_changes_no_number_leaves_the_identity_alone(monkeypatch):
    config = EvalConfig(eps=[0.0, 0.1])
    key = run_key(RunDescription(_pgd(), config, INPUTS, SETTINGS).identity("cpu"))
    same = [
        RunDescription(_pgd(), config, INPUTS, None),
        RunDescription(_pgd(), config, INPUTS, RunSettings([], True, {}, "quick.toml", None)),
        RunDescription(_pgd(), config, {**INPUTS, "device": "cpu", "threads": "4"}, SETTINGS),
    ]
    assert {run_key(run.identity("cpu")) for run in same} == {key}
    assert set(NOT_IDENTITY) == {"gates", "strict", "outputs", "config_file", "threads"}
    assert WHERE_IT_RUNS == ("device", "threads")
    assert run_key(RunDescription(_pgd(11), config, INPUTS, SETTINGS).identity("cpu")) != key
    # a field added to the description counts in the identity unless declared as changing no number
    plain = RunDescription.to_dict
    monkeypatch.setattr(RunDescription, "to_dict", lambda self: {**plain(self), "new_option": 1})
    assert run_key(RunDescription(_pgd(), config, INPUTS, SETTINGS).identity("cpu")) != key


def test_the_cli_report_config_is_the_run_description(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVGRAD_STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--attack",
            "fgsm",
            "--eps",
            "0,0.1",
            "--limit",
            "20",
            "--target",
            "2",
            "--fail-under",
            "fgsm@0.1=0",
            "--json",
            "-",
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads(result.stdout)["config"]
    assert list(config) == [
        "early_stop",
        "inputs",
        "attacks",
        "target",
        "eps",
        "norm",
        "gates",
        "strict",
        "outputs",
        "config_file",
        "threads",
    ]
    assert config["target"] == "2" and config["gates"] == ["fgsm@0.1=0"] and config["inputs"]["limit"] == 20
