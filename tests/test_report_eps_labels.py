"""ε printed as the user wrote it (8/255 stays 8/255), its value in JSON, and no float32 noise."""

from __future__ import annotations

import csv
import io
import json

import pytest
from helpers import invoke
from report_helpers import crafted

from advgrad.core.eps import default_eps_label, parse_eps_labelled
from advgrad.core.results import RobustnessReport, float32_decimal
from advgrad.report.chart import text_chart
from advgrad.report.markdown import render_markdown


@pytest.mark.parametrize(
    "value, label", [(8 / 255, "8/255"), (0.1, "0.1"), (2.0, "2"), (0.0, "0"), (0.0314, "0.0314"), (1 / 510, "1/510")]
)
def test_default_label(value, label):
    assert default_eps_label(value) == label


def test_parsed_labels_keep_the_text():
    assert [(float(e), e.label) for e in parse_eps_labelled("0, 8 / 255,0.1,1e-2")] == [
        (0.0, "0"),
        (8 / 255, "8/255"),
        (0.1, "0.1"),
        (0.01, "1e-2"),
    ]


@pytest.mark.parametrize(
    "value, shortest", [(0.10000000149011612, 0.1), (0.0313725508749485, 0.03137255), (0.5, 0.5), (None, None)]
)
def test_float32_noise_removed(value, shortest):
    assert float32_decimal(value) == shortest


def test_label_in_markdown_and_chart():
    report = crafted({"pgd": [95, 60, 20]}, eps=(0.0, 8 / 255, 0.1))
    report.eps_labels = ["0", "8/255", "0.1"]
    text = render_markdown(report)
    assert "| 8/255 | 60.0% |" in text and "0.0314" not in text
    axis = text_chart(report).splitlines()[-2]
    assert "8/255" in axis and "0.1" in axis


def test_eval_json_table_markdown_csv(tmp_path):
    md, csv_path = tmp_path / "r.md", tmp_path / "r.csv"
    result = invoke(
        [
            "eval",
            "--attack",
            "fgsm",
            "--eps",
            "0,8/255,0.1",
            "--limit",
            "64",
            "--json",
            "-",
            "--markdown",
            md,
            "--csv",
            csv_path,
        ]
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["eps"] == [0.0, 8 / 255, 0.1]  # the values as written, exactly, in Python floats
    assert data["eps_labels"] == ["0", "8/255", "0.1"]
    points = data["attacks"]["fgsm"]["points"]
    assert [p["eps_label"] for p in points] == ["0", "8/255", "0.1"]
    assert list(points[1])[:2] == ["eps", "eps_label"]
    assert points[2]["max_norm"] == 0.1  # FGSM moves some pixel by the whole ε: float32(0.1) written as 0.1
    assert RobustnessReport.from_dict(data).eps_label(8 / 255) == "8/255"
    assert "| 8/255 |" in md.read_text()
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert [r["eps"] for r in rows if r["attack"] == "fgsm"] == ["0.0", repr(8 / 255), "0.1"]
    assert [r["eps_label"] for r in rows if r["attack"] == "fgsm"] == ["0", "8/255", "0.1"]
    assert rows[-1]["max_norm"] == "0.1"

    table = invoke(["eval", "--attack", "fgsm", "--eps", "0,8/255,0.1", "--limit", "64"])
    assert table.exit_code == 0, table.stderr
    assert " 8/255 " in table.stdout and "0.03137" not in table.stdout


def test_attack_json_names_match_eval():
    result = invoke(["attack", "--method", "fgsm", "--eps", "8/255", "--limit", "30", "--json", "-"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert "adversarial_accuracy" not in data
    assert data["eps"] == 8 / 255 and data["eps_label"] == "8/255"
    # exact ratios of counts, not float32 means (0.995555579662323 for 448/450)
    assert data["clean_accuracy"] == round(data["clean_accuracy"] * 30) / 30
    assert data["accuracy"] == round(data["accuracy"] * 30) / 30
    assert data["max_norm"] == float32_decimal(8 / 255)


def test_an_eps_value_computes_as_its_number_and_keeps_its_label_through_pickle_and_json():
    import json
    import pickle

    from advgrad.core.eps import Eps

    e = Eps(8 / 255, "8/255")
    assert e == 8 / 255 and e > 0.03 and e * 2 == 16 / 255 and hash(e) == hash(8 / 255)
    back = pickle.loads(pickle.dumps(e))
    assert float(back) == 8 / 255 and back.label == "8/255"
    assert json.loads(json.dumps({"eps": [e]}))["eps"] == [8 / 255]  # JSON holds the number
    assert Eps(0.1).label == "0.1" and Eps.of("2 / 255").label == "2/255" and Eps.of(e) is e


def test_the_api_keeps_the_eps_labels_it_was_given(digits_model, digits_test):
    import advgrad

    x, y = digits_test.x[:8], digits_test.y[:8]
    report = advgrad.evaluate(digits_model, x, y, attacks="fgsm", eps=["0", "8/255", 0.1])
    assert report.eps_labels == ["0", "8/255", "0.1"] and report.eps == [0.0, 8 / 255, 0.1]
    certified = advgrad.certify(digits_model, x, y, method="ibp", eps="0,2/255")
    assert certified.eps_labels == ["0", "2/255"]
