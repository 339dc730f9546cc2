"""Outputs never overwrite inputs, nor each other (advgrad/io/output_paths.py), in every command that
writes files: refused before any work, exit 2, one line naming both options."""

from __future__ import annotations

import json
import os
from pathlib import Path

import factory_models as fm
import pytest
import torch
from helpers import torchscript
from loading_fixtures import run_cli, save_tensors
from report_helpers import crafted
from special_files import is_null_device, null_device

from advgrad.models.digits import DigitsCNN


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVGRAD_STATE_DIR", str(tmp_path / "state"))
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    paths = {
        "dir": tmp_path,
        "model": tmp_path / "model.ts",
        "data": save_tensors(tmp_path / "data.pt", x, torch.arange(6) % 10),
        "weights": tmp_path / "w.pt",
        "config": tmp_path / "run.toml",
    }
    torchscript(DigitsCNN().eval(), paths["model"])
    torch.save(fm.make(seed=1).state_dict(), paths["weights"])
    paths["config"].write_text('attack = "fgsm"\neps = ["0", "0.1"]\n')
    return paths


def _contents(paths: dict) -> dict:
    return {k: Path(v).read_bytes() for k, v in paths.items() if k != "dir"}


def refused(inputs, *args, needles: tuple[str, ...]) -> str:
    """Run the command; it must exit 2 before any work (no loading message), with one line that
    holds every needle, and leave every input as it was."""
    before = _contents(inputs)
    result = run_cli(*args, "--limit", "4")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert _contents(inputs) == before
    return lines[0]


def test_attack_out_over_the_data_file(inputs):
    refused(
        inputs,
        "attack",
        "--model",
        inputs["model"],
        "--data",
        inputs["data"],
        "--out",
        inputs["data"],
        needles=("--out", "--data"),
    )


def test_attack_json_through_a_symlink_to_the_model(inputs):
    link = inputs["dir"] / "report.json"
    link.symlink_to(inputs["model"])
    refused(
        inputs,
        "attack",
        "--model",
        inputs["model"],
        "--data",
        inputs["data"],
        "--json",
        link,
        needles=("--json", "--model"),
    )


def test_attack_images_folder_whose_png_is_the_model(inputs):
    folder = inputs["dir"] / "adv"
    folder.mkdir()
    os.link(inputs["model"], folder / "adversarial.png")  # a hard link: another name for the model file
    refused(
        inputs,
        "attack",
        "--model",
        folder / "adversarial.png",
        "--data",
        inputs["data"],
        "--images",
        folder,
        needles=("--images", "--model"),
    )


def test_attack_images_folder_that_is_the_data_folder(inputs):
    images = inputs["dir"] / "images"
    (images / "cat").mkdir(parents=True)
    refused(inputs, "attack", "--data", images, "--images", images, needles=("--images", "--data"))


def test_attack_two_outputs_on_one_file(inputs):
    out = inputs["dir"] / "adv.pt"
    refused(inputs, "attack", "--out", out, "--json", out, needles=("--out", "--json", "same file"))
    assert not out.exists()


def test_grad_out_over_the_weights_through_a_hard_link(inputs):
    link = inputs["dir"] / "grad.pt"
    os.link(inputs["weights"], link)
    refused(
        inputs,
        "grad",
        "--model",
        "factory_models:make",
        "--weights",
        inputs["weights"],
        "--out",
        link,
        needles=("--out", "--weights"),
    )


def test_info_json_over_the_model(inputs):
    refused(inputs, "info", "--model", inputs["model"], "--json", inputs["model"], needles=("--json", "--model"))


@pytest.mark.parametrize("option", ["--json", "--csv", "--markdown", "--junit", "--plot"])
def test_eval_any_output_over_the_config(inputs, option):
    refused(inputs, "eval", "--config", inputs["config"], option, inputs["config"], needles=(option, "--config"))


def test_eval_two_outputs_on_one_file_through_a_symlink(inputs):
    report = inputs["dir"] / "report.txt"
    link = inputs["dir"] / "link.txt"
    link.symlink_to(report)  # not yet written: the real path decides
    refused(
        inputs,
        "eval",
        "--attack",
        "fgsm",
        "--eps",
        "0,0.1",
        "--csv",
        report,
        "--markdown",
        link,
        needles=("--csv", "--markdown", "same file"),
    )
    assert not report.exists()


def test_eval_outputs_into_one_character_device_are_fine(inputs):
    device = null_device(inputs["dir"] / "null")
    result = run_cli("eval", "--attack", "fgsm", "--eps", "0,0.1", "--limit", "4", "--json", device, "--csv", device)
    assert result.exit_code == 0, result.output
    assert is_null_device(device)


def test_compare_json_over_a_report(inputs):
    base, new = inputs["dir"] / "base.json", inputs["dir"] / "new.json"
    for path in (base, new):
        path.write_text(json.dumps(crafted({"pgd": [95, 50, 10]}).to_dict()))
    before = base.read_bytes()
    result = run_cli("compare", base, new, "--json", base)
    assert result.exit_code == 2, result.output
    assert "--json" in result.stderr and "BASELINE" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert base.read_bytes() == before


def test_distinct_outputs_beside_the_inputs_are_fine(inputs):
    out = inputs["dir"] / "out"
    result = run_cli(
        "attack",
        "--method",
        "fgsm",
        "--model",
        inputs["model"],
        "--data",
        inputs["data"],
        "--limit",
        "4",
        "--out",
        out / "adv.pt",
        "--json",
        out / "adv.json",
        "--images",
        out,
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["adv.json", "adv.pt", "adversarial.png"]
