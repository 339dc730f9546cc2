"""`advgrad attack` through Typer's CliRunner: output, files, and bad input."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import INPUT_ERRORS, assert_bad_input, assert_inside, invoke, is_png, listing

SUMMARY_KEYS = {
    "attack",
    "norm",
    "eps",
    "n_samples",
    "clean_accuracy",
    "accuracy",
    "attacked",
    "successes",
    "success_rate",
    "mean_norm",
    "max_norm",
    "target",
    "params",
    "seed",
    "early_stop",
}


def test_default_json_summary():
    result = invoke(["attack", "--limit", "16", "--json", "-"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)  # stdout holds the JSON and nothing else
    assert SUMMARY_KEYS <= set(report)
    assert report["attack"] == "pgd" and report["norm"] == "inf" and report["eps"] == pytest.approx(0.1)
    assert report["n_samples"] == 16
    assert report["early_stop"] is False  # the full step budget unless asked
    assert report["params"]["steps"] == 20 and report["params"]["step_size"] == pytest.approx(2.5 * 0.1 / 20)
    assert 0 <= report["accuracy"] <= report["clean_accuracy"] <= 1
    assert report["max_norm"] <= 0.1 + 1e-6
    assert "model:" in result.stderr  # messages go to stderr


def test_table_output():
    result = invoke(["attack", "--method", "fgsm", "--limit", "8"])
    assert result.exit_code == 0, result.stderr
    for text in ("clean accuracy", "accuracy under attack", "success rate", "fgsm"):
        assert text in result.stdout


@pytest.mark.parametrize("norm, eps, eps_value", [("inf", "8/255", 8 / 255), ("2", "0.5", 0.5)])
def test_out_file_holds_the_examples(tmp_path, norm, eps, eps_value, digits_model):
    out = tmp_path / "sub" / "adv.pt"
    args = [
        "attack",
        "--method",
        "pgd",
        "--eps",
        eps,
        "--norm",
        norm,
        "--steps",
        "3",
        "--step-size",
        "1/255",
        "--restarts",
        "2",
        "--limit",
        "12",
        "--batch-size",
        "5",
        "--seed",
        "4",
        "--out",
        out,
    ]
    result = invoke(args)
    assert result.exit_code == 0, result.stderr
    data = torch.load(out, weights_only=True)
    assert {"x", "x_adv", "y", "pred_clean", "pred_adv", "params"} <= set(data)
    x, x_adv = data["x"], data["x_adv"]
    assert x.shape == x_adv.shape == (12, 1, 8, 8) and data["y"].shape == (12,)
    assert_inside(x_adv, x, eps_value, norm)
    with torch.no_grad():
        assert torch.equal(data["pred_adv"], digits_model(x_adv).argmax(1))
        assert torch.equal(data["pred_clean"], digits_model(x).argmax(1))
    assert data["params"] == {
        "steps": 3,
        "step_size": pytest.approx(1 / 255),
        "random_start": True,
        "restarts": 2,
        "loss": "ce",
        "eot": 1,
    }
    assert listing(tmp_path) == ["sub", "sub/adv.pt"]  # no temporary file left behind


def test_same_seed_same_file(tmp_path):
    for name in ("a.pt", "b.pt"):
        result = invoke(["attack", "--limit", "8", "--steps", "2", "--seed", "9", "--out", tmp_path / name])
        assert result.exit_code == 0, result.stderr
    a, b = torch.load(tmp_path / "a.pt", weights_only=True), torch.load(tmp_path / "b.pt", weights_only=True)
    assert torch.equal(a["x_adv"], b["x_adv"])


def test_images(tmp_path):
    result = invoke(["attack", "--method", "fgsm", "--limit", "6", "--images", tmp_path / "img"])
    assert result.exit_code == 0, result.stderr
    assert is_png(tmp_path / "img" / "adversarial.png")


def test_targeted(tmp_path):
    result = invoke(
        [
            "attack",
            "--target",
            "3",
            "--eps",
            "0.3",
            "--steps",
            "10",
            "--limit",
            "20",
            "--json",
            "-",
            "--out",
            tmp_path / "t.pt",
        ]
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    data = torch.load(tmp_path / "t.pt", weights_only=True)
    assert report["target"] == "3" and torch.equal(data["target"], torch.full((20,), 3))
    attacked = (data["pred_clean"] == data["y"]) & (data["y"] != 3)
    assert report["attacked"] == int(attacked.sum())
    assert report["successes"] == int((attacked & (data["pred_adv"] == 3)).sum()) > 0


def test_options_an_attack_does_not_take_are_reported():
    result = invoke(["attack", "--method", "fgsm", "--steps", "5", "--limit", "4", "--json", "-"])
    assert result.exit_code == 0
    assert "does not use --steps" in result.stderr
    json.loads(result.stdout)


def test_early_stop_is_recorded():
    result = invoke(["attack", "--early-stop", "--limit", "4", "--json", "-"])
    assert result.exit_code == 0 and json.loads(result.stdout)["early_stop"] is True


@pytest.mark.parametrize("case_id, make, message", INPUT_ERRORS, ids=[c[0] for c in INPUT_ERRORS])
def test_bad_inputs(tmp_path, files, case_id, make, message):
    outputs = ["--out", tmp_path / "o" / "adv.pt", "--images", tmp_path / "img", "--json", tmp_path / "r.json"]
    result = invoke(["attack", *make(files), *outputs])
    assert_bad_input(result, message)
    assert listing(tmp_path) == []  # nothing written, not even a folder or a temporary file


@pytest.mark.parametrize(
    "options, message",
    [
        (["--eps", "-1"], "≥ 0"),
        (["--eps", "abc"], "bad ε"),
        (["--eps", "8/255,16/255"], "bad ε"),
        (["--eps", "1/0"], "bad ε"),
        (["--method", "deepfool9"], "unknown attack"),
        (["--norm", "3"], "unknown norm"),
        (["--method", "fgsm", "--norm", "1"], "does not support"),
        (["--steps", "0"], "steps"),
        (["--restarts", "0"], "restarts"),
        (["--step-size", "-0.1"], "step-size"),
        (["--loss", "hinge"], "unknown loss"),
        (["--target", "abc"], "--target"),
    ],
)
def test_bad_options(tmp_path, options, message):
    result = invoke(["attack", *options, "--out", tmp_path / "adv.pt"])
    assert_bad_input(result, message)
    assert listing(tmp_path) == []


def test_target_class_the_model_does_not_have(tmp_path):
    result = invoke(["attack", "--target", "12", "--limit", "4", "--out", tmp_path / "adv.pt"])
    assert_bad_input(result, "not a class", after_loading=True)
    assert listing(tmp_path) == []


def test_out_path_that_is_a_directory(tmp_path):
    result = invoke(["attack", "--limit", "2", "--steps", "1", "--out", tmp_path])
    assert_bad_input(result, "directory", after_loading=True)
    assert listing(tmp_path) == []


def test_images_given_a_picture_name_writes_that_file_in_its_format(tmp_path):
    """--images adv.svg writes the grid as that one SVG file; --images DIR keeps DIR/adversarial.png."""
    args = ["attack", "--method", "fgsm", "--eps", "0.1", "--limit", "4"]
    result = invoke([*args, "--images", tmp_path / "adv.svg"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "adv.svg").is_file() and "<svg" in (tmp_path / "adv.svg").read_text()
    result = invoke([*args, "--images", tmp_path / "grid"])
    assert result.exit_code == 0, result.output
    assert is_png(tmp_path / "grid" / "adversarial.png")
