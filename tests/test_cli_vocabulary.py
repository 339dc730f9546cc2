"""One vocabulary across commands: --attack and --method are one option in `attack` and `eval`;
a near miss (of an option or an attack name) gets one line with a suggestion and exit 2."""

from __future__ import annotations

import json

import pytest
from helpers import assert_bad_input, invoke


@pytest.mark.parametrize("flag", ["--attack", "--method", "-a"])
def test_attack_takes_both_spellings(flag):
    result = invoke(["attack", flag, "fgsm", "--limit", "8", "--json", "-"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["attack"] == "fgsm"


@pytest.mark.parametrize("flag", ["--attack", "--method", "-a"])
def test_eval_takes_both_spellings(flag):
    result = invoke(["eval", flag, "fgsm,bim", "--eps", "0,0.1", "--limit", "8", "--json", "-"])
    assert result.exit_code == 0, result.stderr
    assert list(json.loads(result.stdout)["attacks"]) == ["fgsm", "bim"]


@pytest.mark.parametrize("command", ["attack", "eval"])
def test_help_shows_both_spellings(command):
    result = invoke([command, "--help"])
    assert "--attack" in result.stdout and "--method" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "--atack", "pgd"], "no such option --atack; did you mean --attack?"),
        (["eval", "--metod", "pgd"], "no such option --metod; did you mean --method?"),
        (["attack", "--metod", "pgd"], "no such option --metod; did you mean --method?"),
        (["attack", "--step", "3"], "no such option --step; did you mean --steps?"),
        (["eval", "--zzzzzzzz"], "no such option --zzzzzzzz (see 'advgrad eval --help')"),
    ],
)
def test_a_misspelt_option_gets_a_suggestion(args, message):
    assert_bad_input(invoke(args), message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "--attack", "pdg"], "unknown attack 'pdg'; did you mean pgd?"),
        (["eval", "--method", "fgsm,squre"], "unknown attack 'squre'; did you mean square?"),
        (["attack", "--attack", "fsgm"], "unknown attack 'fsgm'; did you mean fgsm?"),
    ],
)
def test_a_misspelt_attack_gets_a_suggestion(args, message):
    assert_bad_input(invoke(args), message)


@pytest.mark.parametrize("args", [["evl"], ["eval", "--limit", "x"], ["compare"], ["eval", "--eps"]])
def test_other_usage_errors_are_one_line(args):
    assert_bad_input(invoke(args))
