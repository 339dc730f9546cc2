"""advgrad/evaluation/counting.py: the report's forward and backward sample-passes equal the passes an
independent wrapper counts around the model, in all, per attack and per ε, with and without early stop.

The oracle counts forward samples in its ``forward`` and backward samples in the backward of an
identity autograd Function on the output (a different mechanism from the counter's tensor hook)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from advgrad.attacks import get_attack
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.sweep import evaluate

N, CLASSES = 12, 4
EPS = [0.05, 0.2]


class _Backward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, out: Tensor, oracle: Oracle) -> Tensor:
        ctx.oracle = oracle
        return out.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        ctx.oracle.backward += grad.shape[0]
        return grad, None


class Oracle(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.forward_count, self.backward = model, 0, 0

    def forward(self, x: Tensor) -> Tensor:
        self.forward_count += x.shape[0]
        out = self.model(x)
        return _Backward.apply(out, self) if out.requires_grad else out


def _model_and_data():
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, CLASSES)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    x = torch.rand(N, 1, 4, 4, generator=gen)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:2] = (y[:2] + 1) % CLASSES  # two samples misclassified cleanly: never attacked
    return model, x, y


ATTACKS = {
    "fgsm": {},
    "pgd": {"steps": 4},
    "apgd-ce": {"steps": 5},
    "square": {"queries": 20},
    "deepfool": {"steps": 5},
    "strong": {"steps": 4, "target_classes": 2, "survivor_queries": 5, "queries": 10},
}


def _run(name: str, eps: list[float], early_stop: bool, gradient_evidence: bool = False):
    model, x, y = _model_and_data()
    spec = get_attack(name)
    oracle = Oracle(model)
    config = EvalConfig(eps=eps, early_stop=early_stop, gradient_evidence=gradient_evidence)
    batches = [(x[:7], y[:7]), (x[7:], y[7:])]
    report = evaluate(oracle, batches, [EvalAttack(spec, spec.params_type(**ATTACKS[name]))], config)
    return report, oracle


class _Windows:
    """A sweep's monitor: the oracle's counts between the begin and the end of each ε's run."""

    def __init__(self, oracle: Oracle):
        self.oracle, self.spent, self.eps = oracle, {}, None

    def begin(self, attack, eps, steps, samples, units, unit="step") -> None:
        self.eps, self.start = eps, (self.oracle.forward_count, self.oracle.backward)

    def end(self) -> None:
        f, b = self.spent.get(float(self.eps), (0, 0))
        f += self.oracle.forward_count - self.start[0]
        b += self.oracle.backward - self.start[1]
        self.spent[float(self.eps)] = (f, b)

    def on_pass(self) -> None:
        pass

    def next_batch(self) -> None:
        pass

    def skip(self, units: int) -> None:
        pass


def _per_eps(name: str, early_stop: bool) -> dict[float, tuple[int, int]]:
    model, x, y = _model_and_data()
    spec = get_attack(name)
    oracle = Oracle(model)
    windows = _Windows(oracle)
    config = EvalConfig(eps=EPS, early_stop=early_stop, gradient_evidence=False)
    attack = EvalAttack(spec, spec.params_type(**ATTACKS[name]))
    evaluate(oracle, [(x[:7], y[:7]), (x[7:], y[7:])], [attack], config, monitor=windows)
    return windows.spent


@pytest.mark.parametrize("early_stop", [False, True], ids=["full", "early-stop"])
@pytest.mark.parametrize("name", list(ATTACKS))
def test_report_counts_equal_the_wrapped_model(name: str, early_stop: bool) -> None:
    both, oracle = _run(name, EPS, early_stop)
    curve = both.attacks[get_attack(name).name]
    passes = both.passes
    assert (passes["forward_samples"], passes["backward_samples"]) == (oracle.forward_count, oracle.backward)
    assert passes["forward_samples"] == passes["clean_forward_samples"] + curve.forward_samples
    assert passes["backward_samples"] == passes["clean_backward_samples"] + curve.backward_samples
    assert passes["clean_forward_samples"] == N and passes["clean_backward_samples"] == 0
    if get_attack(name).kind == "minimal":  # its one search is charged to the first ε: that ε alone spends it
        _, oracle_first = _run(name, EPS[:1], early_stop)
        first = (oracle_first.forward_count - N, oracle_first.backward)
        assert (curve.points[0].forward_samples, curve.points[0].backward_samples) == first
    else:  # a bounded attack's passes at each ε, measured from outside while the sweep runs that ε
        measured = {(p.eps, p.forward_samples, p.backward_samples) for p in curve.points}
        assert measured == {(eps, f, b) for eps, (f, b) in _per_eps(name, early_stop).items()}
    assert sum(p.forward_samples for p in curve.points) == curve.forward_samples
    assert sum(p.backward_samples for p in curve.points) == curve.backward_samples
    gradient = get_attack(name).kind != "score"
    assert (curve.backward_samples > 0) == gradient


def test_checks_passes_are_counted() -> None:
    report, oracle = _run("fgsm", EPS, False, gradient_evidence=True)
    passes = report.passes
    assert (passes["forward_samples"], passes["backward_samples"]) == (oracle.forward_count, oracle.backward)
    assert passes["clean_backward_samples"] > 0 and passes["clean_forward_samples"] > N


def test_rendered_reports_carry_the_counts() -> None:
    from advgrad.core.results import RobustnessReport
    from advgrad.report.markdown import render_markdown

    report, _ = _run("pgd", EPS, False)
    data = report.to_dict()
    assert data["passes"] == report.passes
    assert data["attacks"]["pgd"]["points"][1]["backward_samples"] == report.attacks["pgd"].points[1].backward_samples
    again = RobustnessReport.from_dict(data)
    assert (
        again.passes == report.passes
        and again.attacks["pgd"].backward_samples == report.attacks["pgd"].backward_samples
    )
    markdown = render_markdown(report)
    assert (
        f"| **run total** | — | {report.passes['forward_samples']:,} | {report.passes['backward_samples']:,} |"
        in markdown
    )


def test_a_cascade_reports_each_stage() -> None:
    """Every backward pass of ``strong`` happens inside a stage; the stages' forward passes leave out only
    the sweep's confirming passes and the one-sample probe of the class count; the stages' fooled
    samples are the curve's."""
    report, _ = _run("strong", EPS, True)
    curve = report.attacks["strong"]
    stages = curve.stages
    assert [s["name"] for s in stages][:2] == ["apgd-ce", "apgd-t-malt"]
    assert sum(s["backward_samples"] for s in stages) == curve.backward_samples
    assert sum(s["forward_samples"] for s in stages) < curve.forward_samples
    assert sum(s["fooled"] for s in stages) == report.clean_correct - curve.points[-1].robust
    assert report.to_dict()["attacks"]["strong"]["stages"] == stages
    plain, _ = _run("pgd", EPS, True)
    assert plain.attacks["pgd"].stages is None and "stages" not in plain.to_dict()["attacks"]["pgd"]
