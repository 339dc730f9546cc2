"""advgrad/core/losses.py: the per-sample objectives an attack maximises, checked on hand-computed logits."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from advgrad.core.errors import UsageError
from advgrad.core.losses import LOSSES, cross_entropy, dlr, get_loss, is_successful, margin

LOGITS = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 0.0, 3.0, 1.0]], dtype=torch.float64)
Y = torch.tensor([0, 1])


def _log_softmax_by_hand(z: list[float], k: int) -> float:
    return z[k] - math.log(sum(math.exp(v) for v in z))


def test_cross_entropy_is_negative_log_softmax():
    expected = [-_log_softmax_by_hand(LOGITS[i].tolist(), int(Y[i])) for i in range(2)]
    assert cross_entropy(LOGITS, Y).tolist() == pytest.approx(expected, rel=1e-12)


def test_targeted_cross_entropy_descends_towards_target():
    target = torch.tensor([3, 2])
    expected = [_log_softmax_by_hand(LOGITS[i].tolist(), int(target[i])) for i in range(2)]
    assert cross_entropy(LOGITS, Y, target).tolist() == pytest.approx(expected, rel=1e-12)


def test_margin_known_values():
    # row 0: max_{j≠0} z_j − z_0 = 1 − 2 = −1 (correct); row 1: 3 − 0 = 3 (misclassified)
    assert margin(LOGITS, Y).tolist() == [-1.0, 3.0]
    # targeted at t: z_t − max_{j≠t} z_j; row 0, t=1: 1 − 2 = −1; row 1, t=2: 3 − 1 = 2
    assert margin(LOGITS, Y, torch.tensor([1, 2])).tolist() == [-1.0, 2.0]


def test_dlr_known_values():
    # row 0: sorted (2, 1, 0, −1): −(2 − 1)/(2 − 0) = −0.5
    # row 1: y=1, z_y=0, max other 3, sorted (3, 1, 0, 0): −(0 − 3)/(3 − 0) = 1
    assert dlr(LOGITS, Y).tolist() == pytest.approx([-0.5, 1.0], abs=1e-9)
    # targeted, row 0 at t=3: −(2 − (−1))/(2 − (0 + (−1))/2) = −3/2.5
    # targeted, row 1 at t=2: −(0 − 3)/(3 − (0 + 0)/2) = 1
    got = dlr(LOGITS, Y, torch.tensor([3, 2])).tolist()
    assert got == pytest.approx([-3 / 2.5, 1.0], abs=1e-9)


@given(st.integers(0, 2**31 - 1), st.floats(-5, 5), st.floats(0.1, 10))
def test_dlr_is_invariant_to_shift_and_scale(seed, shift, scale):
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    base = dlr(logits, y)
    assert torch.allclose(dlr(logits * scale + shift, y), base, rtol=1e-6, atol=1e-9)


def test_dlr_needs_enough_classes():
    with pytest.raises(UsageError, match="3 classes"):
        dlr(torch.zeros(1, 2), torch.tensor([0]))
    with pytest.raises(UsageError, match="4 classes"):
        dlr(torch.zeros(1, 3), torch.tensor([0]), torch.tensor([1]))


@given(st.integers(0, 2**31 - 1))
def test_margin_positive_iff_misclassified(seed):
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(seed))
    y = torch.arange(6) % 4
    wrong = logits.argmax(1) != y
    assert torch.equal(margin(logits, y) > 0, wrong)


def test_every_loss_is_per_sample():
    for name, fn in LOSSES.items():
        assert get_loss(name) is fn
        assert fn(LOGITS, Y).shape == (2,)
        assert fn(LOGITS, Y, torch.tensor([2, 3])).shape == (2,)


def test_unknown_loss():
    with pytest.raises(UsageError, match="unknown loss"):
        get_loss("hinge")


def test_is_successful():
    pred_wrong = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # predictions 1, 0
    y = torch.tensor([1, 1])
    assert is_successful(pred_wrong, y).tolist() == [False, True]
    assert is_successful(pred_wrong, y, torch.tensor([0, 0])).tolist() == [False, True]
