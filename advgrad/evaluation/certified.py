"""The certified part of a batch: IBP/CROWN bounds, or randomized smoothing, at each ε of the run."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from advgrad.core.seeding import generator_for
from advgrad.evaluation.eval_config import EvalConfig
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
