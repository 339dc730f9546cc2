"""The certified part of a batch: IBP/CROWN/α-CROWN bounds, branch and bound's verdicts, or randomized
smoothing, at each ε of the run."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from advgrad.core.results import Counterexample
from advgrad.core.seeding import generator_for
from advgrad.evaluation.eval_config import BAB, EvalConfig
from advgrad.execution.progress import Monitor


def certify_passes(config: EvalConfig, samples: int) -> int:
    """Progress units of the certification part of a run over ``samples`` samples: one per sample and
    ε for the bounds, n0 + N forward passes per sample for smoothing, none without certification."""
    if config.certify is None:
        return 0
    if config.smoothing is not None:
        return samples * config.smoothing.passes_per_sample()
    return samples * len(config.eps)


def certify_batch(
    bounded: Any, x: Tensor, y: Tensor, logits: Tensor, correct: Tensor, config: EvalConfig, monitor: Monitor
) -> tuple[Tensor, int]:
    """bool (len(eps), N): classified correctly and every margin lower bound of ``bounded``
    (:class:`advgrad.bounds.BoundedModel`) over the ε-ball ∩ [0, 1] above the rounding slack
    (:data:`advgrad.bounds.CERTIFY_SLACK` times 1 + the sample's largest clean |logit|, as
    :func:`advgrad.bounds.certified` requires); and the bounds computed (samples × ε)."""
    from advgrad.bounds import CERTIFY_SLACK

    keep = correct.nonzero().squeeze(1)  # bound only the samples classified correctly
    slack = CERTIFY_SLACK * (1 + logits[keep].abs().amax(dim=1, keepdim=True))
    rows = []
    for eps in config.eps:
        monitor.begin(str(config.certify), eps, 1, int(keep.numel()), x.shape[0])
        row = torch.zeros_like(correct)
        if keep.numel():
            low = bounded.margin_bounds(
                x[keep], y[keep], float(eps), norm=str(config.norm), method=config.certify, fixed=config.fixed
            )
            row[keep] = (low > slack.to(low.device)).all(dim=1).to(row.device)
        rows.append(row)
        monitor.on_pass()
        monitor.end()
    return torch.stack(rows), int(keep.numel()) * len(config.eps)


def smoothed_batch(
    model: nn.Module, x: Tensor, y: Tensor, batch_index: int, config: EvalConfig, monitor: Monitor
) -> tuple[Tensor, int, Tensor]:
    """Randomized smoothing's CERTIFY on one batch (noise seeded by the batch's index, so a batch
    gives the same certificates alone, resumed or in a distributed run): bool (len(eps), N), the
    smoothed classifier returns the label with a certified L2 radius ≥ ε; how many samples it
    abstained on; and per sample the certified L2 radius of its label (0 when it returns another class
    or abstains). The model sees at most as many noisy rows per call as the batch has samples."""
    from advgrad.bounds.smoothing import ABSTAIN

    params = config.smoothing
    rows = max(1, x.shape[0])
    monitor.begin(
        "smoothing", None, params.model_calls(x.shape[0], rows), x.shape[0], x.shape[0] * params.passes_per_sample()
    )
    gen = generator_for(x.device, config.seed, batch_index, "smoothing")
    result = params.certify(model, x, batch_size=rows, generator=gen)
    monitor.end()
    label = y.detach().cpu()
    hit = result.prediction == label
    radius = torch.tensor(config.eps, dtype=torch.float64)[:, None]
    certified = (hit[None, :] & (result.radius[None, :] >= radius)).to(y.device)
    radius_of_label = torch.where(hit, result.radius.double(), torch.zeros_like(result.radius, dtype=torch.float64))
    return certified, int((result.prediction == ABSTAIN).sum()), radius_of_label
    return certified, int((result.prediction == ABSTAIN).sum())


@dataclass
class BatchVerdicts:
    """Branch and bound on one batch: bool (len(eps), N) ``verified`` and ``falsified`` (a clean-correct
    sample with a confirmed counterexample within that ε; it stays falsified at every larger ε), and
    one :class:`~advgrad.core.results.Counterexample` per falsified sample, at the smallest ε it was found."""

    verified: Tensor
    falsified: Tensor
    counterexamples: list[Counterexample]
    bounds: int = 0  # bound computations: one per sample and ε at the root, one per sub-domain bounded


def verify_batch(
    bounded: Any,
    x: Tensor,
    y: Tensor,
    correct: Tensor,
    config: EvalConfig,
    monitor: Monitor,
    *,
    batch_index: int,
    first: int,
    deadline: float | None,
) -> BatchVerdicts:
    """Branch and bound (:meth:`advgrad.bounds.BoundedModel.verify`) at each ε, in increasing order, on
    the clean-correct samples not falsified at a smaller ε. ``first``: the run's index of the batch's
    first sample (the counterexamples' indices); ``deadline``: when the run's budget ends
    (:func:`time.perf_counter`), None without one. The attack's random starts are seeded by the run's
    seed, the batch and the ε."""
    from advgrad.bounds.bab import FALSIFIED, VERIFIED

    params = config.bab
    n = x.shape[0]
    verified = torch.zeros(len(config.eps), n, dtype=torch.bool, device=x.device)
    falsified = torch.zeros_like(verified)
    found: list[Counterexample] = []
    bounds = 0
    gone = ~correct  # not worth verifying: misclassified, or falsified at a smaller ε
    for j, eps in enumerate(config.eps):
        todo = (~gone).nonzero().squeeze(1)
        monitor.begin(BAB, eps, 1, int(todo.numel()), n, "sample")
        if todo.numel():
            left = None if deadline is None else max(0.0, deadline - time.perf_counter())
            budget = left if params.budget is None or left is None else min(left, params.budget)
            verdicts = bounded.verify(
                x[todo],
                y[todo],
                float(eps),
                norm=str(config.norm),
                fixed=config.fixed,
                params=dataclasses.replace(params, budget=budget),
                generator=generator_for(x.device, config.seed, batch_index, BAB, j),
                progress=lambda v, f, u: monitor.note(f"verified {v} · falsified {f} · undecided {u}"),
            )
            status = verdicts.status.to(x.device)
            bounds += int(todo.numel()) + int(verdicts.domains.sum())
            verified[j, todo] = status == VERIFIED
            new = todo[status == FALSIFIED]
            points = verdicts.counterexample[(status == FALSIFIED).cpu()]
            with torch.no_grad():
                pred = bounded.logits(points.to(x.device)).argmax(dim=1) if len(points) else new
            for i, point, p in zip(new.tolist(), points, pred.tolist(), strict=True):
                found.append(Counterexample(first + i, float(eps), point, int(y[i]), int(p)))
            gone[new] = True
        falsified[j] = gone & correct
        monitor.on_pass()
        monitor.end()
    return BatchVerdicts(verified, falsified, found, bounds)
