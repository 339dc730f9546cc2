"""The command line for the attacks: `advgrad attacks`, every attack through `attack` and `eval`,
the attack options, and the minimal-attack curve in `eval`."""

from __future__ import annotations

import dataclasses
import json

import pytest
import typer
from typer.testing import CliRunner

from advgrad.attacks import list_attacks
from advgrad.cli import app

ATTACKS = list_attacks()
# Small budgets so that every attack runs in a blink; each attack takes the ones it knows.
FAST = [
    "--steps",
    "3",
    "--queries",
    "20",
    "--survivor-queries",
    "10",
    "--binary-steps",
    "2",
    "--target-classes",
    "2",
    "--limit",
    "12",
]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _json(result) -> dict:
    assert result.exit_code == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_attacks_lists_every_registered_attack(runner) -> None:
    result = runner.invoke(app, ["attacks"])
    assert result.exit_code == 0, result.stderr
    for spec in ATTACKS:
        assert spec.name in result.stdout
        assert spec.reference.split(",")[0] in result.stdout
    assert "--momentum" in result.stdout and "0.75" in result.stdout  # parameters with defaults


def test_attacks_listing_has_no_trailing_spaces(runner) -> None:
    """Every line of the listing ends where its text ends (it was padded to the terminal's width),
    and the text is all there: each attack's name and each of its options."""
    result = runner.invoke(app, ["attacks"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [n for n, line in enumerate(lines) if line != line.rstrip()] == []
    for spec in ATTACKS:
        assert any(line.startswith(f"{spec.name} ") for line in lines), spec.name
    assert sum("--steps" in line for line in lines) == sum(
        any(f.name == "steps" for f in dataclasses.fields(s.params_type)) for s in ATTACKS
    )


def test_attacks_json(runner) -> None:
    data = _json(runner.invoke(app, ["attacks", "--json", "-"]))
    by_name = {row["name"]: row for row in data["attacks"]}
    assert set(by_name) == {spec.name for spec in ATTACKS}
    for spec in ATTACKS:
        row = by_name[spec.name]
        assert row["norms"] == list(spec.norms)
        assert row["kind"] == spec.kind
        assert row["reference"] == spec.reference
        assert [p["name"] for p in row["params"]] == [f.name for f in dataclasses.fields(spec.params_type)]
    pgd = {p["name"]: p for p in by_name["pgd"]["params"]}
    assert pgd["steps"]["default"] == 20 and pgd["step_size"]["default"] == "2.5·ε/steps"
    assert by_name["cw"]["kind"] == "minimal" and by_name["square"]["kind"] == "score"


def test_attacks_pattern(runner) -> None:
    data = _json(runner.invoke(app, ["attacks", "apgd*", "--json", "-"]))
    assert [row["name"] for row in data["attacks"]] == ["apgd-ce", "apgd-dlr", "apgd-t"]
    bad = runner.invoke(app, ["attacks", "nothing*"])
    assert bad.exit_code == 2 and "no attack matches" in bad.stderr


@pytest.mark.parametrize("command", ["attack", "eval"])
def test_every_parameter_has_a_cli_option(command) -> None:
    """Each parameter of each attack can be set from the command line, by its own name (or the flag
    it declares, where its name would clash with a command's own option: ``--aa-version``)."""
    click_command = typer.main.get_command(app).commands[command]
    options = {p.name: p for p in click_command.params}
    for spec in ATTACKS:
        for f in dataclasses.fields(spec.params_type):
            flag = "--" + (f.metadata.get("flag") or f.name.replace("_", "-"))
            assert f.name in options, f"{spec.name}.{f.name} has no {flag} option"
            assert flag in options[f.name].opts


@pytest.mark.parametrize("spec", ATTACKS, ids=[s.name for s in ATTACKS])
def test_attack_command_runs_every_attack(runner, spec) -> None:
    norm = spec.norms[0]
    eps = {"inf": "0.2", "2": "1.5", "1": "4"}[norm]
    result = runner.invoke(app, ["attack", "--method", spec.name, "--norm", norm, "--eps", eps, *FAST, "--json", "-"])
    summary = _json(result)
    assert summary["attack"] == spec.name and summary["n_samples"] == 12
    assert summary["max_norm"] <= float(eps) * (1 + 1e-5)
    names = {f.name for f in dataclasses.fields(spec.params_type)}
    # every field; a preset may add what describes it (autoattack: reference, stages, as_published; constants)
    extra = {"reference", "stages", "as_published"} | set(spec.params_type.constants)
    assert names <= set(summary["params"]) and set(summary["params"]) - names <= extra
    for option in ("steps", "queries", "binary_steps", "target_classes"):
        if option in names:
            assert summary["params"][option] == (3 if option == "steps" else 20 if option == "queries" else 2)
        else:
            assert f"--{option.replace('_', '-')}" in result.stderr  # ignored, with a warning


@pytest.mark.parametrize("spec", ATTACKS, ids=[s.name for s in ATTACKS])
def test_eval_runs_every_attack(runner, spec) -> None:
    norm = spec.norms[0]
    eps = {"inf": "0,0.1,0.3", "2": "0,1,3", "1": "0,4,12"}[norm]
    report = _json(
        runner.invoke(app, ["eval", "--attack", spec.name, "--norm", norm, "--eps", eps, *FAST, "--json", "-"])
    )
    curve = report["attacks"][spec.name]
    accuracies = [p["accuracy"] for p in curve["points"]]
    assert accuracies[0] == report["clean_accuracy"]
    assert accuracies == sorted(accuracies, reverse=True)
    if spec.kind != "minimal":
        assert curve["median_norm"] is None  # (a minimal attack's median: see the next test)


def test_eval_minimal_attack_gives_curve_and_median(runner) -> None:
    result = runner.invoke(
        app, ["eval", "--attack", "deepfool,pgd", "--norm", "2", "--eps", "0,0.25,0.5,1", "--limit", "40"]
    )
    assert result.exit_code == 0, result.stderr
    assert "median ‖δ‖₂" in result.stdout
    report = _json(
        runner.invoke(
            app,
            ["eval", "--attack", "deepfool", "--norm", "2", "--eps", "0,0.25,0.5,1", "--limit", "40", "--json", "-"],
        )
    )
    curve = report["attacks"]["deepfool"]
    assert 0.1 < curve["median_norm"] < 1.0
    # Half of the attacked samples need more than the median: accuracy at ε just below it is ≥ 50%.
    below = [p for p in curve["points"] if 0 < p["eps"] < curve["median_norm"]]
    assert all(p["accuracy"] >= 0.5 * report["clean_accuracy"] - 1e-9 for p in below)
    assert curve["points"][-1]["max_norm"] <= 1.0


def test_attack_with_minimal_attack_stays_within_eps(runner) -> None:
    summary = _json(
        runner.invoke(
            app, ["attack", "--method", "deepfool", "--norm", "2", "--eps", "0.3", "--limit", "30", "--json", "-"]
        )
    )
    assert summary["max_norm"] <= 0.3 * (1 + 1e-6)
    assert 0 < summary["success_rate"] < 1


def test_new_options_reach_the_attack(runner) -> None:
    summary = _json(
        runner.invoke(app, ["attack", "--method", "mifgsm", "--momentum", "0.5", "--limit", "4", "--json", "-"])
    )
    assert summary["params"]["momentum"] == 0.5
    summary = _json(
        runner.invoke(
            app,
            [
                "attack",
                "--method",
                "cw",
                "--norm",
                "2",
                "--eps",
                "2",
                "--confidence",
                "1.5",
                "--binary-steps",
                "1",
                "--initial-const",
                "3",
                "--steps",
                "5",
                "--limit",
                "4",
                "--json",
                "-",
            ],
        )
    )
    assert summary["params"]["confidence"] == 1.5 and summary["params"]["initial_const"] == 3.0
    summary = _json(
        runner.invoke(
            app, ["attack", "--method", "square", "--p-init", "0.2", "--queries", "5", "--limit", "4", "--json", "-"]
        )
    )
    assert summary["params"]["p_init"] == 0.2
    summary = _json(
        runner.invoke(
            app, ["attack", "--method", "deepfool", "--norm", "2", "--overshoot", "0.1", "--limit", "4", "--json", "-"]
        )
    )
    assert summary["params"]["overshoot"] == 0.1


def test_eval_warns_about_options_no_attack_uses(runner) -> None:
    result = runner.invoke(
        app, ["eval", "--attack", "fgsm,pgd", "--queries", "5", "--steps", "2", "--limit", "4", "--eps", "0.1"]
    )
    assert result.exit_code == 0
    assert "--queries" in result.stderr and "--steps" not in result.stderr.split("uses")[-1]


@pytest.mark.parametrize(
    "args,message",
    [
        (["attack", "--method", "cw", "--norm", "inf"], "does not support the L"),
        (["eval", "--attack", "deepfool", "--norm", "1"], "does not support the L"),
        (["attack", "--method", "apgd-ce", "--momentum", "2"], "momentum"),
        (["attack", "--method", "square", "--queries", "0"], "queries"),
        (["attack", "--method", "cw", "--norm", "2", "--binary-steps", "0"], "binary-steps"),
        (["attack", "--method", "nope"], "unknown attack"),
    ],
)
def test_bad_options_exit_2(runner, args, message) -> None:
    result = runner.invoke(app, [*args, "--limit", "2"])
    assert result.exit_code == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_targeted_eval_and_attack(runner) -> None:
    report = _json(
        runner.invoke(
            app,
            [
                "eval",
                "--attack",
                "apgd-dlr,square,cw",
                "--norm",
                "2",
                "--eps",
                "0,3",
                "--target",
                "least-likely",
                *FAST,
                "--json",
                "-",
            ],
        )
    )
    for curve in report["attacks"].values():
        assert curve["target"] == "least-likely"
    summary = _json(
        runner.invoke(app, ["attack", "--method", "apgd-t", "--target", "2", "--eps", "0.5", *FAST, "--json", "-"])
    )
    assert summary["target"] == "2"


def test_docs_table_has_every_attack_and_option() -> None:
    """docs/attacks.md (also `advgrad docs attacks`) has a row per registered attack, and names
    every option the attacks' parameters give the command line."""
    from pathlib import Path

    from advgrad.attacks.options import collect_options

    text = (Path(__file__).resolve().parent.parent / "docs" / "attacks.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    for spec in ATTACKS:
        assert any(row.startswith(f"| `{spec.name}`") for row in rows), f"docs/attacks.md has no row for {spec.name}"
    for option in collect_options():
        assert f"`{option.flag}`" in text, f"docs/attacks.md does not mention {option.flag}"
