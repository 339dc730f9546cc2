"""`advgrad certify` and `advgrad eval --certify`: certified accuracy per ε beside the attacks'."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch
from helpers import assert_bad_input, invoke

from advgrad.evaluation.eval_config import EvalConfig
from advgrad.evaluation.evidence import Evidence
from advgrad.evaluation.run_description import RunDescription
from advgrad.evaluation.tally import AttackTally, BatchTally
from advgrad.report.schema import report_schema

EPS = ["0", "0.01", "0.02"]


def _json(result) -> dict:
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)
    report = json.loads(result.stdout)
    jsonschema.Draft202012Validator(report_schema()).validate(report)
    return report


def _certify(method: str) -> dict:
    return _json(invoke(["certify", "--method", method, "--eps", ",".join(EPS), "--limit", "64", "--json", "-"]))


@pytest.fixture(scope="module")
def certified_reports() -> dict[str, dict]:
    return {m: _certify(m) for m in ("ibp", "crown")}


def test_certify_reports_a_certified_curve_below_clean(certified_reports):
    for method, report in certified_reports.items():
        assert list(report["attacks"]) == [method]
        curve = report["attacks"][method]
        assert curve["kind"] == "certified" and report["config"]["certify"] == method
        robust = [p["robust"] for p in curve["points"]]
        assert [p["eps"] for p in curve["points"]] == [0.0, 0.01, 0.02]
        assert robust[0] == report["clean_correct"]  # ε = 0: certified exactly when classified correctly
        assert all(r <= report["clean_correct"] for r in robust)
        assert robust == sorted(robust, reverse=True)
        assert not [c for c in report["checks"] if c["status"] == "warning"]


def test_crown_certifies_at_least_what_ibp_certifies(certified_reports):
    ibp = [p["robust"] for p in certified_reports["ibp"]["attacks"]["ibp"]["points"]]
    crown = [p["robust"] for p in certified_reports["crown"]["attacks"]["crown"]["points"]]
    assert all(c >= i for c, i in zip(crown, ibp, strict=True))
    assert crown[1] > ibp[1]  # on the default model CROWN is strictly tighter at ε = 0.01 (IBP certifies ~nothing)


def test_certify_bad_method_and_norm_are_usage_errors():
    assert_bad_input(invoke(["certify", "--method", "lp", "--limit", "8"]), "unknown method 'lp' for --method")
    assert_bad_input(invoke(["certify", "--norm", "1", "--limit", "8"]), "norms inf and 2")


def test_certify_unsupported_operator_exits_2_in_one_line():
    result = invoke(["certify", "--model", "factory_models:make_sorted", "--limit", "8", "--eps", "0,0.01"])
    line = assert_bad_input(result, after_loading=True)
    assert "sort" in line


@pytest.fixture(scope="module")
def sandwich() -> dict:
    args = ["eval", "--attack", "pgd", "--certify", "crown", "--eps", ",".join(EPS), "--limit", "64", "--json", "-"]
    return _json(invoke(args))


def test_eval_certify_adds_a_certified_curve_below_the_attack(sandwich):
    assert sandwich["attacks"]["crown"]["kind"] == "certified"
    assert sandwich["attacks"]["pgd"]["kind"] == "gradient"
    assert sandwich["config"]["certify"] == "crown"
    for cert, pgd in zip(sandwich["attacks"]["crown"]["points"], sandwich["attacks"]["pgd"]["points"], strict=True):
        assert cert["eps"] == pgd["eps"] and cert["robust"] <= pgd["robust"]
    assert sandwich["attacks"]["crown"]["points"][0]["robust"] == sandwich["clean_correct"]


def test_eval_certify_gates():
    base = ["eval", "--attack", "pgd", "--certify", "crown", "--eps", "0,0.03", "--limit", "32"]
    passed = invoke([*base, "--fail-under", "certified@0.03=0.0"])
    assert passed.exit_code == 0, passed.stderr
    failed = invoke([*base, "--fail-under", "certified@0.03=1.0", "--fail-under", "crown@0.03=0"])
    assert failed.exit_code == 1, failed.stderr
    assert "gate FAILED: certified at ε=0.03" in failed.stderr
    # without --certify there is no certified curve to gate: a usage error before anything runs
    assert_bad_input(
        invoke(["eval", "--attack", "pgd", "--eps", "0,0.01", "--limit", "8", "--fail-under", "certified@0.01=0.5"]),
        "certified",
    )


def test_certified_yet_fooled_is_an_internal_error(monkeypatch):
    import advgrad.evaluation.sweep as sweep

    def everything(bounded, x, y, logits, correct, config, monitor):  # a broken bound: every correct sample "certified"
        return correct.unsqueeze(0).expand(len(config.eps), -1).clone(), 0

    monkeypatch.setattr(sweep, "certify_batch", everything)
    result = invoke(["eval", "--attack", "pgd", "--certify", "crown", "--eps", "0,0.1", "--limit", "32"])
    assert result.exit_code == 3, (result.exit_code, result.stderr)
    assert "certified at ε=0.1 by crown yet fooled there by pgd" in result.stderr
    assert "sample " in result.stderr


def test_certified_counts_survive_the_resume_state():
    part = BatchTally(4, 3, [2, 2], [1, 2], [], Evidence(), certified=AttackTally.empty(2, 2))
    part.certified.add_point(0, torch.tensor([True, False, True, True]), torch.tensor([0, 1, 1, 0]), torch.zeros(0))
    back = BatchTally.from_state(json.loads(json.dumps(part.to_state())))
    assert back.certified.robust == [3, 0] and back.certified.robust_per_class[0] == [2, 1]
    total = BatchTally.empty(2, 2, 0, certify=True)
    total.merge(back)
    total.merge(back)
    assert total.certified.robust == [6, 0]


def test_certify_method_is_part_of_the_run_identity():
    plain = RunDescription([], EvalConfig(eps=[0.0, 0.01])).identity("cpu")
    crown = RunDescription([], EvalConfig(eps=[0.0, 0.01], certify="crown")).identity("cpu")
    ibp = RunDescription([], EvalConfig(eps=[0.0, 0.01], certify="ibp")).identity("cpu")
    assert len({json.dumps(d, sort_keys=True) for d in (plain, crown, ibp)}) == 3


def test_plot_band_lies_between_certified_and_attacked(sandwich):
    from advgrad.core.results import RobustnessReport
    from advgrad.report.plot import example_blocks
    from advgrad.report.plot import sandwich as band_of

    report = RobustnessReport.from_dict(sandwich)
    xs, low, high = band_of(report)
    assert xs == [0.0, 0.01, 0.02]
    assert all(lo <= hi for lo, hi in zip(low, high, strict=True))
    assert low == [100 * p["accuracy"] for p in sandwich["attacks"]["crown"]["points"]]
    assert [name for name, _ in example_blocks(report)] == ["pgd"]  # a bound has no adversarial examples
    del report.attacks["crown"]
    assert band_of(report) is None


def test_certify_reads_a_config_file(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('method = "ibp"\neps = ["0", "0.01"]\nlimit = 16\n')
    report = _json(invoke(["certify", "--config", config, "--json", "-"]))
    assert list(report["attacks"]) == ["ibp"] and report["n_samples"] == 16 and report["eps"] == [0.0, 0.01]
    config.write_text('certify = "ibp"\nattack = "fgsm"\neps = ["0", "0.01"]\nlimit = 16\n')
    report = _json(invoke(["eval", "--config", config, "--json", "-"]))
    assert report["attacks"]["ibp"]["kind"] == "certified" and report["config"]["certify"] == "ibp"


def test_certify_refuses_reduced_precision_and_compile():
    assert_bad_input(invoke(["certify", "--precision", "bf16", "--limit", "8"]), "float32 only")
    assert_bad_input(invoke(["eval", "--certify", "crown", "--compile", "--limit", "8"]), "drop --compile")


def test_eval_certify_resumes_with_its_certified_counts(tmp_path, monkeypatch):
    from report_helpers import comparable
    from test_resume import interrupting_after

    import advgrad.cli.state as cli_state

    monkeypatch.setenv("ADVGRAD_STATE_DIR", str(tmp_path / "state"))
    args = [
        "eval",
        "--attack",
        "fgsm",
        "--certify",
        "ibp",
        "--eps",
        "0,0.01",
        "--limit",
        "40",
        "--batch-size",
        "10",
        "--json",
        "-",
    ]
    whole = invoke([*args, "--no-resume"])
    assert whole.exit_code == 0, whole.stderr
    with monkeypatch.context() as patch:
        patch.setattr(cli_state, "sweep_progress", interrupting_after(2))
        stopped = invoke(args)
    assert stopped.exit_code == 130, stopped.stderr
    [folder] = list((tmp_path / "state").glob("eval-*"))
    assert len(list(folder.glob("batch-*.pt"))) == 2
    other = invoke([*args[:4], "crown", *args[5:]])  # another bound method is another run: nothing restored
    assert other.exit_code == 0 and "resuming" not in other.stderr
    resumed = invoke(args)
    assert resumed.exit_code == 0, resumed.stderr
    assert "resuming: 2 finished batches restored" in resumed.stderr
    assert comparable(json.loads(resumed.stdout)) == comparable(json.loads(whole.stdout))
    report = json.loads(resumed.stdout)
    assert report["attacks"]["ibp"]["points"][0]["robust"] == report["clean_correct"]


def test_certify_short_m_is_the_model_option():
    # -m is --model in every command; certify's --method must not take it
    result = invoke(["certify", "-m", "factory_models:make_sorted", "--limit", "8", "--eps", "0"])
    assert_bad_input(result, "aten.sort", after_loading=True)


def _rendered(renderable) -> str:
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), width=200)
    console.print(renderable)
    return console.file.getvalue()


def test_certification_speaks_its_own_language(certified_reports, sandwich):
    """A bound is a method, not an attack: its cost is the bounds it computed (one per correctly
    classified sample and ε), not "0 forward passes"; beside attacks its column says it is a lower
    bound; a certify-only figure is titled certified accuracy and says nothing of adversarial examples."""
    from advgrad.core.results import RobustnessReport
    from advgrad.report.plot import report_figure
    from advgrad.report.table import cost_table, report_heading, report_table

    crown = RobustnessReport.from_dict(certified_reports["crown"])
    curve = crown.attacks["crown"]
    assert curve.bounds_computed == crown.clean_correct * len(EPS) and curve.forward_samples == 0
    cost = _rendered(cost_table(crown))
    assert "method" in cost and "attack" not in cost and f"{curve.bounds_computed:,} bounds" in cost
    assert "certified accuracy (a lower bound" in report_heading(crown)
    figure = report_figure(crown)
    assert figure.axes[0].get_title().startswith("Certified accuracy")
    assert "under attack" not in figure.axes[0].get_title()
    assert "No adversarial examples were found" not in figure.texts[-1].get_text()

    both = RobustnessReport.from_dict(sandwich)
    assert both.attacks["pgd"].bounds_computed is None
    assert "crown (lower bound)" in _rendered(report_table(both)) and "pgd (lower" not in _rendered(report_table(both))
    assert "attack / method" in _rendered(cost_table(both))
    heading = report_heading(both)
    assert "under attack (an upper bound)" in heading and "certified (a lower bound)" in heading


def test_the_training_line_names_the_bound_it_certified_with():
    from types import SimpleNamespace

    from advgrad.cli.commands.train import _epoch_line

    entry = SimpleNamespace(
        epoch=3,
        loss=0.5,
        train_accuracy=0.9,
        val_accuracy=0.8,
        val_robust_accuracy=0.6,
        val_certified_accuracy=0.4,
        val_fgsm_accuracy=None,
        seconds=1.0,
    )
    config = SimpleNamespace(epochs=10, eps=SimpleNamespace(label="0.1"), method="crown-ibp", bound="crown-ibp")
    line = _epoch_line(entry, config)
    assert "val crown-ibp-certified@0.1 40.0%" in line and "val pgd-10@0.1 60.0%" in line
    config.method, config.bound = "sabr", "ibp"  # SABR and MTL-IBP validate with plain IBP
    assert "val ibp-certified@0.1 40.0%" in _epoch_line(entry, config)
