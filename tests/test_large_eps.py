"""ε larger than the input box itself is almost always a k/255 slip: a warning, and the run goes on
(issue 9, item 7)."""

from __future__ import annotations

import json
import math

import pytest
from loading_fixtures import run_cli

from advgrad.core.geometry import get_geometry
from advgrad.core.threat import eps_beyond_box

FAST = ["--limit", "8", "--device", "cpu"]


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: ε")]


def test_box_diameter():
    assert get_geometry("inf").box_diameter(64) == 1
    assert get_geometry("2").box_diameter(64) == 8
    assert get_geometry("1").box_diameter(64) == 64


@pytest.mark.parametrize(
    ("norm", "eps", "features", "fires", "suggests"),
    [
        ("inf", [8.0], 64, True, "8/255"),
        ("inf", [1.5], 64, True, None),
        ("inf", [0.0, 1.0, 8 / 255], 64, False, None),
        ("inf", [256.0], 64, True, None),
        ("2", [8.0], 64, False, None),
        ("2", [9.0], 64, True, "9/255"),
        ("2", [math.sqrt(3 * 32 * 32) * 1.01], 3 * 32 * 32, True, None),
        ("1", [64.0], 64, False, None),
        ("1", [65.0], 64, True, "65/255"),
    ],
)
def test_eps_beyond_box(norm, eps, features, fires, suggests):
    message = eps_beyond_box(norm, eps, features)
    assert (message is not None) == fires, message
    if suggests:
        assert f"did you mean {suggests}?" in message
    elif message:
        assert "did you mean" not in message


def test_attack_warns_once_and_runs_on():
    result = run_cli("attack", "--method", "fgsm", "--eps", "8", *FAST, "--json", "-")
    assert result.exit_code == 0, result.stderr
    warnings = _warnings(result.stderr)
    assert len(warnings) == 1 and "did you mean 8/255?" in warnings[0], result.stderr
    assert json.loads(result.stdout)["eps"] == 8


def test_eval_warns_about_every_large_eps_in_one_line():
    result = run_cli("eval", "--attack", "fgsm", "--eps", "0,8/255,4,16", *FAST, "--json", "-")
    assert result.exit_code == 0, result.stderr
    warnings = _warnings(result.stderr)
    assert len(warnings) == 1 and "4, 16" in warnings[0] and "did you mean 4/255 or 16/255?" in warnings[0]
    assert [p["eps"] for p in json.loads(result.stdout)["attacks"]["fgsm"]["points"]] == [0, 8 / 255, 4, 16]


def test_l2_uses_the_box_diameter():
    quiet = run_cli("eval", "--attack", "pgd", "--norm", "2", "--steps", "1", "--eps", "0,8", *FAST)
    assert quiet.exit_code == 0 and _warnings(quiet.stderr) == [], quiet.stderr
    loud = run_cli("eval", "--attack", "pgd", "--norm", "2", "--steps", "1", "--eps", "0,9", *FAST)
    assert loud.exit_code == 0 and len(_warnings(loud.stderr)) == 1, loud.stderr


def test_usual_eps_values_do_not_warn():
    result = run_cli("eval", "--attack", "fgsm", "--eps", "0,8/255,1", *FAST)
    assert result.exit_code == 0 and _warnings(result.stderr) == [], result.stderr
