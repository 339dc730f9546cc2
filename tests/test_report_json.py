"""The JSON report: its documented schema (advgrad/report/schema.json, docs/report-schema.md),
its contents and its consistency."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
from report_helpers import crafted
from typer.testing import CliRunner

from advgrad.cli import app
from advgrad.core.results import AttackCurve, CurvePoint, RobustnessReport
from advgrad.report.schema import report_schema

DOC = Path(__file__).resolve().parent.parent / "docs" / "report-schema.md"
Validator = jsonschema.Draft202012Validator


@pytest.fixture(scope="module")
def cli_report(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("json")
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--attack",
            "fgsm,pgd",
            "--steps",
            "5",
            "--eps",
            "0,0.05,8/255,0.5",
            "--limit",
            "40",
            "--fail-under",
            "pgd@0.05=0.1",
            "--fail-under",
            "clean=0.5",
            "--state",
            str(tmp / "state"),
            "--json",
            "-",
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_schema_is_valid_json_schema():
    Validator.check_schema(report_schema())


def test_cli_report_validates(cli_report):
    Validator(report_schema()).validate(cli_report)
    assert cli_report["schema"] == "advgrad.robustness-report" and cli_report["schema_version"] == 2


@pytest.mark.parametrize(
    "break_it",
    [
        lambda r: r.pop("clean_accuracy"),
        lambda r: r.update(clean_accuracy="99%"),
        lambda r: r.update(clean_accuracy=1.5),
        lambda r: r["attacks"]["pgd"]["points"][0].update(accuracy=None),
        lambda r: r["attacks"]["pgd"].update(kind="magic"),
        lambda r: r["checks"][0].update(status="fine"),
        lambda r: r["gates"][0].pop("passed"),
        lambda r: r.update(schema_version=3),
        lambda r: r["diagnostics"].pop("gradient_zero"),
    ],
)
def test_schema_rejects_broken_reports(cli_report, break_it):
    broken = copy.deepcopy(cli_report)
    break_it(broken)
    with pytest.raises(jsonschema.ValidationError):
        Validator(report_schema()).validate(broken)


def test_report_holds_what_the_issue_lists(cli_report):
    r = cli_report
    assert {"inputs", "attacks", "eps", "norm", "gates", "strict", "outputs", "early_stop"} <= set(r["config"])
    assert r["config"]["inputs"]["limit"] == 40 and r["seed"] == 0
    assert {"advgrad", "torch", "python"} <= set(r["versions"])
    assert r["timing"]["total_seconds"] > 0
    assert r["n_samples"] == 40 and sum(r["class_counts"]) == 40
    assert r["eps"] == [0.0, 8 / 255, 0.05, 0.5]  # sorted
    assert [c["name"] for c in r["checks"]][0] == "accuracy-rises-with-eps" and len(r["checks"]) == 11
    assert [g["gate"] for g in r["gates"]] == ["pgd@0.05=0.1", "clean=0.5"]
    assert r["model"]["kind"] == "default" and r["data"]["num_classes"] == 10


def test_numbers_are_consistent(cli_report):
    r = cli_report
    n, clean = r["n_samples"], r["clean_correct"]
    assert r["clean_accuracy"] == clean / n
    for curve in r["attacks"].values():
        previous = clean
        for p, eps in zip(curve["points"], r["eps"], strict=True):
            assert p["eps"] == eps
            assert p["accuracy"] == p["robust"] / n and p["robust"] <= previous
            assert p["success_rate"] == pytest.approx((clean - p["robust"]) / clean)
            assert sum(p["robust_per_class"]) == p["robust"]
            for acc, robust, count in zip(
                p["accuracy_per_class"], p["robust_per_class"], r["class_counts"], strict=True
            ):
                assert acc == (robust / count if count else None)
            if p["robust"] < clean:  # some adversarial examples: their norms are within the budget
                assert 0 < p["mean_norm"] <= p["max_norm"] <= eps * (1 + 1e-5)
            else:
                assert p["mean_norm"] is None and p["max_norm"] is None
            previous = p["robust"]


def test_per_class_accuracy_known_answer():
    point = CurvePoint(eps=0.1, accuracy=0.3, robust=3, success_rate=0.5, robust_per_class=[0, 3, 0])
    report = RobustnessReport(
        n_samples=10,
        clean_correct=6,
        clean_accuracy=0.6,
        eps=[0.1],
        norm="inf",
        attacks={"pgd": AttackCurve("pgd", "inf", {}, None, [point])},
        class_counts=[4, 6, 0],
        clean_correct_per_class=[2, 4, 0],
    )
    data = report.to_dict()
    assert data["clean_accuracy_per_class"] == [0.5, 4 / 6, None]
    assert data["attacks"]["pgd"]["points"][0]["accuracy_per_class"] == [0.0, 0.5, None]
    again = RobustnessReport.from_dict(json.loads(json.dumps(data)))
    assert again.to_dict() == data


def test_crafted_report_validates_and_round_trips():
    report = crafted({"fgsm": [95, 60, 20], "pgd": [95, 50, 10]})
    data = json.loads(json.dumps(report.to_dict()))
    Validator(report_schema()).validate(data)
    assert RobustnessReport.from_dict(data).to_dict() == data


def test_docs_describe_every_top_level_field():
    text = DOC.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)`", text, flags=re.M))
    schema = report_schema()
    missing = (
        set(schema["properties"])
        | set(schema["$defs"]["point"]["properties"])
        | set(schema["$defs"]["curve"]["properties"])
    ) - documented
    assert not missing, f"docs/report-schema.md does not describe {sorted(missing)}"
