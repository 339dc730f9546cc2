"""The RobustBench leaderboard entry (advgrad/report/robustbench.py, ``eval --robustbench-json``):
the fields RobustBench's model_info files hold, filled from the run where the run knows them,
autoattack_acc only from AutoAttack, and the rest named for the user to fill."""

from __future__ import annotations

import json

from helpers import invoke
from html_pages import corruption_report
from report_helpers import crafted

from advgrad.report.robustbench import robustbench_entry

FIELDS = [
    "link",
    "name",
    "authors",
    "additional_data",
    "number_forward_passes",
    "dataset",
    "venue",
    "architecture",
    "eps",
    "clean_acc",
    "reported",
    "autoattack_acc",
    "footnote",
    "advgrad",
]


def cifar_report(attack: str = "autoattack", **params):
    report = crafted({attack: [9300, 7107]}, eps=(0.0, 8 / 255), n=10_000, clean=9327)
    report.eps_labels = ["0", "8/255"]
    report.attacks[attack].params = {"version": "standard", "as_published": True, **params}
    report.data = {"source": "cifar10-test", "description": "CIFAR-10 test split"}
    report.model = {"kind": "timm", "source": "timm:resnet18", "description": "timm resnet18"}
    return report


def test_an_autoattack_run_fills_the_leaderboard_numbers():
    entry = robustbench_entry(cifar_report())
    assert list(entry) == FIELDS
    assert entry["clean_acc"] == "93.27" and entry["autoattack_acc"] == "71.07"
    assert entry["eps"] == "8/255" and entry["dataset"] == "cifar10" and entry["number_forward_passes"] == 1
    assert entry["architecture"] == "resnet18"
    extra = entry["advgrad"]
    assert extra["threat_model"] == "Linf" and extra["file"] == "model_info/cifar10/Linf/<Name>.json"
    assert extra["to_fill"] == ["link", "name", "authors", "additional_data", "venue", "reported", "footnote"]
    assert extra["notes"] == []  # nothing keeps it off the board


def test_autoattack_acc_comes_only_from_autoattack():
    entry = robustbench_entry(cifar_report("pgd"))
    assert entry["autoattack_acc"] is None and "autoattack_acc" in entry["advgrad"]["to_fill"]
    assert any("--attack autoattack" in n for n in entry["advgrad"]["notes"])
    assert entry["clean_acc"] == "93.27"


def test_what_keeps_an_entry_off_the_board_is_noted():
    report = cifar_report(as_published=False)
    report.n_samples = 500
    report.eps.append(16 / 255)
    for curve in report.attacks.values():
        curve.points.append(curve.points[-1])
    report.norm = "2"
    report.config["predictions"] = 4
    entry = robustbench_entry(report)
    notes = " | ".join(entry["advgrad"]["notes"])
    assert "budgets other than the published version's" in notes
    assert "10,000 test samples; this run used 500" in notes
    assert "the entry uses the largest, 16/255" in notes
    assert entry["advgrad"]["threat_model"] == "L2" and entry["number_forward_passes"] == 4


def test_other_data_and_models_leave_their_fields_to_fill():
    entry = robustbench_entry(crafted({"fgsm": [95, 60, 20]}))
    assert entry["dataset"] is None and entry["architecture"] is None
    assert {"dataset", "architecture", "autoattack_acc"} <= set(entry["advgrad"]["to_fill"])
    assert any("boards are cifar10, cifar100, imagenet" in n for n in entry["advgrad"]["notes"])


def test_the_corruptions_board_gets_corruptions_acc():
    report = corruption_report(attacks=False)
    report.data["source"] = "cifar100-test"
    entry = robustbench_entry(report)
    assert "autoattack_acc" not in entry and entry["corruptions_acc"] == f"{100 * report.corruptions.mean_accuracy:.2f}"
    assert entry["eps"] is None and "eps" not in entry["advgrad"]["to_fill"]
    assert entry["advgrad"]["file"] == "model_info/cifar100/corruptions/<Name>.json"
    assert any("--corruptions all" in n for n in entry["advgrad"]["notes"])


def test_eval_writes_the_entry(tmp_path):
    path = tmp_path / "rb.json"
    result = invoke(["eval", "--attack", "fgsm", "--eps", "0,0.1", "--limit", "20", "--robustbench-json", path])
    assert result.exit_code == 0, result.stderr
    entry = json.loads(path.read_text())
    assert entry["clean_acc"] is not None and entry["eps"] == "0.1" and entry["autoattack_acc"] is None
    assert f"wrote {path}" in result.stderr
