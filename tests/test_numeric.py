"""Every numeric option is checked: finite, in range, whole where it counts (issue 9, item 6).

Each bad value is refused before any work with one line on stderr and exit 2, on the command
line, in a config file and in the attacks' parameter dataclasses.
"""

from __future__ import annotations

import math

import pytest
from loading_fixtures import run_cli

from advgrad.attacks import get_attack, list_attacks
from advgrad.core.errors import UsageError
from advgrad.core.numeric import check_number

FAST = ["--limit", "8", "--device", "cpu"]


def assert_refused(result, *needles: str) -> None:
    """Exit 2, no traceback, nothing on stdout, and the last line on stderr is one error line."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), lines
    assert len(lines) == 1 or (len(lines) == 2 and lines[0].startswith("model: ")), lines
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])


# (method, option, bad values): the values the issue lists, and NaN, ±∞ and negative for each.
ATTACK_OPTIONS = [
    ("mifgsm", "--momentum", ["nan", "inf", "-inf", "-0.5"]),
    ("pgd", "--momentum", ["nan", "inf"]),  # refused even where the chosen attack does not take it
    ("pgd", "--steps", ["-3", "0"]),
    ("pgd", "--restarts", ["-1", "0"]),
    ("pgd", "--step-size", ["nan", "inf", "-1", "0"]),
    ("square", "--queries", ["-5", "0"]),
    ("square", "--p-init", ["nan", "inf", "-0.1", "0", "1.5"]),
    ("deepfool", "--overshoot", ["nan", "inf", "-1"]),
    ("apgd-t", "--target-classes", ["-1", "0"]),
    ("apgd", "--momentum", ["nan", "0", "2"]),
]


@pytest.mark.parametrize(("method", "option", "value"), [(m, o, v) for m, o, values in ATTACK_OPTIONS for v in values])
@pytest.mark.parametrize("command", ["attack", "eval"])
def test_bad_attack_option_values_are_refused(command, method, option, value):
    picks = ["--method", method] if command == "attack" else ["--attack", method, "--eps", "0,0.1"]
    assert_refused(run_cli(command, *picks, *FAST, option, value), option.lstrip("-"))


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--confidence", "nan"),
        ("--confidence", "inf"),
        ("--confidence", "-1"),
        ("--initial-const", "nan"),
        ("--initial-const", "0"),
        ("--initial-const", "-1"),
        ("--binary-steps", "0"),
        ("--binary-steps", "-2"),
        ("--steps", "-1"),
    ],
)
def test_bad_cw_option_values_are_refused(option, value):
    assert_refused(run_cli("attack", "--method", "cw", "--norm", "2", *FAST, option, value), option.lstrip("-"))


def test_steps_bound_is_stated_the_same_for_zero_and_negative():
    zero = run_cli("attack", "--method", "pgd", *FAST, "--steps", "0")
    negative = run_cli("attack", "--method", "pgd", *FAST, "--steps", "-3")
    assert_refused(zero, "--steps must be ≥ 1, got 0")
    assert_refused(negative, "--steps must be ≥ 1, got -3")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1"])
def test_eps_values(value):
    assert_refused(run_cli("attack", "--method", "fgsm", *FAST, "--eps", value), "ε")
    assert_refused(run_cli("eval", "--attack", "fgsm", *FAST, "--eps", f"0,{value}"), "ε")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--seed", "-1"),
        ("--batch-size", "0"),
        ("--batch-size", "-4"),
        ("--num-workers", "-1"),
        ("--image-size", "0"),
        ("--image-size", "-8"),
        ("--limit", "-1"),
    ],
)
@pytest.mark.parametrize("command", ["attack", "eval", "grad", "info"])
def test_bad_input_option_values_are_refused(command, option, value):
    assert_refused(run_cli(command, *FAST, option, value), option)


@pytest.mark.parametrize(("mean", "std"), [("nan", "1"), ("0.5", "inf"), ("0.5", "0"), ("0.5", "-1"), ("inf", "1")])
def test_bad_mean_std(mean, std):
    assert_refused(run_cli("info", *FAST, "--mean", mean, "--std", std))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1"])
def test_grad_check_tolerance(value):
    assert_refused(run_cli("grad", *FAST, "--check", "--tolerance", value), "--tolerance")


@pytest.mark.parametrize(("option", "value"), [("--show", "-1"), ("--coordinates", "0"), ("--coordinates", "-1")])
def test_grad_counts(option, value):
    assert_refused(run_cli("grad", *FAST, option, value), option)


@pytest.mark.parametrize("value", ["nan", "inf", "-0.1", "2"])
def test_fail_under_and_max_drop_shares(value, tmp_path):
    assert_refused(run_cli("eval", "--attack", "fgsm", *FAST, "--eps", "0,0.1", "--fail-under", f"fgsm@0.1={value}"))
    report = tmp_path / "r.json"
    assert run_cli("eval", "--attack", "fgsm", *FAST, "--eps", "0,0.1", "--json", report).exit_code == 0
    assert_refused(run_cli("compare", report, report, "--max-drop", value), "--max-drop")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("limit = true", "limit: must be a whole number, got true"),
        ("limit = 2.5", "limit: must be a whole number"),
        ("limit = '8'", "limit: must be a whole number"),
        ("steps = true", "steps: must be a whole number"),
        ("steps = nan", "steps: must be a whole number"),
        ("batch-size = 1e3", "batch-size: must be a whole number"),
        ("momentum = nan", "momentum: must be a finite number"),
        ("momentum = inf", "momentum: must be a finite number"),
        ("momentum = true", "momentum: must be a number"),
        ("momentum = '0.5'", "momentum: must be a number"),
        ("[attacks]\nsteps = -3", "--steps must be ≥ 1"),
        ("seed = -1", "--seed must be ≥ 0"),
        ("eps = true", "eps"),
    ],
)
def test_config_values_have_strict_types(tmp_path, body, needle):
    config = tmp_path / "run.toml"
    config.write_text(body + "\n")
    args = ["eval", "--config", config, "--attack", "mifgsm", "--eps", "0,0.1", "--device", "cpu"]
    if "limit" not in body:
        args += ["--limit", "8"]
    assert_refused(run_cli(*args), needle)


def test_config_good_numbers_still_work(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("limit = 8\nsteps = 2\nmomentum = 1\nbatch-size = 4\n")
    result = run_cli("eval", "--config", config, "--attack", "mifgsm", "--eps", "0,0.1", "--device", "cpu")
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("spec", list_attacks(), ids=lambda s: s.name)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1])
def test_every_numeric_attack_parameter_refuses_non_finite_and_negative(spec, bad):
    from dataclasses import fields

    numeric = [
        f.name for f in fields(spec.params_type) if "float" in str(f.type) or str(f.type) in ("int", "int | None")
    ]
    assert numeric, spec.name
    for name in numeric:
        value = bad if "float" in str(next(f.type for f in fields(spec.params_type) if f.name == name)) else -1
        with pytest.raises(UsageError, match=f"`{name}`"):  # the library names the parameter, the CLI its flag
            spec.params_type(**{name: value}).validate()


@pytest.mark.parametrize("value", [True, 2.5, "3"])
def test_int_parameters_take_whole_numbers_only(value):
    with pytest.raises(UsageError, match="whole number"):
        get_attack("pgd").params_type(steps=value).validate()


def test_check_number():
    check_number(3, "--n", integer=True, minimum=1)
    check_number(0.5, "--x", above=0, maximum=1)
    for bad, kwargs in [
        (math.nan, {}),
        (math.inf, {}),
        (True, {}),
        ("1", {}),
        (1.5, {"integer": True}),
        (0, {"above": 0}),
        (-1, {"minimum": 0}),
        (2, {"maximum": 1}),
    ]:
        with pytest.raises(UsageError, match="--x"):
            check_number(bad, "--x", **kwargs)


def test_check_number_states_values_a_file_can_hold_in_one_short_line():
    with pytest.raises(UsageError, match=r"^--x must be ≤ 4096, got a number beyond ±1e\+300$"):
        check_number(10**400, "--x", integer=True, maximum=4096)  # JSON reads this as an int, too large for a float
    with pytest.raises(UsageError) as info:
        check_number([0.5] * 100_000, "--x")
    assert len(str(info.value)) < 120 and str(info.value).endswith("...")
