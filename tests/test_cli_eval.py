"""`advgrad eval` through Typer's CliRunner: the robustness curve as JSON, table and plot."""

from __future__ import annotations

import json

import pytest
from helpers import INPUT_ERRORS, assert_bad_input, invoke, is_png, listing

DEFAULT_LINF = [0, 0.02, 0.05, 0.1, 0.2, 0.3]


def _json(args):
    result = invoke(["eval", *args, "--json", "-"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # stdout holds the JSON and nothing else


def _check_schema(report, attacks, eps):
    assert report["n_samples"] > 0 and 0 <= report["clean_accuracy"] <= 1
    assert list(report["attacks"]) == attacks
    for curve in report["attacks"].values():
        points = curve["points"]
        assert [p["eps"] for p in points] == pytest.approx(eps)
        assert all({"eps", "accuracy"} <= set(p) for p in points)
        accuracy = [p["accuracy"] for p in points]
        assert all(a >= b for a, b in zip(accuracy, accuracy[1:], strict=False))
        if eps[0] == 0:
            assert accuracy[0] == report["clean_accuracy"]


def test_no_options_at_all_runs_fgsm_and_pgd_on_the_default():
    result = invoke(["eval"])
    assert result.exit_code == 0, result.stderr
    assert "clean accuracy" in result.stdout and "fgsm" in result.stdout and "pgd" in result.stdout
    assert "450 samples" in result.stderr


def test_json_schema_on_the_default_grid():
    report = _json(["--limit", "32"])
    _check_schema(report, ["fgsm", "pgd"], DEFAULT_LINF)
    assert report["n_samples"] == 32
    assert report["norm"] == "inf"
    assert report["schema_version"] >= 1


def test_l2_default_grid():
    report = _json(["--norm", "2", "--attack", "fgsm", "--limit", "16"])
    _check_schema(report, ["fgsm"], [0, 0.25, 0.5, 1, 1.5, 2])


@pytest.mark.parametrize(
    "eps, expected",
    [
        ("0,8/255,16/255", [0, 8 / 255, 16 / 255]),
        ("16/255, 0 ,8/255,8/255", [0, 8 / 255, 16 / 255]),  # sorted, duplicates dropped
        ("0.05", [0.05]),
    ],
)
def test_eps_lists_and_fractions(eps, expected):
    report = _json(["--attack", "fgsm", "--eps", eps, "--limit", "16"])
    _check_schema(report, ["fgsm"], expected)


def test_json_file_and_plot(tmp_path):
    args = [
        "eval",
        "--attack",
        "pgd,fgsm",
        "--eps",
        "0,0.1",
        "--steps",
        "3",
        "--limit",
        "16",
        "--json",
        tmp_path / "out" / "report.json",
        "--plot",
        tmp_path / "curve.png",
    ]
    result = invoke(args)
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    _check_schema(report, ["pgd", "fgsm"], [0, 0.1])
    assert report["attacks"]["pgd"]["params"]["steps"] == 3
    assert is_png(tmp_path / "curve.png")
    assert "clean accuracy" in result.stdout  # the table still goes to the terminal
    assert listing(tmp_path) == ["curve.png", "out", "out/report.json"]


def test_attack_options_reach_the_attacks():
    report = _json(
        [
            "--attack",
            "pgd",
            "--eps",
            "0.1",
            "--steps",
            "4",
            "--step-size",
            "1/255",
            "--restarts",
            "2",
            "--no-random-start",
            "--loss",
            "margin",
            "--limit",
            "8",
        ]
    )
    params = report["attacks"]["pgd"]["params"]
    assert params["steps"] == 4 and params["step_size"] == pytest.approx(1 / 255)
    assert params["restarts"] == 2 and params["random_start"] is False and params["loss"] == "margin"


def test_early_stop_does_not_change_fgsm_numbers():
    args = ["--attack", "fgsm", "--eps", "0,0.05,0.1,0.2", "--limit", "64"]
    with_stop, without = _json(args), _json([*args, "--no-early-stop"])
    passes = ("forward_samples", "backward_samples")  # the passes differ; the numbers stay
    points = [
        [{k: v for k, v in p.items() if k not in passes} for p in r["attacks"]["fgsm"]["points"]]
        for r in (with_stop, without)
    ]
    assert points[0] == points[1]
    assert without["config"]["early_stop"] is False


def test_same_seed_same_numbers():
    args = ["--attack", "pgd", "--eps", "0,0.1", "--steps", "3", "--limit", "32", "--seed", "7"]
    a, b = _json(args), _json(args)
    assert a["attacks"]["pgd"]["points"] == b["attacks"]["pgd"]["points"]


def test_tiny_eps_that_fools_nobody():
    report = _json(["--attack", "fgsm,pgd", "--eps", "0.0001", "--steps", "2", "--limit", "16"])
    for curve in report["attacks"].values():
        assert curve["points"][0]["accuracy"] == report["clean_accuracy"]
        assert curve["points"][0]["max_norm"] is None


def test_targeted_sweep():
    report = _json(["--attack", "pgd", "--eps", "0,0.2", "--steps", "5", "--target", "least-likely", "--limit", "16"])
    assert report["attacks"]["pgd"]["target"] == "least-likely"


@pytest.mark.parametrize("case_id, make, message", INPUT_ERRORS, ids=[c[0] for c in INPUT_ERRORS])
def test_bad_inputs(tmp_path, files, case_id, make, message):
    outputs = ["--json", tmp_path / "r" / "report.json", "--plot", tmp_path / "curve.png"]
    result = invoke(["eval", *make(files), *outputs])
    assert_bad_input(result, message)
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "options, message",
    [
        (["--eps", "-0.1"], "≥ 0"),
        (["--eps", "0,-1/255"], "≥ 0"),
        (["--eps", "abc"], "bad ε"),
        (["--eps", ","], "at least one ε"),
        (["--attack", "fgsm,nope"], "unknown attack"),
        (["--attack", ","], "at least one attack"),
        (["--norm", "7"], "unknown norm"),
        (["--norm", "1"], "does not support"),
        (["--steps", "0"], "steps"),
        (["--restarts", "0"], "restarts"),
        (["--step-size", "x"], "--step-size"),
        (["--loss", "hinge"], "unknown loss"),
        (["--target", "-2"], "--target"),
    ],
)
def test_bad_options(tmp_path, options, message):
    result = invoke(["eval", *options, "--json", tmp_path / "report.json"])
    assert_bad_input(result, message)
    assert listing(tmp_path) == []


# Output paths are checked before model and data are opened, so the error is the only line.
def test_plot_path_that_is_a_directory(tmp_path):
    result = invoke(["eval", "--attack", "fgsm", "--eps", "0.1", "--limit", "4", "--plot", tmp_path])
    assert_bad_input(result, "directory", after_loading=False)
    assert listing(tmp_path) == []


def test_plot_writes_the_format_its_name_asks_for_and_refuses_others(tmp_path):
    """--plot r.pdf writes a PDF (it wrote PNG data under that name); --plot r.gif is refused before
    the run, one line, exit 2."""
    from helpers import assert_bad_input

    result = invoke(["eval", "--limit", "20", "--attack", "fgsm", "--eps", "0,0.1", "--plot", tmp_path / "r.pdf"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"
    assert_bad_input(invoke(["eval", "--plot", tmp_path / "r.gif"]), "--plot")
    assert not (tmp_path / "r.gif").exists()
