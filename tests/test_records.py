"""Per-sample records (advgrad/evaluation/records.py, advgrad/io/records_file.py, --records): every
number of a report is a sum over the rows, also after a resume; the rows are the same in every format."""

from __future__ import annotations

import csv
import importlib.util
import json
import math

import pytest
from helpers import assert_bad_input, invoke
from report_helpers import stop_after

from advgrad.attacks import get_attack
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.resume import RunState
from advgrad.evaluation.sweep import evaluate
from advgrad.io.data.load_data import load_default
from advgrad.io.model.load_model import load_default_model
from advgrad.io.records_file import read_records

EPS = (0.0, 0.05, 0.1, 0.3)


def _attacks() -> list[EvalAttack]:
    chosen = (("fgsm", {}), ("pgd", {"steps": 5}), ("deepfool", {"steps": 10}))
    return [EvalAttack(get_attack(n), get_attack(n).make_params(**o)) for n, o in chosen]


def _run(limit: int = 50, batch_size: int = 16, certify: str | None = None, **kwargs):
    """evaluate() on the first embedded digits, its rows collected batch by batch."""
    attacks = _attacks()
    config = EvalConfig(eps=list(EPS), seed=2, certify=certify)
    rows: list[dict] = []
    names, labels = [a.name for a in attacks], config.eps_labels
    report = evaluate(
        load_default_model(),
        load_default().batches(batch_size, limit=limit),
        attacks,
        config,
        records=lambda b: rows.extend(b.rows(names, labels, certify)),
        **kwargs,
    )
    return report, rows


def assert_sums(report, rows: list[dict]) -> None:
    """Clean and robust counts, per class too, and the mean and largest norms are the rows' sums."""
    assert [r["index"] for r in rows] == list(range(report.n_samples))
    assert sum(r["clean_correct"] for r in rows) == report.clean_correct
    for name, curve in report.attacks.items():
        for p in curve.points:
            key = f"{name}@{report.eps_label(p.eps)}:"
            if curve.kind == "certified":
                assert sum(r[key + "certified"] for r in rows) == p.robust
                continue
            robust = [r for r in rows if r["clean_correct"] and not r[key + "fooled"]]
            assert len(robust) == p.robust, key
            per_class = [sum(r["label"] == c for r in robust) for c in range(len(report.class_counts))]
            assert per_class == p.robust_per_class, key
            fooled = [r[key + "norm"] for r in rows if r[key + "fooled"]]
            assert all(r[key + "prediction"] != r["label"] and r[key + "margin"] < 0 for r in rows if r[key + "fooled"])
            if fooled:
                assert math.isclose(sum(fooled) / len(fooled), p.mean_norm, rel_tol=1e-5), key
                assert max(fooled) == p.max_norm, key
            else:
                assert p.mean_norm is None


def test_the_report_is_the_sum_of_its_rows():
    report, rows = _run()
    assert_sums(report, rows)
    row = rows[0]
    assert row["clean_correct"] and row["clean_margin"] > 0
    assert row["pgd@0:passes"] == 0 and row["pgd@0:norm"] == 0 and row["pgd@0:fooled"] is False
    attacked = [r for r in rows if r["clean_correct"] and not r["pgd@0.05:fooled"]]
    assert all(r["pgd@0.1:passes"] == 5 for r in attacked)  # PGD-5: 5 passes at each ε it attacks
    later = [r for r in rows if r["pgd@0.05:fooled"]]  # fooled at 0.05: the same example, no passes at 0.1
    assert later and all(r["pgd@0.1:passes"] == 0 and r["pgd@0.1:norm"] == r["pgd@0.05:norm"] for r in later)
    assert all(r["pgd@0.1:norm"] <= 0.1 * (1 + 1e-6) for r in rows)


def test_rows_survive_an_interrupted_and_resumed_run(tmp_path):
    whole, whole_rows = _run()
    with pytest.raises(KeyboardInterrupt):
        _run(state=RunState.open(tmp_path, "key"), progress=stop_after(2))
    resumed, rows = _run(state=RunState.open(tmp_path, "key"))
    assert resumed.timing["resumed_batches"] == 2
    assert rows == whole_rows
    assert_sums(resumed, rows)


