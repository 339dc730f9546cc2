"""`advgrad certify --method bab` and `advgrad eval --certify bab`: three verdicts per sample, the
band verified ≤ true ≤ not falsified, counterexamples saved with their indices, resume."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch
from helpers import assert_bad_input, invoke

from advgrad.core.results import Counterexample
from advgrad.evaluation.evidence import Evidence
from advgrad.evaluation.tally import AttackTally, BatchTally
from advgrad.report.schema import report_schema

# small ε and few samples: every sample is decided quickly, so no verdict depends on the clock
ARGS = ["--eps", "0,0.01,0.03", "--limit", "24", "--batch-size", "12"]


def _json(result) -> dict:
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)
    report = json.loads(result.stdout)
    jsonschema.Draft202012Validator(report_schema()).validate(report)
    return report


@pytest.fixture(scope="module")
def bab_run(tmp_path_factory) -> tuple[dict, dict]:
    folder = tmp_path_factory.mktemp("bab")
    found, records = folder / "found.pt", folder / "records.jsonl"
    args = ["--counterexamples", str(found), "--records", str(records), "--json", "-"]
    report = _json(invoke(["certify", "--method", "bab", *ARGS, *args]))
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    return report, torch.load(found, weights_only=True), rows


@pytest.mark.slow
def test_bab_counts_verified_and_falsified_and_saves_counterexamples(bab_run):
    report, found, _ = bab_run
    curve = report["attacks"]["bab"]
    assert curve["kind"] == "certified" and curve["params"]["method"] == "bab"
    points = curve["points"]
    assert points[0]["robust"] == report["clean_correct"] and points[0]["falsified"] == 0
    falsified = [p["falsified"] for p in points]
    assert falsified == sorted(falsified) and falsified[-1] > 0  # a counterexample within ε holds at larger ε
    assert all(p["robust"] + p["falsified"] <= report["clean_correct"] for p in points)
    assert len(found["index"]) == falsified[-1]
    assert found["x"].shape == (falsified[-1], 1, 8, 8)
    from advgrad.io.data.load_data import load_default
    from advgrad.io.model.load_model import load_default_model

    x, y = load_default().fetch(found["index"])
    assert torch.equal(found["label"], y)
    with torch.no_grad():
        pred = load_default_model()(found["x"]).argmax(1)
    assert torch.equal(pred, found["prediction"]) and (pred != y).all()
    assert ((found["x"] - x).abs().flatten(1).amax(1) <= found["eps"] + 1e-6).all()
    assert found["x"].min() >= 0 and found["x"].max() <= 1


@pytest.mark.slow
def test_the_records_carry_each_samples_verdict(bab_run):
    report, found, rows = bab_run
    assert [row["index"] for row in rows] == list(range(24))
    for point, eps in zip(report["attacks"]["bab"]["points"], ("0", "0.01", "0.03"), strict=True):
        verdicts = [row[f"bab@{eps}:verdict"] for row in rows]
        assert verdicts.count("verified") == point["robust"]
        assert verdicts.count("falsified") == point["falsified"]
        assert verdicts.count(None) == 24 - report["clean_correct"]
        for row, verdict in zip(rows, verdicts, strict=True):
            assert (verdict is None) == (not row["clean_correct"])
            assert row[f"bab@{eps}:certified"] == (verdict == "verified")
    falsified = {row["index"] for row in rows if row["bab@0.03:verdict"] == "falsified"}
    assert falsified == set(found["index"].tolist())  # every falsified sample has its counterexample


@pytest.mark.slow
def test_bab_sandwich_in_eval_is_consistent_with_the_attack():
    report = _json(invoke(["eval", "--attack", "pgd", "--certify", "bab", *ARGS, "--json", "-"]))
    for bab, pgd in zip(report["attacks"]["bab"]["points"], report["attacks"]["pgd"]["points"], strict=True):
        assert bab["robust"] <= pgd["robust"]  # verified ≤ true ≤ accuracy under attack
        assert bab["robust"] <= report["clean_correct"] - bab["falsified"]


def test_the_table_says_exact_where_nothing_is_undecided():
    from advgrad.core.results import CurvePoint
    from advgrad.report.fmt import accuracy_cell

    exact = CurvePoint(eps=0.02, accuracy=0.9, robust=9, success_rate=0.1, falsified=1)
    band = CurvePoint(eps=0.03, accuracy=0.7, robust=7, success_rate=0.3, falsified=1)
    assert accuracy_cell(exact, 10, 10) == "90.0% exact"
    assert accuracy_cell(band, 10, 10) == "70.0%–90.0%"
    assert accuracy_cell(CurvePoint(eps=0.03, accuracy=0.7, robust=7, success_rate=0.3), 10, 10) == "70.0%"


def test_verdict_counts_and_counterexamples_survive_the_resume_state():
    part = BatchTally(4, 3, [2, 2], [1, 2], [], Evidence(), certified=AttackTally.empty(2, 2))
    part.certified.falsified = [0, 1]
    part.certified.counterexamples = [Counterexample(7, 0.02, torch.ones(1, 2, 2), 1, 0)]
    back = BatchTally.from_state(part.to_state())
    assert back.certified.falsified == [0, 1]
    assert back.certified.counterexamples[0].index == 7
    assert torch.equal(back.certified.counterexamples[0].x, torch.ones(1, 2, 2))
    total = BatchTally.empty(2, 2, 0, certify=True)
    total.merge(back)
    total.merge(back)
    assert total.certified.falsified == [0, 2] and len(total.certified.counterexamples) == 2


def test_bab_options_apply_to_bab_only():
    result = invoke(["certify", "--method", "ibp", "--timeout", "5", "--eps", "0", "--limit", "4"])
    assert result.exit_code == 0 and "--timeout only apply to --method bab" in result.stderr
    assert_bad_input(
        invoke(["certify", "--method", "crown", "--counterexamples", "x.pt", "--eps", "0", "--limit", "4"]),
        "--counterexamples",
    )
    assert_bad_input(invoke(["certify", "--method", "bab", "--timeout", "-1", "--limit", "4"]), "timeout")
    assert_bad_input(invoke(["certify", "--method", "bab", "--counterexamples", "-", "--limit", "4"]), "file name")


def test_verified_yet_fooled_is_an_internal_error(monkeypatch):
    import advgrad.evaluation.sweep as sweep
    from advgrad.evaluation.certified import BatchVerdicts

    def everything(bounded, x, y, correct, config, monitor, **kw):  # a broken verifier: every correct sample
        verified = correct.unsqueeze(0).expand(len(config.eps), -1).clone()
        return BatchVerdicts(verified, torch.zeros_like(verified), [])

    monkeypatch.setattr(sweep, "verify_batch", everything)
    result = invoke(["eval", "--attack", "pgd", "--certify", "bab", "--eps", "0,0.1", "--limit", "16"])
    assert result.exit_code == 3, (result.exit_code, result.stderr)
    assert "certified at ε=0.1 by bab yet fooled there by pgd" in result.stderr


@pytest.mark.slow
def test_eval_certify_bab_resumes_with_its_verdicts(tmp_path, monkeypatch):
    from report_helpers import comparable
    from test_resume import interrupting_after

    import advgrad.cli.state as cli_state

    monkeypatch.setenv("ADVGRAD_STATE_DIR", str(tmp_path / "state"))
    args = ["eval", "--attack", "fgsm", "--certify", "bab", *ARGS, "--json", "-"]
    whole = invoke([*args, "--no-resume"])
    assert whole.exit_code == 0, whole.stderr
    with monkeypatch.context() as patch:
        patch.setattr(cli_state, "sweep_progress", interrupting_after(1))
        stopped = invoke(args)
    assert stopped.exit_code == 130, stopped.stderr
    resumed = invoke(args)
    assert resumed.exit_code == 0 and "resuming: 1 finished batch restored" in resumed.stderr, resumed.stderr
    assert comparable(json.loads(resumed.stdout)) == comparable(json.loads(whole.stdout))
