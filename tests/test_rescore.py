"""`advgrad rescore` (advgrad/cli/commands/rescore.py, advgrad/evaluation/rescoring.py): the model run
again on the adversarial inputs a run kept reproduces every accuracy, or names the samples that differ."""

from __future__ import annotations

import json

import torch
from helpers import assert_bad_input, invoke

from advgrad.io.adversarial_dir import read_manifest

EVAL = ["eval", "--limit", "40", "--batch-size", "16", "--attack", "fgsm,pgd,deepfool", "--steps", "5"]
EVAL += ["--eps", "0,0.05,0.1,0.3"]


def _eval(tmp_path):
    report, folder = tmp_path / "r.json", tmp_path / "adv"
    result = invoke(EVAL + ["--json", report, "--save-adversarial", folder])
    assert result.exit_code == 0, result.stderr
    return report, folder


def test_rescore_reproduces_every_accuracy_of_an_eval(tmp_path):
    report, folder = _eval(tmp_path)
    assert read_manifest(folder)["batches"] == 3
    result = invoke(["rescore", report, "--json", "-"])
    assert result.exit_code == 0, result.stderr
    numbers = json.loads(result.stdout)["numbers"]
    assert len(numbers) == 1 + 3 * 4  # clean, and three attacks at four ε
    saved = json.loads(report.read_text())
    labels = saved["eps_labels"]
    robust = {
        f"{n}@{e}": p["robust"] for n, c in saved["attacks"].items() for e, p in zip(labels, c["points"], strict=True)
    }
    for item in numbers:
        assert item["differing"] == [] and item["reported"] == item["rescored"]
        assert item["reported"] == (saved["clean_correct"] if item["name"] == "clean" else robust[item["name"]])
    assert "all 13 numbers reproduced exactly" in result.stderr


def test_rescore_names_the_samples_that_differ(tmp_path):
    report, folder = _eval(tmp_path)
    batch = torch.load(folder / "batch-000001.pt", weights_only=True)
    pgd = batch["attacks"]["pgd"]
    pgd["x_adv"][0] = batch["x"][pgd["index"][0]]  # the clean input fools nobody
    torch.save(batch, folder / "batch-000001.pt")
    result = invoke(["rescore", report, "--json", "-"])
    assert result.exit_code == 1
    differ = {n["name"]: n["differing"] for n in json.loads(result.stdout)["numbers"] if n["differing"]}
    sample = 16 + int(pgd["index"][0])
    assert set(differ) == {f"pgd@{e}" for e in ("0.05", "0.1", "0.3")[int(pgd["fooled_at"][0]) - 1 :]}
    assert all(found == [sample] for found in differ.values())
    assert f"samples [{sample}]" in result.stderr


def test_rescore_reads_the_report_counts_not_only_the_folder(tmp_path):
    report, _ = _eval(tmp_path)
    saved = json.loads(report.read_text())
    saved["attacks"]["fgsm"]["points"][2]["robust"] += 1  # a report that overstates robustness
    report.write_text(json.dumps(saved))
    result = invoke(["rescore", report])
    assert result.exit_code == 1 and "fgsm@0.1: reported" in result.stderr


def test_rescore_reproduces_an_attack_file(tmp_path):
    out = tmp_path / "adv.pt"
    assert invoke(["attack", "--limit", "20", "--steps", "5", "--out", out]).exit_code == 0
    result = invoke(["rescore", out])
    assert result.exit_code == 0, result.stderr
    assert "all 2 numbers reproduced exactly" in result.stderr


def test_bad_reports_and_folders_are_one_line(tmp_path):
    assert_bad_input(invoke(["rescore", tmp_path / "missing.json"]))
    report = tmp_path / "r.json"
    assert invoke(EVAL + ["--json", report]).exit_code == 0
    assert_bad_input(invoke(["rescore", report]), "--save-adversarial")
    (tmp_path / "empty").mkdir()
    assert_bad_input(invoke(["rescore", report, "--adversarial", tmp_path / "empty"]), after_loading=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert_bad_input(invoke(EVAL + ["--save-adversarial", tmp_path / "other"]), "holds other files")
    assert_bad_input(invoke(EVAL + ["--save-adversarial", report]), "is not a folder")
