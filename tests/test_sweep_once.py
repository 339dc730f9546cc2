"""advgrad/evaluation/attack_sweep.py, the sweep from the largest ε down (``strong``): a sample pays a
whole run at most once, the curve never rises with ε, and no ε reads higher than a run at that ε alone."""

from __future__ import annotations

import pytest
import torch

from advgrad.attacks import StrongParams, get_attack
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.sweep import evaluate
from advgrad.io.data.load_data import DataOptions, load_data
from advgrad.io.model.load_model import load_model

EPS = [0.02, 0.05, 0.08, 0.12]
PARAMS = StrongParams(steps=20, target_classes=1, survivor_queries=20, queries=40)


def _report(eps: list[float]):
    model = load_model(None).module.eval()
    x, y = load_data(None, DataOptions(split="test")).fetch(torch.arange(40))
    attack = EvalAttack(get_attack("strong"), PARAMS)
    return evaluate(model, [(x[:20], y[:20]), (x[20:], y[20:])], [attack], EvalConfig(eps=eps, gradient_evidence=False))


@pytest.mark.slow
def test_a_sweep_is_monotone_and_never_above_runs_at_each_eps_alone() -> None:
    sweep = _report(EPS).attacks["strong"]
    robust = [p.robust for p in sweep.points]
    assert robust == sorted(robust, reverse=True)
    alone = [_report([eps]).attacks["strong"] for eps in EPS]
    for point, single in zip(sweep.points, alone, strict=True):
        assert point.robust <= single.points[0].robust
    # seeded by ε's value: the largest ε is the run at that ε alone, pass for pass
    assert (sweep.points[-1].robust, sweep.points[-1].forward_samples) == (
        alone[-1].points[0].robust,
        alone[-1].forward_samples,
    )
    # the largest ε runs on every clean-correct sample; each smaller ε only on those fooled above it
    assert sweep.forward_samples < sum(single.forward_samples for single in alone)
    assert all(p.max_norm is None or p.max_norm <= p.eps * (1 + 1e-5) for p in sweep.points)  # float32 norms
