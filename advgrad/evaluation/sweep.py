"""The robustness sweep: batches × attacks × ε → a :class:`RobustnessReport`.

For every batch the clean predictions are computed once. Each attack then runs over the ε values
in increasing order on the samples still classified correctly: a sample misclassified cleanly is
never attacked, and an adversarial example found within ε₁ is also one within ε₂ > ε₁, so a
sample fooled at ε₁ counts as fooled at every larger ε and is not attacked again. Inside an
attack a sample leaves the batch as soon as an iterate fools the model (early stop).

Every adversarial example is re-checked before it is counted: a fresh forward pass must
misclassify it and its perturbation must lie inside the ε-ball and the box. A run whose attacks
use expectation over transformation (``eot`` > 1) treats the model as randomized and makes every
deciding prediction that many times (:mod:`advgrad.evaluation.randomized`): correct only when all are correct,
fooled when any is wrong.

A minimal-perturbation attack (``kind == "minimal"``: DeepFool, CW) runs once per batch without a
budget; a sample counts as fooled at ε when its adversarial example, confirmed by a forward pass,
has norm ≤ ε (up to a relative 10⁻⁵ for float rounding, after which the example is projected onto
the ε-ball and checked again). One run gives the whole curve and the median minimal norm.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from advgrad.core.errors import UsageError
from advgrad.core.gradient import frozen
from advgrad.core.losses import finite_rows
from advgrad.core.results import RobustnessReport
from advgrad.core.seeding import generator_for
from advgrad.corruptions import SEVERITIES
from advgrad.evaluation.assemble import assemble_report
from advgrad.evaluation.attack_sweep import AttackSweep, CleanBatch
from advgrad.evaluation.binarization import binarization_test, wanted
from advgrad.evaluation.certified import certify_batch, smoothed_batch, verify_batch
from advgrad.evaluation.corrupted import corrupted_batch, corruption_passes
from advgrad.evaluation.counting import CountingModel, SampleCounter
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.evidence import GRADIENT_SAMPLES, measure
from advgrad.evaluation.randomized import prediction_passes, wrong_in_repeats
from advgrad.evaluation.records import BatchRecords, clean_margin
from advgrad.evaluation.tally import AttackTally, BatchTally
from advgrad.execution.distributed import LocalExchange
from advgrad.execution.progress import Monitor, PassCounter, SilentMonitor
from advgrad.io.probe import check_logits
from advgrad.verdicts.checks import run_checks


class BatchStore(Protocol):
    """Where finished batches are kept so that an interrupted run can continue
    (:class:`advgrad.evaluation.resume.RunState`)."""

    def restore(self, batch_index: int) -> BatchTally | None: ...

    def save(self, batch_index: int, tally: BatchTally) -> None: ...


class BatchExchange(Protocol):
    """How the processes of a run share their finished batches: each runs its own batches and
    adds everyone's to its totals in batch order (:class:`advgrad.execution.distributed.Shard` under
    torchrun; :class:`advgrad.execution.distributed.LocalExchange` for a process alone)."""

    world_size: int

    def number(self, batches: Iterable[tuple[Tensor, Tensor]]) -> Iterable[tuple[int, tuple[Tensor, Tensor]]]: ...

    def samples_before(self, batch_index: int) -> int: ...

    def exchange(self, batch_index: int, part: BatchTally) -> list[BatchTally]: ...

    def drain(self) -> Iterable[BatchTally]: ...

    def total(self, value: int) -> int: ...


def _since(counted: SampleCounter, before: tuple[int, int]) -> tuple[int, int]:
    """The forward and backward sample-passes ``counted`` has made since it stood at ``before``."""
    return counted.samples - before[0], counted.backward_samples - before[1]


def _run_batch(
    counted: CountingModel,
    attacks: list[EvalAttack],
    config: EvalConfig,
    x: Tensor,
    y: Tensor,
    batch_index: int,
    before: int,
    done: BatchTally | None,
    monitor: Monitor,
    bounds: Callable[[Tensor], Any] | None = None,
    deadline: float | None = None,
) -> BatchTally:
    """Clean predictions, the checks' evidence and every attack's sweep on one batch.

    ``before`` samples precede this batch in the run: the first batches get a gradient pass for
    the checks. ``done`` holds batches before this one (in a distributed run, those finished so
    far): the examples they kept decide how many this batch still keeps (at least as many as the
    report takes from it; the report keeps the first ones by batch order)."""
    t0, clean_passes = time.perf_counter(), counted.passes
    with torch.no_grad():
        logits = counted(x)
    classes = check_logits(logits, y, allow_nonfinite=True)
    finite = finite_rows(logits)  # a sample without finite clean logits has no prediction: not correct
    correct = (logits.argmax(dim=1) == y) & finite
    if (config.predictions or 1) > 1:  # a randomized model: correct only when every prediction is
        correct &= ~wrong_in_repeats(counted, x, y, config.predictions - 1)[0]
    checks = SampleCounter(counted.model)  # the checks' passes, without counting their non-finite outputs
    evidence = measure(
        checks,
        x,
        y,
        logits,
        correct,
        gradients=config.gradient_evidence and before < GRADIENT_SAMPLES,
        generator=generator_for(x.device, config.seed, "evidence", batch_index),
        cost=before == 0,
    )
    part = BatchTally(
        n=y.shape[0],
        clean_correct=int(correct.sum()),
        class_counts=torch.bincount(y, minlength=classes).tolist(),
        clean_per_class=torch.bincount(y[correct], minlength=classes).tolist(),
        attacks=[AttackTally.empty(len(config.eps), classes) for _ in attacks],
        evidence=evidence,
        clean_seconds=time.perf_counter() - t0,
        clean_forward=counted.samples - clean_passes[0] + checks.samples,
        clean_backward=counted.backward_samples - clean_passes[1] + checks.backward_samples,
    )
    part.evidence.clean_nonfinite = int((~finite).sum())
    certified = radius = falsified = None
    if config.certify is not None and bounds is not None:
        t0, before_passes = time.perf_counter(), counted.passes
        part.certified = AttackTally.empty(len(config.eps), classes)
        if config.smoothing is not None:
            certified, part.certified.abstained, radius = smoothed_batch(counted, x, y, batch_index, config, monitor)
        elif config.bab is not None:
            found = verify_batch(
                bounds(x), x, y, correct, config, monitor, batch_index=batch_index, first=before, deadline=deadline
            )
            certified, falsified = found.verified, found.falsified
            part.certified.falsified = found.falsified.sum(dim=1).tolist()
            part.certified.counterexamples = found.counterexamples
            part.certified.bounds = found.bounds
        else:
            certified, part.certified.bounds = certify_batch(bounds(x), x, y, logits, correct, config, monitor)
        for j in range(len(config.eps)):
            part.certified.add_point(j, certified[j], y, torch.zeros(0))
        part.certified.seconds += time.perf_counter() - t0
        part.certified.add_passes(0, *_since(counted, before_passes))  # one computation serves every ε
    batch = CleanBatch(x, y, logits, correct, batch_index, classes, certified, before)
    kept = [0] * len(attacks) if done is None else done.examples_kept()
    part.records = BatchRecords(
        before,
        y.cpu(),
        batch.prediction.cpu(),
        correct.cpu(),
        clean_margin(logits, y).cpu(),
        [],
        certified=None if certified is None else certified.cpu(),
        radius=radius,
        x=x.cpu() if config.keep_adversarial else None,
        falsified=None if falsified is None else falsified.cpu(),
    )
    for a, attack in enumerate(attacks):
        tally = part.attacks[a]
        t0 = time.perf_counter()
        sweep = AttackSweep(
            counted, attack, config, batch, a, tally, keep=max(config.examples - kept[a], 0), monitor=monitor
        )
        sweep.run()
        part.records.attacks.append(sweep.records.finish())
        tally.seconds += time.perf_counter() - t0
    if config.corruptions:
        part.corruptions = corrupted_batch(counted, x, y, before, config, monitor)
    return part


def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    attacks: list[EvalAttack],
    config: EvalConfig,
    *,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
    state: BatchStore | None = None,
    shard: BatchExchange | None = None,
    monitor: Monitor | None = None,
    records: Callable[[BatchRecords], None] | None = None,
) -> RobustnessReport:
    """Clean accuracy and accuracy under each attack at each ε of ``config``, with sanity checks.

    ``batches`` yields (x, y) on any device; they are moved to ``device``. ``progress`` is called
    with the number of samples finished after each batch. With ``state``, each finished batch is
    saved there and a batch it already holds is not run again, so an interrupted run continues
    where it stopped (batch ``k`` must be the same samples in both runs) and gives the same report.
    With ``shard`` (a distributed run, :mod:`advgrad.execution.distributed`) ``batches`` are this process's
    share of the run and the report is the whole run's, equal to a single process's (timing aside);
    without it the process runs alone (:class:`advgrad.execution.distributed.LocalExchange`).
    With ``monitor`` (:mod:`advgrad.execution.progress`) each run of an attack at one ε is announced as it
    begins and ends, and every model call in between is counted (host-side, no synchronisation).
    With ``records``, each batch's per-sample records (:mod:`advgrad.evaluation.records`) are handed to
    it in batch order, resumed and distributed batches included.
    The model's mode and its parameters' ``requires_grad`` are restored afterwards.
    """
    device = torch.device(device)
    if config.smoothing is not None and attacks:
        raise UsageError(
            "randomized smoothing certifies the smoothed classifier, not the model: its certified accuracy is no "
            "lower bound under the attacks' numbers; run it alone (advgrad certify --method smoothing)",
            params="certify",
        )
    if config.predictions is None:
        config = dataclasses.replace(config, predictions=prediction_passes(a.params for a in attacks))
    names = [a.name for a in attacks]
    if len(set(names)) != len(names):
        raise UsageError(f"each attack may appear once in a sweep, got {', '.join(names)}")
    counted = CountingModel(model if monitor is None else PassCounter(model, monitor))
    monitor = SilentMonitor() if monitor is None else monitor
    exchange = LocalExchange() if shard is None else shard
    total: BatchTally | None = None
    resumed = 0
    started = time.perf_counter()
    # branch and bound's budget is the whole run's (this process's share of it, in a distributed run)
    deadline = None if config.bab is None or config.bab.budget is None else started + config.bab.budget
    bounded: list[Any] = []  # the model read once into a graph of bounded operators (first batch run)

    def bounds(x: Tensor) -> Any:
        if not bounded:
            from advgrad.bounds import BoundedModel

            bounded.append(BoundedModel(model, x[:1]))
        return bounded[0]

    def add(parts: Iterable[BatchTally]) -> None:  # in batch order, as one process adds them
        nonlocal total
        for part in parts:
            if total is None:
                total = BatchTally.empty(
                    len(config.eps),
                    len(part.class_counts),
                    len(attacks),
                    certify=part.certified is not None,
                    corruptions=len(config.corruptions),
                    severities=len(SEVERITIES),
                )
            total.merge(part)
            if records is not None and part.records is not None:
                records(part.records)
            if progress is not None:
                progress(total.n)

    first: list[tuple[Tensor, Tensor]] = []  # batch 0, for the binarization test
    with frozen(counted):
        for b, (x, y) in exchange.number(batches):
            if b == 0:
                first.append((x, y))
            part = state.restore(b) if state is not None else None
            if part is None:
                part = _run_batch(
                    counted,
                    attacks,
                    config,
                    x.to(device),
                    y.to(device),
                    b,
                    exchange.samples_before(b),
                    total,
                    monitor,
                    bounds if config.certify is not None else None,
                    deadline,
                )
                if state is not None:
                    state.save(b, part)
            else:
                resumed += 1
                runs = [1 if a.spec.kind == "minimal" else sum(e > 0 for e in config.eps) for a in attacks]
                monitor.skip(
                    part.n
                    * sum(
                        r * a.params.passes_per_sample(len(part.class_counts))
                        for r, a in zip(runs, attacks, strict=True)
                    )
                    + corruption_passes(config, part.n)
                )
            monitor.next_batch()
            add(exchange.exchange(b, part))
        add(exchange.drain())
        resumed = exchange.total(resumed)
    if total is None or total.n == 0:
        raise UsageError("no samples to evaluate: the data is empty")
    report = assemble_report(total, attacks, config, device)
    report.timing = {
        "total_seconds": round(time.perf_counter() - started, 4),
        "clean_seconds": round(total.clean_seconds, 4),
        "resumed_batches": resumed,
        "world_size": exchange.world_size,
    }
    if first and wanted(config, attacks, total.n, len(total.class_counts)):
        t0 = time.perf_counter()
        x, y = (t.to(device) for t in first[0])
        with frozen(model):
            report.diagnostics["binarization"] = binarization_test(model, x, y, attacks, config, report)
        report.timing["binarization_seconds"] = round(time.perf_counter() - t0, 4)
    report.checks = run_checks(report)
    return report
