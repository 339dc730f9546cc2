"""The loading options on the command line: every bad input is one line and exit 2, nothing is
written; ε is in pixel units under --mean/--std; every command takes the same options."""

from __future__ import annotations

import json

import factory_models as fm
import numpy as np
import pytest
import torch
from loading_fixtures import (
    assert_bad_input,
    run_cli,
    save_tensors,
    truncate,
    write_image_folder,
    write_mnist,
)

import advgrad.io.data.tensorfiles as tensorfiles


@pytest.fixture
def files(tmp_path):
    """A small data file, a matching factory model's weights, and outputs that must not appear."""
    x = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(12) % 10
    return {
        "dir": tmp_path,
        "data": save_tensors(tmp_path / "data.pt", x, y),
        "weights": _save(fm.make(seed=1).state_dict(), tmp_path / "w.pt"),
        "out": tmp_path / "out" / "adv.pt",
        "json": tmp_path / "out" / "report.json",
    }


def _save(obj, path):
    torch.save(obj, path)
    return path


def attack_with(files, *args):
    """``advgrad attack`` asked to write two files; on bad input neither may appear."""
    return run_cli(
        "attack",
        "--method",
        "fgsm",
        "--eps",
        "0.1",
        "--out",
        files["out"],
        "--json",
        files["json"],
        "--device",
        "cpu",
        *args,
    )


def assert_nothing_written(files):
    assert not files["out"].exists() and not files["json"].exists()
    leftovers = list(files["dir"].rglob("*.tmp"))
    assert leftovers == [], leftovers


def bad(files, *args_and_needles, mid_run: bool = False):
    *args, needles = args_and_needles
    message = assert_bad_input(attack_with(files, *args), *needles, mid_run=mid_run)
    assert_nothing_written(files)
    return message


# ---------------------------------------------------------------------------------------------
# Each bad input of the issue: one clear line, exit 2, nothing half-written.


def test_missing_paths(files):
    bad(files, "--model", files["dir"] / "absent.pt2", ["absent.pt2: no such file"])
    bad(files, "--data", files["dir"] / "absent.npz", ["absent.npz: no such file"])
    bad(files, "--model", "factory_models:make", "--weights", files["dir"] / "absent.pt", ["absent.pt: no such file"])


def test_directory_where_a_file_was_expected(files):
    folder = files["dir"] / "folder.pt"
    folder.mkdir()
    bad(files, "--model", folder, ["is a directory"])
    bad(files, "--data", folder, ["is a directory"])
    bad(files, "--model", "factory_models:make", "--weights", folder, ["is a directory"])


def test_truncated_or_corrupt_files(files):
    d = files["dir"]
    model = d / "m.pt2"
    torch.export.save(torch.export.export(fm.make().eval(), (torch.rand(2, 1, 8, 8),)), model)
    bad(files, "--model", truncate(model, d / "cut.pt2"), ["truncated"])
    bad(files, "--data", truncate(files["data"], d / "cut.pt"), ["truncated or corrupt"])
    np.savez(d / "d.npz", x=np.zeros((3, 1, 8, 8), np.float32), y=np.zeros(3, np.int64))
    bad(files, "--data", truncate(d / "d.npz", d / "cut.npz"), ["truncated or corrupt"])
    bad(
        files,
        "--model",
        "factory_models:make",
        "--weights",
        truncate(files["weights"], d / "cut.pth"),
        ["truncated or corrupt"],
    )


def test_pickle_without_opt_in(files):
    whole = _save(fm.make(), files["dir"] / "whole.pt")
    bad(files, "--model", whole, ["--unsafe-pickle", "runs code from the file"])
    result = attack_with(files, "--model", whole, "--unsafe-pickle", "--data", files["data"])
    assert result.exit_code == 0, result.stderr
    assert files["out"].exists()


def test_factory_not_importable_or_not_callable(files):
    bad(files, "--model", "no_such_pkg.models:make", ["cannot import no_such_pkg.models"])
    bad(files, "--model", "broken_module:make", ["importing broken_module failed"])
    bad(files, "--model", "factory_models:NOT_CALLABLE", ["is not callable"])


def test_bad_model_arg(files):
    bad(files, "--model", "factory_models:make", "--model-arg", "widthis4", ["--model-arg takes KEY=VALUE"])
    bad(files, "--model", "factory_models:make", "--model-arg", "depth=3", ["does not accept depth=3"])


