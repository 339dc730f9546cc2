"""`advgrad certify --method smoothing`: randomized smoothing from the command line."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest
import torch
from factory_models import make_linear_two_class
from helpers import assert_bad_input, invoke
from scipy.stats import beta

from advgrad.report.schema import report_schema

SIGMA, N, ALPHA = 0.25, 400, 0.001
RADII = [0.0, 0.1, 0.25, 0.5]


def _report(result) -> dict:
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)
    report = json.loads(result.stdout)
    jsonschema.Draft202012Validator(report_schema()).validate(report)
    return report


@pytest.fixture(scope="module")
def linear_data(tmp_path_factory) -> tuple[str, torch.Tensor]:
    """60 8×8 inputs labelled by the linear model's own decision, at L2 distances from its boundary
    spread over [0, 0.9]; returns the data file and those distances."""
    model = make_linear_two_class()
    gen = torch.Generator().manual_seed(1)
    w = model.w / model.w.norm()
    distance = torch.linspace(0.0, 0.9, 60)
    side = torch.where(torch.arange(60) % 2 == 0, 1.0, -1.0)
    x = (0.5 + 0.02 * (torch.rand(60, 64, generator=gen) - 0.5)).double()
    x = x - ((x - 0.5) @ w.double())[:, None] * w.double()  # onto the boundary, then out by the distance
    x = (x + (side * distance).double()[:, None] * w.double()).float().reshape(60, 1, 8, 8)
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    logits = model(x)
    y = logits.argmax(1)
    true_distance = (logits[:, 0].abs() / model.w.norm()).detach()
    path = tmp_path_factory.mktemp("linear") / "linear.pt"
    torch.save({"x": x, "y": y}, path)
    return str(path), true_distance


def _smoothing_args(data: str, *extra: str) -> list[str]:
    return [
        "certify",
        "--method",
        "smoothing",
        "--model",
        "factory_models:make_linear_two_class",
        "--data",
        data,
        "--sigma",
        str(SIGMA),
        "--samples",
        str(N),
        "--alpha",
        str(ALPHA),
        "--eps",
        ",".join(str(r) for r in RADII),
        "--batch-size",
        "20",
        "--json",
        "-",
        *extra,
    ]


@pytest.fixture(scope="module")
def linear_report(linear_data) -> dict:
    return _report(invoke(_smoothing_args(linear_data[0], "--no-resume")))


def test_linear_classifier_radii_match_the_closed_form(linear_data, linear_report):
    # For a linear classifier the smoothed one certifies exactly the distance d to the boundary when
    # p_A is known (Cohen et al.): p_A = Φ(d/σ). With N samples the Clopper–Pearson bound lowers it,
    # so at radius r: every sample with d ≥ r + slack(d) is certified, and none with d < r (w.p. ≥ 1 − α).
    _, d = linear_data
    curve = linear_report["attacks"]["smoothing"]
    assert curve["kind"] == "certified" and curve["norm"] == "2"
    assert curve["params"] == {"method": "smoothing", "sigma": SIGMA, "n0": 100, "samples": N, "alpha": ALPHA}
    normal = torch.distributions.Normal(0.0, 1.0)
    for point, r in zip(curve["points"], RADII, strict=True):
        at_most = int((d >= r).sum())
        # a vote count 4 standard deviations below its mean N·p_A, p_A = Φ(d/σ), and scipy's Clopper–Pearson
        # bound on it: a sample whose radius is above r even then is certified (all but surely)
        p = normal.cdf(d / SIGMA).double()
        k = torch.floor(N * p - 4 * torch.sqrt(N * p * (1 - p)) - 1).clamp(min=0)
        p_low = torch.from_numpy(beta.ppf(ALPHA, k.numpy(), (N - k + 1).numpy())).nan_to_num(0.0)
        surely = int(((p_low > 0.5) & (SIGMA * normal.icdf(p_low.clamp(0.5, 1 - 1e-12).float()) >= r + 1e-6)).sum())
        assert surely <= point["robust"] <= at_most, (r, surely, point["robust"], at_most)
    # the largest radius N samples can give is σ·Φ⁻¹(α^(1/N)); nothing is certified beyond it
    assert SIGMA * normal.icdf(torch.tensor(ALPHA ** (1 / N))) < 0.75


def test_abstentions_are_counted_and_never_certified(linear_report):
    curve = linear_report["attacks"]["smoothing"]
    at_zero = curve["points"][0]["robust"]
    assert curve["abstained"] > 0  # the samples on the boundary cannot be decided
    assert at_zero + curve["abstained"] <= linear_report["n_samples"]
    assert [p["robust"] for p in curve["points"]] == sorted((p["robust"] for p in curve["points"]), reverse=True)


def test_a_fixed_seed_gives_identical_reports_and_another_seed_another_draw(linear_data, linear_report):
    again = _report(invoke(_smoothing_args(linear_data[0], "--no-resume")))
    assert again["attacks"]["smoothing"]["points"] == linear_report["attacks"]["smoothing"]["points"]
    assert again["attacks"]["smoothing"]["abstained"] == linear_report["attacks"]["smoothing"]["abstained"]
    other = invoke(_smoothing_args(linear_data[0], "--no-resume", "--seed", "7"))
    assert other.exit_code == 0
    # the draws differ, yet the counts are statistically the same model's: a loose agreement
    a = [p["robust"] for p in linear_report["attacks"]["smoothing"]["points"]]
    b = [p["robust"] for p in json.loads(other.stdout)["attacks"]["smoothing"]["points"]]
    assert all(abs(u - v) <= 6 for u, v in zip(a, b, strict=True))


def test_smoothing_resumes_to_the_same_report(linear_data, tmp_path, monkeypatch):
    from report_helpers import comparable
    from test_resume import interrupting_after

    import advgrad.cli.state as cli_state

    monkeypatch.setenv("ADVGRAD_STATE_DIR", str(tmp_path / "state"))
    args = _smoothing_args(linear_data[0])
    whole = _report(invoke([*args, "--no-resume"]))
    with monkeypatch.context() as patch:
        patch.setattr(cli_state, "sweep_progress", interrupting_after(2))
        stopped = invoke(args)
    assert stopped.exit_code == 130, stopped.stderr
    assert "2 finished batches are saved" in stopped.stderr
    other = invoke([*args[:8], "0.5", *args[9:]])  # another σ is another run: nothing restored
    assert other.exit_code == 0 and "resuming" not in other.stderr
    resumed = invoke(args)
    assert "resuming: 2 finished batches restored" in resumed.stderr
    assert comparable(_report(resumed)) == comparable(whole)
    assert json.loads(resumed.stdout)["attacks"]["smoothing"]["abstained"] == whole["attacks"]["smoothing"]["abstained"]


def test_smoothing_certifies_models_the_bounds_refuse():
    # gradient-free and graph-free: a model with torch.sort, which IBP/CROWN cannot bound, still works
    args = ["certify", "--model", "factory_models:make_sorted", "--limit", "8", "--eps", "0,0.5", "--json", "-"]
    assert_bad_input(invoke(args), after_loading=True)
    report = _report(invoke([*args[:1], "--method", "smoothing", "--samples", "100", *args[1:], "--no-resume"]))
    curve = report["attacks"]["smoothing"]
    assert curve["forward_samples"] == 8 * (100 + 100)
    assert curve["points"][0]["robust"] + curve["abstained"] <= 8


def test_gates_judge_the_smoothed_curve(linear_data):
    passing = invoke(_smoothing_args(linear_data[0], "--no-resume", "--fail-under", "certified@0.1=0.3"))
    assert passing.exit_code == 0, passing.stderr
    failing = invoke(_smoothing_args(linear_data[0], "--no-resume", "--fail-under", "smoothing@0.5=0.99"))
    assert failing.exit_code == 1, failing.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sigma", "0"], "--sigma must be > 0"),
        (["--sigma", "-1"], "--sigma must be > 0"),
        (["--sigma", "nan"], "--sigma"),
        (["--samples", "50", "--n0", "100"], "--samples must be ≥ --n0"),
        (["--samples", "0"], "--samples"),
        (["--alpha", "1"], "--alpha must be < 1"),
        (["--alpha", "0"], "--alpha"),
        (["--norm", "inf"], "L2 radii only"),
    ],
)
def test_bad_smoothing_options_exit_2(extra, message):
    assert_bad_input(invoke(["certify", "--method", "smoothing", "--limit", "4", *extra]), message)


def test_eval_refuses_smoothing_beside_attacks():
    assert_bad_input(invoke(["eval", "--certify", "smoothing", "--limit", "4"]), "advgrad certify --method smoothing")


def test_smoothing_options_are_ignored_with_a_warning_by_the_bounds():
    result = invoke(["certify", "--method", "ibp", "--sigma", "0.5", "--limit", "8", "--eps", "0", "--json", "-"])
    assert result.exit_code == 0, result.stderr
    assert "--sigma only apply to --method smoothing" in result.stderr


def test_progress_counts_every_forward_pass(linear_data, monkeypatch):
    import contextlib

    import advgrad.cli.state as cli_state
    from advgrad.execution.progress import ProgressTracker

    seen = []

    @contextlib.contextmanager
    def recording(total, *, batches=None, verbose=False, eps_text=None):
        tracker = ProgressTracker(total, batches=batches)
        seen.append(tracker)
        yield tracker

    monkeypatch.setattr(cli_state, "sweep_progress", recording)
    _report(invoke(_smoothing_args(linear_data[0], "--no-resume")))
    [tracker] = seen
    assert tracker.total == 60 * (100 + N)
    assert tracker.done == tracker.total and math.isclose(tracker.fraction(), 1.0)
