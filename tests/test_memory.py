"""Bounded memory (advgrad/evaluation/sweep.py, advgrad/evaluation/tally.py): an evaluation holds counters and the
few images asked for, never something per sample or per batch (benchmarks/bench_memory.py
measures the process's peak)."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
import torch
from helpers import cycled_source

from advgrad.attacks import get_attack
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.sweep import evaluate
from advgrad.io.data.load_data import load_default
from advgrad.io.model.load_model import load_default_model

BATCH = 20
EARLY, BATCHES = 100, 200  # measured after 100 and after 200 batches (4,000 samples)


def live_tensors() -> int:
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


@pytest.mark.slow
def test_an_evaluation_holds_nothing_that_grows_with_the_samples():
    # (a minimal attack's exact median norm keeps one float per sample, by design: docs/scale.md)
    attacks = [
        EvalAttack(get_attack("fgsm"), get_attack("fgsm").make_params()),
        EvalAttack(get_attack("pgd"), get_attack("pgd").make_params(steps=3)),
    ]
    config = EvalConfig(eps=[0.0, 0.1, 0.3], examples=4)
    checkpoints = {EARLY: None, BATCHES: None}  # after these many batches
    batches = [0]

    def tick(done: int) -> None:
        batches[0] += 1
        if batches[0] in checkpoints:
            gc.collect()
            checkpoints[batches[0]] = (live_tensors(), tracemalloc.get_traced_memory()[0])

    tracemalloc.start()
    try:
        report = evaluate(
            load_default_model(),
            cycled_source(load_default(), BATCH * BATCHES).batches(BATCH),
            attacks,
            config,
            progress=tick,
        )
    finally:
        tracemalloc.stop()
    assert report.n_samples == BATCH * BATCHES
    assert all(len(kept) == 4 for kept in report.examples.values())  # the images asked for, no more
    (tensors_early, python_early), (tensors_late, python_late) = checkpoints.values()
    # 100 more batches, 2,000 more samples: a tensor kept per batch, or a number kept per sample
    # (≥ 32 bytes each: 64 KB), would show. torch keeps a few bytes per new batch shape it meets
    # (early stop makes many shapes; a cache that fills up and stops): that is the slack, and why
    # the first 100 batches are not measured (batches 50 to 150 grew by 22-28 KB, 150 to 250 by 8 KB).
    assert tensors_late <= tensors_early
    assert python_late - python_early < 24_000, python_late - python_early