def test_state_dict_keys_missing_or_unexpected(files):
    sd = fm.make().state_dict()
    for key in ("head.weight", "head.bias", "bn.weight"):
        del sd[key]
    sd["classifier.weight"] = torch.zeros(1)
    weights = _save(sd, files["dir"] / "partial.pt")
    bad(
        files,
        "--model",
        "factory_models:make",
        "--weights",
        weights,
        ["3 missing (bn.weight, head.bias, head.weight)", "1 unexpected (classifier.weight)"],
    )


def test_tensor_sizes_not_matching_architecture(files):
    bad(
        files,
        "--model",
        "factory_models:make",
        "--model-arg",
        "width=6",
        "--weights",
        files["weights"],
        ["conv.weight is 4×1×3×3 in the file but 6×1×3×3 in the model"],
    )


def test_wrong_number_of_input_channels(files):
    bad(
        files,
        "--model",
        "factory_models:make",
        "--model-arg",
        "channels=3",
        "--data",
        files["data"],
        ["wrong number of input channels: the model expects 3 but the data has 1"],
    )
    bad(
        files,
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.2,0.2,0.2",
        "--data",
        files["data"],
        ["--mean/--std give 3 channel(s) but the data has 1"],
    )


def test_labels_outside_the_models_classes(files):
    data = save_tensors(files["dir"] / "labels.pt", torch.rand(5, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4]))
    bad(
        files,
        "--model",
        "factory_models:make",
        "--model-arg",
        "classes=3",
        "--data",
        data,
        ["labels go up to 4 but the model outputs 3 classes"],
    )


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_infinite_inputs(files, value):
    x = torch.rand(5, 1, 8, 8)
    x[2, 0, 3, 3] = value
    bad(
        files, "--data", save_tensors(files["dir"] / "nan.pt", x, torch.zeros(5, dtype=torch.long)), ["NaN or infinite"]
    )


def test_empty_dataset_and_limit_zero(files):
    empty = save_tensors(files["dir"] / "empty.pt", torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))
    bad(files, "--data", empty, ["empty"])
    bad(files, "--limit", "0", ["--limit must be at least 1"])
    (files["dir"] / "no-images" / "a").mkdir(parents=True)
    bad(files, "--data", files["dir"] / "no-images", ["empty"])


def test_named_dataset_absent_without_download(files):
    root = files["dir"] / "datasets"
    message = bad(files, "--data", "cifar10", "--data-root", root, ["--download", f"--data-root {root}"])
    assert "advgrad info --data cifar10 --split test" in message


def test_normalised_data_is_explained(files):
    x = (torch.rand(5, 1, 8, 8) - 0.5) / 0.2
    bad(
        files,
        "--data",
        save_tensors(files["dir"] / "norm.pt", x, torch.zeros(5, dtype=torch.long)),
        ["looks normalised", "--mean/--std"],
    )


def test_bad_values_found_mid_run_leave_nothing_written(files, monkeypatch):
    monkeypatch.setattr(tensorfiles, "EAGER_CHECK_BYTES", 0)  # checked batch by batch, as a huge file is
    x = torch.rand(40, 1, 8, 8)
    x[35, 0, 0, 0] = float("nan")  # in the last batch, long after the probe
    data = save_tensors(files["dir"] / "late.pt", x, torch.zeros(40, dtype=torch.long))
    bad(files, "--data", data, "--batch-size", "8", ["NaN or infinite"], mid_run=True)


# ---------------------------------------------------------------------------------------------
# Normalisation: the model sees normalised inputs, the attack works in pixel units.


