"""Gates (advgrad/verdicts/gates.py and `advgrad eval --fail-under`): parsing, matching ε, exit codes."""

from __future__ import annotations

import json

import pytest
from report_helpers import crafted
from typer.testing import CliRunner

import advgrad.evaluation.run as run_module
from advgrad.cli import app
from advgrad.core.errors import UsageError
from advgrad.verdicts.gates import evaluate_gates, parse_gate, parse_gates, parse_share

runner = CliRunner()


def test_parse_gate_forms():
    g = parse_gate("pgd@8/255=0.40")
    assert (g.attack, g.eps, g.threshold) == ("pgd", 8 / 255, 0.40)
    assert parse_gate(" PGD @ 0.1 = 40% ").threshold == pytest.approx(0.40)
    assert parse_gate("fgsm@0.1=2/5").threshold == pytest.approx(0.4)
    assert parse_gate("clean=0.95") == parse_gate("clean=0.95")
    assert parse_gate("clean=0.95").eps is None


@pytest.mark.parametrize(
    "text",
    [
        "pgd",
        "pgd@0.1",
        "pgd=0.4",
        "@0.1=0.4",
        "pgd@=0.4",
        "pgd@0.1=",
        "pgd@0.1=1.5",
        "pgd@-1=0.4",
        "pgd@x=0.4",
        "pgd@0.1=abc",
        "pgd@0.1=-0.1",
    ],
)
def test_bad_gates_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse_gate(text)


def test_parse_share():
    assert parse_share("2%", "x") == pytest.approx(0.02)
    assert parse_share("0.02", "x") == 0.02
    with pytest.raises(UsageError):
        parse_share("120%", "x")


def test_gates_on_a_crafted_report():
    report = crafted({"fgsm": [95, 60, 20], "pgd": [95, 40, 10]}, eps=(0.0, 8 / 255, 16 / 255))
    results = evaluate_gates(
        report, parse_gates(["pgd@8/255=0.40", "pgd@0.0314=0.41", "fgsm@16/255=0.25", "clean=0.95", "clean=96%"])
    )
    assert [r.passed for r in results] == [True, False, False, True, False]
    assert [r.accuracy for r in results] == [0.40, 0.40, 0.20, 0.95, 0.95]
    assert results[1].eps == 8 / 255  # 0.0314 matched the report's 8/255


def test_gate_on_missing_attack_or_eps_is_a_usage_error():
    report = crafted({"pgd": [95, 40, 10]})
    with pytest.raises(UsageError, match="apgd"):
        evaluate_gates(report, parse_gates(["apgd@0.1=0.3"]))
    with pytest.raises(UsageError, match="not among"):
        evaluate_gates(report, parse_gates(["pgd@0.15=0.3"]))
    with pytest.raises(UsageError):
        evaluate_gates(report, parse_gates(["pgd@0.11=0.3"]))  # 10% off is not a tolerance matter


@pytest.fixture
def crafted_eval(monkeypatch, tmp_path):
    """`advgrad eval` on a crafted report: evaluate() is replaced, everything after it is real."""
    monkeypatch.setenv("ADVGRAD_STATE_DIR", str(tmp_path / "state"))
    report = crafted({"fgsm": [95, 60, 20], "pgd": [95, 40, 10]}, eps=(0.0, 0.1, 0.2))
    monkeypatch.setattr(run_module, "evaluate", lambda *args, **kwargs: report)  # the sweep run_sweep calls
    return ["eval", "--attack", "fgsm,pgd", "--eps", "0,0.1,0.2", "--limit", "10"]


def test_cli_gates_exit_codes_on_a_crafted_report(crafted_eval, tmp_path):
    ok = runner.invoke(app, crafted_eval + ["--fail-under", "pgd@0.1=0.40", "--fail-under", "clean=0.9"])
    assert ok.exit_code == 0, ok.output
    assert "FAILED" not in ok.stderr
    fail = runner.invoke(
        app,
        crafted_eval
        + [
            "--fail-under",
            "pgd@0.1=0.41",
            "--fail-under",
            "fgsm@0.2=0.5",
            "--fail-under",
            "fgsm@0.1=0.5",
            "--json",
            str(tmp_path / "r.json"),
        ],
    )
    assert fail.exit_code == 1
    assert "pgd at ε=0.1" in fail.stderr and "fgsm at ε=0.2" in fail.stderr
    assert "2 gates failed" in fail.stderr
    gates = json.loads((tmp_path / "r.json").read_text())["gates"]  # outputs are written before exiting 1
    assert [g["passed"] for g in gates] == [False, False, True]


@pytest.mark.parametrize("gate", ["apgd@0.1=0.4", "pgd@0.3=0.4", "pgd@0.1", "pgd@0.1=4"])
def test_cli_bad_gate_is_exit_2_before_running(crafted_eval, gate, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the run should not start")

    monkeypatch.setattr(run_module, "evaluate", fail)
    result = runner.invoke(app, crafted_eval + ["--fail-under", gate])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1


def test_cli_gates_on_a_real_run(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVGRAD_STATE_DIR", str(tmp_path / "state"))
    base = ["eval", "--attack", "fgsm", "--eps", "0,0.5", "--limit", "30"]
    # the first 30 embedded test digits are all classified correctly; FGSM at ε=0.5 fools most
    assert runner.invoke(app, base + ["--fail-under", "fgsm@0=1.0", "--fail-under", "clean=1"]).exit_code == 0
    result = runner.invoke(app, base + ["--fail-under", "fgsm@0.5=0.9"])
    assert result.exit_code == 1 and "fgsm at ε=0.5" in result.stderr
