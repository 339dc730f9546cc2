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


def test_advgrad_alone_shows_the_help_and_exits_0():
    """No command is a question, not a failure: exit 1 is for failed gates, 2 for bad usage."""
    result = invoke([])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout and "eval" in result.stdout


def test_autoattacks_version_is_aa_version_and_the_old_spelling_says_so():
    from helpers import assert_bad_input

    help_text = invoke(["eval", "--help"]).stdout
    assert "--aa-version" in help_text and "--version " not in help_text
    line = assert_bad_input(invoke(["eval", "--attack", "autoattack", "--version", "standard"]))
    assert "--aa-version" in line and "advgrad --version" in line
    assert assert_bad_input(invoke(["eval", "--aa-version", "fast", "--attack", "autoattack"]), "--aa-version")


def test_aa_version_is_the_flag_every_listing_and_message_uses():
    """The flag a field declares (``param(flag=...)``) is the option, the listing's name and how the
    console spells the parameter in messages (its table of exceptions is kept in step here)."""
    from advgrad.attacks import list_attacks
    from advgrad.attacks.options import collect_options
    from advgrad.cli.console import flag

    renamed = [o for o in collect_options() if o.spelled]
    assert [o.flag for o in renamed] == ["--aa-version"]
    assert all(flag(o.name) == o.flag for o in collect_options())
    options = {row["option"] for spec in list_attacks() for row in spec.params_type.describe()}
    assert "--aa-version" in options and "--version" not in options


def test_a_config_with_the_old_key_names_the_new_one(tmp_path):
    from helpers import assert_bad_input

    config = tmp_path / "c.toml"
    config.write_text('attack = "autoattack"\nversion = "standard"\n')
    assert_bad_input(invoke(["eval", "--config", config]), "is now 'aa-version'")


@pytest.mark.parametrize(("typed", "suggested"), [("--epsilon", "--eps"), ("--atack", "--attack")])
def test_a_misspelt_option_gets_the_option_it_spells_out(typed, suggested):
    from helpers import assert_bad_input

    assert_bad_input(invoke(["eval", typed, "0.1"]), f"did you mean {suggested}?")
