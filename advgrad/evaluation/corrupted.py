"""The common corruptions of a batch: accuracy under each corruption at each severity."""

from __future__ import annotations

import time

import torch
from torch import Tensor

from advgrad.core.losses import finite_rows
from advgrad.corruptions import SEVERITIES, corrupt
from advgrad.evaluation.counting import CountingModel
from advgrad.evaluation.eval_config import EvalConfig
from advgrad.evaluation.randomized import wrong_in_repeats
from advgrad.evaluation.tally import CorruptionTally
from advgrad.execution.progress import CORRUPTION_UNIT, Monitor


def corrupted_batch(
    counted: CountingModel, x: Tensor, y: Tensor, first: int, config: EvalConfig, monitor: Monitor
) -> CorruptionTally:
    """Samples classified correctly under each corruption of ``config`` at each severity, the
    batch's first sample being sample ``first`` of the run (it seeds the corruptions' randomness,
    so the counts do not depend on the batch size, on resume or on the processes). With
    ``config.predictions`` > 1 (a randomized model) a sample is correct only when every
    prediction is."""
    t0, samples = time.perf_counter(), counted.samples
    tally = CorruptionTally.empty(len(config.corruptions), len(SEVERITIES))
    repeats = (config.predictions or 1) - 1
    n = x.shape[0]
    for i, name in enumerate(config.corruptions):
        monitor.begin(
            name, None, len(SEVERITIES) * (repeats + 1), n, len(SEVERITIES) * n * (repeats + 1), CORRUPTION_UNIT
        )
        for s, severity in enumerate(SEVERITIES):
            xc = corrupt(x, name, severity, seed=config.seed, first=first)
            with torch.no_grad():
                logits = counted(xc)
            correct = (logits.argmax(dim=1) == y) & finite_rows(logits)
            if repeats:
                correct &= ~wrong_in_repeats(counted, xc, y, repeats)[0]
            tally.correct[i][s] += int(correct.sum())
        monitor.end()
    tally.seconds += time.perf_counter() - t0
    tally.forward_samples += counted.samples - samples
    if first == 0 and n:
        tally.sample = x[0].detach().cpu().clone()
    return tally


def corruption_passes(config: EvalConfig, samples: int) -> int:
    """Model passes over one sample that the corruptions of ``config`` take for ``samples`` samples."""
    return samples * len(config.corruptions) * len(SEVERITIES) * (config.predictions or 1)
