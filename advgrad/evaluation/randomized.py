"""Predictions of a randomized model: how many forward passes decide whether a sample is correct.

A deterministic model gives one prediction per input. A randomized model (noise injection,
random resizing, stochastic activations) gives a random one, and a single forward pass could
credit robustness to a lucky draw. When a run's attacks use expectation over transformation
(``eot`` N > 1; ``autoattack-rand`` has N = 20) the run declares the model randomized, and every
prediction that decides a number is made N times (:func:`prediction_passes`):

* a sample counts as **correct** (clean) only when all N predictions are correct, with finite logits;
* a sample counts as **fooled** at an adversarial point when any of the N predictions is wrong
  (with finite logits).

So a sample is robust only when the model classified it correctly N times in a row at the clean
input and at the point the attack found. The share of such samples is at most the expected
accuracy of a single prediction (if a sample is classified correctly with probability p, all N
draws are correct with probability pᴺ ≤ p), so it never overstates robustness; a majority vote
over the N predictions could (it credits a sample correct with p = 0.6 nearly always). With N = 1
this is the single prediction of a deterministic model.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from advgrad.attacks.base import AttackParams, eot_draws
from advgrad.core.losses import finite_rows


def prediction_passes(params: Iterable[AttackParams]) -> int:
    """Forward passes per prediction in a run of attacks with these parameters: the largest EOT
    count among them (1 when none uses EOT)."""
    return max((eot_draws(p) for p in params), default=1)


def wrong_in_repeats(
    model: nn.Module, x: Tensor, y: Tensor, repeats: int, target: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Over ``repeats`` further forward passes on ``x``: per sample, whether any gave finite logits
    whose prediction is wrong (≠ ``y``; with ``target``, = the target), and the first such
    prediction (−1 where none). With ``repeats`` = 0 nothing runs: nothing is wrong."""
    hit = torch.zeros(y.shape[0], dtype=torch.bool, device=y.device)
    first = torch.full_like(y, -1)
    with torch.no_grad():
        for _ in range(max(0, repeats)):
            logits = model(x)
            pred = logits.argmax(dim=1)
            wrong = (pred != y if target is None else pred == target) & finite_rows(logits)
            first = torch.where(wrong & ~hit, pred, first)
            hit = hit | wrong
    return hit, first
