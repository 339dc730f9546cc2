"""``advgrad info``: what was loaded, checked against answers worked out by hand."""

from __future__ import annotations

import json

import factory_models as fm
import torch
from loading_fixtures import assert_bad_input, run_cli, save_tensors, write_image_folder

# TinyNet(channels=1, classes=10, width=4): conv 4·1·3·3 + 4 = 40, batch norm 4 + 4 = 8,
# head (4·2·2)·10 + 10 = 170 → 218 parameters.
TINY_PARAMETERS = 218


def info_json(*args) -> dict:
    result = run_cli("info", "--device", "cpu", "--json", "-", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_info_reports_model_data_and_probe_accuracy(tmp_path):
    x = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    model = fm.make(seed=1).eval()
    with torch.no_grad():
        pred = model(x).argmax(1)
    y = pred.clone()
    y[:5] = (pred[:5] + 1) % 10  # the first five are wrong by construction, the rest right
    data = save_tensors(tmp_path / "d.pt", x, y)
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    report = info_json("--model", "factory_models:make", "--weights", weights, "--data", data, "--batch-size", "10")
    assert report["model"]["kind"] == "factory"
    assert report["model"]["parameters"] == TINY_PARAMETERS
    assert report["model"]["normalization"] is None
    assert report["model"]["output"] == "the output tensor"
    assert report["input_shape"] == [1, 8, 8] and report["num_classes"] == 10 and report["device"] == "cpu"
    assert report["data"]["samples"] == 20 and report["data"]["total_samples"] == 20
    # the probe batch is the first batch (10 samples): 5 wrong, 5 right
    assert report["probe"] == {"samples": 10, "correct": 5, "clean_accuracy": 0.5}
    assert report["warnings"] == []


def test_info_names_normalisation_and_logits_rule(tmp_path):
    report = info_json(
        "--model",
        "factory_models:make_dict",
        "--model-arg",
        "channels=3",
        "--mean",
        "0.1,0.2,0.3",
        "--std",
        "0.5,0.5,0.5",
        "--data",
        write_image_folder(tmp_path / "imgs", {"x": 2}),
    )
    assert report["model"]["normalization"] == {
        "mean": [0.1, 0.2, 0.3],
        "std": [0.5, 0.5, 0.5],
        "source": "--mean/--std",
    }
    assert report["model"]["output"] == "the 'logits' entry of the returned mapping"
    assert report["model"]["model_args"] == {"channels": 3}
    assert report["data"]["class_names"] == ["x"]
    assert any("the data has 1 classes but the model outputs 10" in w for w in report["warnings"])


def test_info_table_on_the_default():
    # DigitsCNN: conv 1·16·9+16 = 160, conv 16·32·9+32 = 4,640, linear 512·64+64 = 32,832, linear 64·10+10 = 650
    result = run_cli("info", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    for text in (
        "kind",
        "default",
        "parameters",
        "38,282",
        "1×8×8",
        "classes",
        "normalisation",
        "none",
        "clean accuracy (probe batch)",
        "cpu",
    ):
        assert text in result.stdout, text


def test_info_bad_input_is_one_line():
    assert_bad_input(run_cli("info", "--model", "factory_models:nothing"), "has no attribute nothing")


def test_info_help_has_an_example():
    result = run_cli("info", "--help")
    assert result.exit_code == 0 and "Example: advgrad info" in result.stdout
    assert "--unsafe-pickle" in result.stdout and "arbitrary code" in result.stdout
