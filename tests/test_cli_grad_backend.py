"""advgrad/evaluation/input_gradients.py: what `advgrad grad` computes, gathered over batches, and its rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import linear_model, linear_setup

from advgrad.core.errors import UsageError
from advgrad.core.gradient import input_gradient
from advgrad.evaluation.input_gradients import gradients, sample_rows


def test_gradients_over_batches_matches_one_batch():
    w, b, x, y = linear_setup(3, seed=6, n=7)
    model = linear_model(w, b)
    batches = [(x[i : i + 3], y[i : i + 3]) for i in range(0, 7, 3)]
    result = gradients(model, batches)
    grad, loss, logits = input_gradient(model, x, y)
    assert torch.allclose(result.grad, grad, rtol=1e-12)
    assert torch.allclose(result.loss, loss, rtol=1e-12)
    assert torch.equal(result.pred, logits.argmax(1)) and torch.equal(result.y, y) and torch.equal(result.x, x)
    norms = result.norms()
    flat = grad.flatten(1).numpy()
    assert np.allclose(norms["l1"].numpy(), np.abs(flat).sum(1))
    assert np.allclose(norms["l2"].numpy(), np.sqrt((flat**2).sum(1)))
    assert np.allclose(norms["linf"].numpy(), np.abs(flat).max(1))


def test_gradients_of_no_batches_is_an_error():
    with pytest.raises(UsageError):
        gradients(linear_model(torch.eye(2, dtype=torch.float64)), [])


def test_sample_rows_hold_each_samples_norms():
    w, b, x, y = linear_setup(3, seed=2, n=5)
    result = gradients(linear_model(w, b), [(x, y)])
    rows = sample_rows(result)
    flat = result.grad.flatten(1)
    assert [row["index"] for row in rows] == list(range(5))
    for i, row in enumerate(rows):
        assert row["label"] == int(y[i]) and row["pred"] == int(result.pred[i])
        assert row["l1"] == pytest.approx(float(flat[i].abs().sum()), rel=1e-6)
        assert row["l2"] == pytest.approx(float(flat[i].norm()), rel=1e-6)
        assert row["linf"] == pytest.approx(float(flat[i].abs().max()), rel=1e-6)
        assert row["loss"] == pytest.approx(float(result.loss[i]), rel=1e-6)
