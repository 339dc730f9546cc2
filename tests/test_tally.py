"""Per-batch tallies (advgrad/evaluation/tally.py): merging, state round trips, batches where nothing is fooled."""

from __future__ import annotations

import pytest
import torch
from report_helpers import run_default

from advgrad.core.results import Example
from advgrad.evaluation.evidence import Evidence
from advgrad.evaluation.tally import AttackTally, BatchTally


def test_attack_tally_counts_and_merges():
    a = AttackTally.empty(2, 3)
    y = torch.tensor([0, 1, 2, 2])
    a.add_point(0, torch.tensor([True, True, True, False]), y, torch.tensor([]))
    a.add_point(1, torch.tensor([True, False, False, False]), y, torch.tensor([0.1, 0.3, 0.2]))
    assert a.robust == [3, 1] and a.robust_per_class == [[1, 1, 1], [1, 0, 0]]
    assert a.norm_count == [0, 3] and a.norm_max[1] == pytest.approx(0.3) and abs(a.norm_sum[1] - 0.6) < 1e-6
    b = AttackTally.from_state(a.to_state())
    b.merge(a)
    assert b.robust == [6, 2] and b.robust_per_class[1] == [2, 0, 0] and b.norm_count == [0, 6]


def test_batch_tally_state_round_trip_with_examples():
    example = Example("pgd", 0.1, torch.rand(1, 8, 8), torch.rand(1, 8, 8), 3, 5)
    attack = AttackTally.empty(1, 2)
    attack.examples.append(example)
    part = BatchTally(4, 3, [2, 2], [1, 2], [attack], Evidence(gradient_samples=3, input_shape=[1, 8, 8]), 0.5)
    again = BatchTally.from_state(part.to_state())
    assert again.to_state()["attacks"][0]["robust"] == [0] and again.evidence.gradient_samples == 3
    assert torch.equal(again.attacks[0].examples[0].x_adv, example.x_adv)
    total = BatchTally.empty(1, 2, 1)
    total.merge(part)
    total.merge(again)
    assert (total.n, total.clean_correct, total.class_counts) == (8, 6, [4, 4])
    assert total.evidence.gradient_samples == 6 and total.examples_kept() == [2]


def test_a_batch_where_nothing_is_fooled():
    # at ε = 0.001 no digit changes class: every attacked batch finds no adversarial example
    report = run_default(eps=(0.0, 0.001), limit=20, batch_size=10)
    for curve in report.attacks.values():
        assert curve.points[1].robust == report.clean_correct
        assert curve.points[1].mean_norm is None and curve.points[1].max_norm is None
