"""The `advgrad` application: `python -m advgrad`, help texts, version."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import invoke

import advgrad


@pytest.mark.slow
def test_python_dash_m_advgrad_help():
    result = subprocess.run([sys.executable, "-m", "advgrad", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for command in ("attack", "eval", "grad"):
        assert command in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["attack", "eval", "grad"])
def test_every_command_has_help_with_an_example(command):
    result = invoke([command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.stdout and f"advgrad {command}" in result.stdout
    for option in ("--model", "--data", "--limit", "--batch-size", "--seed", "--device", "--json"):
        assert option in result.stdout


@pytest.mark.parametrize("command", ["attack", "eval"])
def test_attack_options_are_named_the_same_in_attack_and_eval(command):
    result = invoke([command, "--help"])
    for option in ("--eps", "--norm", "--steps", "--step-size", "--restarts", "--target", "--random-start"):
        assert option in result.stdout


def test_version():
    result = invoke(["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"advgrad {advgrad.__version__}"


def test_unknown_command_is_a_usage_error():
    result = invoke(["attak"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