def test_eps_is_in_pixel_units_under_mean_std(tmp_path):
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(3)) * 0.6 + 0.2  # the box cannot bind
    y = torch.arange(16) % 10
    data = save_tensors(tmp_path / "d.pt", x, y)
    out = tmp_path / "adv.pt"
    mean, std = (0.4, 0.5, 0.6), (0.1, 0.2, 0.25)
    result = run_cli(
        "attack",
        "--method",
        "fgsm",
        "--eps",
        "0.05",
        "--model",
        "factory_models:make",
        "--model-arg",
        "channels=3",
        "--model-arg",
        "dropout=0",
        "--mean",
        "0.4,0.5,0.6",
        "--std",
        "0.1,0.2,0.25",
        "--data",
        data,
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.stderr
    saved = torch.load(out, weights_only=True)
    delta = (saved["x_adv"] - saved["x"]).abs()
    # FGSM moves every coordinate with a non-zero gradient by exactly ε = 0.05 in pixels; ε in
    # normalised units would move pixels by 0.05·std, at most 0.0125.
    assert float(delta.max()) <= 0.05 + 1e-6
    assert float(delta.max()) > 0.05 - 1e-6 and float((delta > 0.049).float().mean()) > 0.5
    torch.testing.assert_close(saved["x"], x)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    plain = fm.make(channels=3, dropout=0).eval()
    with torch.no_grad():
        assert torch.equal(saved["pred_clean"], plain((x - m) / s).argmax(1))
        assert torch.equal(saved["pred_adv"], plain((saved["x_adv"] - m) / s).argmax(1))


# ---------------------------------------------------------------------------------------------
# Every command that loads inputs takes the same options.


@pytest.mark.parametrize(
    "command",
    [
        ["attack", "--method", "fgsm", "--eps", "0.05"],
        ["eval", "--attack", "fgsm", "--eps", "0,0.05"],
        ["grad"],
        ["info"],
    ],
    ids=["attack", "eval", "grad", "info"],
)
def test_every_command_takes_the_loading_options(tmp_path, command):
    root = write_image_folder(tmp_path / "imgs", {"a": 3, "b": 3, "c": 2})
    weights = _save(
        {"state_dict": {"module." + k: v for k, v in fm.make(channels=3, classes=3).state_dict().items()}},
        tmp_path / "w.pth",
    )
    result = run_cli(
        *command,
        "--model",
        "factory_models:make",
        "--weights",
        weights,
        "--model-arg",
        "channels=3",
        "--model-arg",
        "classes=3",
        "--mean",
        "0.5",
        "--std",
        "0.25",
        "--data",
        root,
        "--image-size",
        "6",
        "--split",
        "test",
        "--data-root",
        tmp_path,
        "--limit",
        "5",
        "--shuffle",
        "--seed",
        "2",
        "--batch-size",
        "2",
        "--num-workers",
        "1",
        "--device",
        "cpu",
        "--json",
        "-",
    )
    assert result.exit_code == 0, result.stderr
    assert "normalisation mean 0.5, std 0.25 (--mean/--std)" in result.stderr
    assert "5 samples of 3×6×6, 3 classes" in result.stderr


def test_grad_on_a_named_dataset(tmp_path):
    write_mnist(tmp_path)
    result = run_cli(
        "grad",
        "--data",
        "mnist",
        "--data-root",
        tmp_path,
        "--model",
        "factory_models:make",
        "--limit",
        "4",
        "--device",
        "cpu",
        "--json",
        "-",
    )
    assert result.exit_code == 0, result.stderr
    assert "mnist test split" in result.stderr and '"n_samples": 4' in result.stdout


def test_same_model_in_every_file_form_gives_the_same_curve(tmp_path):
    """The embedded model, as TorchScript and as ExportedPrograms (dynamic and fixed batch)."""
    from advgrad.io.model.load_model import load_default_model

    model = load_default_model()
    example = torch.rand(5, 1, 8, 8)
    torch.jit.save(torch.jit.trace(model, example), tmp_path / "m.ts")
    torch.export.save(torch.export.export(model, (example,)), tmp_path / "fixed.pt2")
    torch.export.save(
        torch.export.export(model, (example,), dynamic_shapes={"x": {0: torch.export.Dim("b")}}),
        tmp_path / "dynamic.pt2",
    )
    curves = []
    for spec in ("digits-cnn", tmp_path / "m.ts", tmp_path / "fixed.pt2", tmp_path / "dynamic.pt2"):
        result = run_cli(
            "eval",
            "--model",
            spec,
            "--attack",
            "fgsm,pgd",
            "--steps",
            "5",
            "--eps",
            "0,0.1,0.2",
            "--limit",
            "40",
            "--batch-size",
            "16",
            "--device",
            "cpu",
            "--json",
            "-",
        )
        assert result.exit_code == 0, result.stderr
        report = json.loads(result.stdout)
        curves.append(
            [report["clean_accuracy"]] + [p["robust"] for c in report["attacks"].values() for p in c["points"]]
        )
    assert all(c == curves[0] for c in curves), curves