@pytest.mark.slow
def test_certified_verdicts_are_rows_too():
    report, rows = _run(limit=20, certify="crown")
    assert_sums(report, rows)
    assert any(r["crown@0.05:certified"] for r in rows)
    # a sample certified at ε is never fooled there
    assert not any(r[f"crown@{e}:certified"] and r[f"pgd@{e}:fooled"] for r in rows for e in ("0.05", "0.1"))


def test_cli_records_in_jsonl_and_csv_are_the_same_rows(tmp_path):
    common = ["eval", "--limit", "40", "--batch-size", "16", "--attack", "fgsm,pgd", "--steps", "5"]
    common += ["--eps", "0,0.05,0.1", "--json", tmp_path / "r.json"]
    result = invoke(common + ["--records", tmp_path / "r.jsonl"])
    assert result.exit_code == 0, result.stderr
    rows = read_records(tmp_path / "r.jsonl")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["config"]["outputs"]["records"] == str(tmp_path / "r.jsonl")
    for name in ("fgsm", "pgd"):
        robust = [sum(r["clean_correct"] and not r[f"{name}@{e}:fooled"] for r in rows) for e in ("0", "0.05", "0.1")]
        assert robust == [p["robust"] for p in report["attacks"][name]["points"]]
    assert invoke(common + ["--records", tmp_path / "r.csv"]).exit_code == 0
    with open(tmp_path / "r.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == list(rows[0])
    text = {"True": "true", "False": "false", "None": ""}
    for line, row in zip(table, rows, strict=True):
        assert line == {k: text.get(str(v), str(v)) for k, v in row.items()}


def test_cli_attack_and_certify_records_sum_to_their_summaries(tmp_path):
    result = invoke(["attack", "--limit", "30", "--steps", "5", "--json", "-", "--records", tmp_path / "a.jsonl"])
    assert result.exit_code == 0, result.stderr
    summary, rows = json.loads(result.stdout), read_records(tmp_path / "a.jsonl")
    assert len(rows) == 30
    assert sum(r["pgd@0.1:prediction"] == r["label"] for r in rows) == round(summary["accuracy"] * 30)
    assert sum(bool(r["pgd@0.1:fooled"]) for r in rows) == summary["successes"]
    assert all(r["pgd@0.1:passes"] == 5 for r in rows)
    result = invoke(["certify", "--limit", "30", "--eps", "0,0.02", "--json", "-", "--records", tmp_path / "c.jsonl"])
    assert result.exit_code == 0, result.stderr
    report, rows = json.loads(result.stdout), read_records(tmp_path / "c.jsonl")
    assert [sum(r[f"crown@{e}:certified"] for r in rows) for e in ("0", "0.02")] == [
        p["robust"] for p in report["attacks"]["crown"]["points"]
    ]


@pytest.mark.parametrize("name", ["r.txt", "r.json", "-"])
def test_a_records_file_needs_a_known_suffix(tmp_path, name):
    target = name if name == "-" else tmp_path / name
    assert_bad_input(invoke(["eval", "--records", target]), "--records")


def test_parquet_needs_pyarrow(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "pyarrow" else real(n, *a))
    assert_bad_input(invoke(["attack", "--records", tmp_path / "r.parquet"]), "pyarrow")


def test_parquet_rows_when_pyarrow_is_there(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    assert invoke(["attack", "--limit", "8", "--steps", "2", "--records", tmp_path / "r.parquet"]).exit_code == 0
    assert pq.read_table(tmp_path / "r.parquet").num_rows == 8


def test_the_api_writes_records_and_adversarial_examples(tmp_path):
    import advgrad

    data = load_default()
    report = advgrad.evaluate(
        load_default_model(),
        data.x[:30],
        data.y[:30],
        attacks="pgd",
        eps=[0, 0.1],
        steps=5,
        batch_size=16,
        records=tmp_path / "r.csv",
        save_adversarial=tmp_path / "adv",
    )
    with open(tmp_path / "r.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30
    assert (
        sum(r["clean_correct"] == "true" and r["pgd@0.1:fooled"] == "false" for r in rows)
        == report.attacks["pgd"].points[1].robust
    )
    assert (tmp_path / "adv" / "manifest.json").exists() and (tmp_path / "adv" / "batch-000001.pt").exists()
