"""The robustness sweep: batches × attacks × ε → a :class:`RobustnessReport`.

For every batch the clean predictions are computed once. Each attack then runs over the ε values
in increasing order on the samples still classified correctly: a sample misclassified cleanly is
never attacked, and an adversarial example found within ε₁ is also one within ε₂ > ε₁, so a
sample fooled at ε₁ counts as fooled at every larger ε and is not attacked again. Inside an
attack a sample leaves the batch as soon as an iterate fools the model (early stop).

Every adversarial example is re-checked before it is counted: a fresh forward pass must
misclassify it and its perturbation must lie inside the ε-ball and the box.

A minimal-perturbation attack (``kind == "minimal"``: DeepFool, CW) runs once per batch without a
budget; a sample counts as fooled at ε when its adversarial example, confirmed by a forward pass,
has norm ≤ ε (up to a relative 10⁻⁵ for float rounding, after which the example is projected onto
the ε-ball and checked again). One run gives the whole curve and the median minimal norm.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor, nn

from advgrad import __version__
from advgrad.attacks.base import AttackParams, AttackSpec, run_attack
from advgrad.attacks.minimal import find_minimal
from advgrad.checks import run_checks
from advgrad.errors import InternalError, UsageError
from advgrad.evidence import GRADIENT_SAMPLES, measure
from advgrad.gradient import frozen
from advgrad.io.probe import check_logits
from advgrad.losses import finite_rows
from advgrad.progress import Monitor, PassCounter
from advgrad.results import AttackCurve, CurvePoint, RobustnessReport, default_eps_label, float32_decimal
from advgrad.seeding import generator_for
from advgrad.tally import AttackTally, BatchTally
from advgrad.targets import resolve_targets
from advgrad.threat import NORM_TOLERANCE, Norm, ThreatModel


@dataclass
class EvalAttack:
    """One attack of the sweep: its registry entry, its parameters and its label in the report."""

    spec: AttackSpec
    params: AttackParams
    label: str | None = None

    @property
    def name(self) -> str:
        return self.label or self.spec.name


@dataclass
class EvalConfig:
    """What the sweep does besides the attacks: ε values, threat norm, target, seed, and how many
    adversarial examples per attack to keep for the report's image grid (``examples``).
    ``gradient_evidence`` spends one extra forward and backward pass on the clean-correct samples
    of the first batches to feed the gradient sanity checks; without it those checks do not apply.
    ``eps_labels`` (parallel to ``eps`` as given) are how reports print each ε, e.g. ``8/255``
    (:func:`advgrad.threat.parse_eps_labelled`); by default :func:`default_eps_label`."""

    eps: list[float]
    norm: Norm = "inf"
    target: int | str | None = None
    seed: int = 0
    early_stop: bool = True
    examples: int = 0
    gradient_evidence: bool = True
    extra: dict = field(default_factory=dict)
    eps_labels: list[str] | None = None

    def __post_init__(self) -> None:
        if not self.eps:
            raise UsageError("give at least one ε value")
        for e in self.eps:
            ThreatModel(self.norm, e)  # validates each ε
        if self.eps_labels is not None and len(self.eps_labels) != len(self.eps):
            raise UsageError("give one label per ε value")
        labels: dict[float, str] = {}
        for k, e in enumerate(self.eps):  # sorted and without repeats; the first label of a value wins
            labels.setdefault(float(e), default_eps_label(float(e)) if self.eps_labels is None else self.eps_labels[k])
        self.eps = sorted(labels)
        self.eps_labels = [labels[e] for e in self.eps]


class CountingModel(nn.Module):
    """Wraps a model and counts the samples it is run on (forward passes × batch size) and the
    output rows with a NaN or infinite logit (on the device: reading it is the only host sync)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.samples = 0
        self._nonfinite: Tensor | int = 0

    def forward(self, x: Tensor) -> Tensor:
        self.samples += x.shape[0]
        out = self.model(x)
        if isinstance(out, Tensor) and out.dim() == 2:
            self._nonfinite = self._nonfinite + (~finite_rows(out.detach())).sum()
        return out

    @property
    def nonfinite(self) -> int:
        """Output rows so far with a NaN or infinite logit."""
        return int(self._nonfinite)


def versions(device: torch.device | None = None) -> dict[str, str]:
    """Versions and machine facts that a report carries."""
    info = {
        "advgrad": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    if device is not None:
        info["device"] = str(device)
        if device.type == "cuda":
            info["device_name"] = torch.cuda.get_device_name(device)
    return info


class BatchStore(Protocol):
    """Where finished batches are kept so that an interrupted run can continue
    (:class:`advgrad.resume.RunState`)."""

    def restore(self, batch_index: int) -> BatchTally | None: ...

    def save(self, batch_index: int, tally: BatchTally) -> None: ...


class BatchExchange(Protocol):
    """How the processes of a distributed run share their finished batches
    (:class:`advgrad.distributed.Shard`): each runs its own batches and adds everyone's to its
    totals in batch order."""

    world_size: int

    def number(self, batches: Iterable[tuple[Tensor, Tensor]]) -> Iterable[tuple[int, tuple[Tensor, Tensor]]]: ...

    def samples_before(self, batch_index: int) -> int: ...

    def exchange(self, batch_index: int, part: BatchTally) -> list[BatchTally]: ...

    def drain(self) -> Iterable[BatchTally]: ...

    def total(self, value: int) -> int: ...


def _attack_batch(
    model: CountingModel,
    attack: EvalAttack,
    x: Tensor,
    y: Tensor,
    logits: Tensor,
    correct: Tensor,
    config: EvalConfig,
    tally: AttackTally,
    batch_index: int,
    attack_index: int,
    keep: int = 0,
    monitor: Monitor | None = None,
    classes: int = 10,
) -> None:
    """Run one attack over the ε sweep on one batch, updating ``tally`` (and keeping up to
    ``keep`` adversarial examples in it); ``monitor`` hears each run begin and end."""
    device = x.device
    # model calls of one run (the formula with one class: DeepFool's gradients per class share a call),
    # the run's budget in sample-passes, and what one call is
    budget = (attack.params.passes_per_sample(1), x.shape[0] * attack.params.passes_per_sample(classes),
              "query" if attack.spec.kind == "score" else "step")
    active = correct.nonzero().squeeze(1)
    found_norm = torch.full((x.shape[0],), float("nan"), device=device)
    target_gen = generator_for(device, config.seed, "target", batch_index, attack_index)
    targets = resolve_targets(config.target, logits, y, target_gen)
    if targets is not None:  # a sample whose label is its target cannot be attacked towards it
        active = active[targets[active] != y[active]]
        tally_fixed = (correct & (targets == y)).long()
    else:
        tally_fixed = torch.zeros_like(y)
    if attack.spec.kind == "minimal":
        gen = generator_for(device, config.seed, batch_index, attack_index, "minimal")
        if monitor is not None:
            monitor.begin(attack.name, None, budget[0], int(active.numel()), budget[1], budget[2])
        _minimal_sweep(model, attack, x, y, active, targets, tally_fixed, config, tally, gen, keep)
        if monitor is not None:
            monitor.end()
        return
    for j, eps in enumerate(config.eps):
        nonfinite_before = model.nonfinite
        if eps > 0 and monitor is not None:
            monitor.begin(attack.name, eps, budget[0], int(active.numel()), budget[1], budget[2])
        if eps > 0 and active.numel():
            threat = ThreatModel(config.norm, eps)
            gen = generator_for(device, config.seed, batch_index, attack_index, j)
            xa, ya = x[active], y[active]
            ta = None if targets is None else targets[active]
            x_adv = run_attack(
                attack.spec, model, xa, ya, threat=threat, params=attack.params, target=ta,
                generator=gen, early_stop=config.early_stop,
            )
            inside = threat.contains(x_adv, xa)
            if not bool(inside.all()):
                raise InternalError(  # run_attack clips every result, so this is a bug, never data
                    f"internal check failed: {attack.name} returned points outside the ε-ball at ε={eps}"
                )
            with torch.no_grad():
                out = model(x_adv)
            pred = out.argmax(dim=1)
            fooled = (pred != ya) & finite_rows(out)  # non-finite logits never count as fooled
            found_norm[active[fooled]] = threat.norm_of(x_adv[fooled] - xa[fooled]).float()
            if keep > len(tally.examples) and bool(fooled.any()):
                tally.add_examples(attack.name, eps, xa[fooled], x_adv[fooled], ya[fooled], pred[fooled], keep)
            active = active[~fooled]
        if eps > 0 and monitor is not None:
            monitor.end()
        still = torch.zeros_like(y)
        still[active] = 1
        still = (still | tally_fixed).bool()
        tally.add_point(j, still, y, found_norm[~torch.isnan(found_norm)])
        tally.nonfinite[j] += model.nonfinite - nonfinite_before


def _run_batch(
    counted: CountingModel,
    attacks: list[EvalAttack],
    config: EvalConfig,
    x: Tensor,
    y: Tensor,
    batch_index: int,
    before: int,
    done: BatchTally | None,
    monitor: Monitor | None = None,
) -> BatchTally:
    """Clean predictions, the checks' evidence and every attack's sweep on one batch.

    ``before`` samples precede this batch in the run: the first batches get a gradient pass for
    the checks. ``done`` holds batches before this one (in a distributed run, those finished so
    far): the examples they kept decide how many this batch still keeps (at least as many as the
    report takes from it; the report keeps the first ones by batch order)."""
    t0 = time.perf_counter()
    with torch.no_grad():
        logits = counted(x)
    classes = check_logits(logits, y, allow_nonfinite=True)
    finite = finite_rows(logits)  # a sample without finite clean logits has no prediction: not correct
    correct = (logits.argmax(dim=1) == y) & finite
    evidence = measure(counted.model, x, y, logits, correct, gradients=config.gradient_evidence and before < GRADIENT_SAMPLES)
    part = BatchTally(
        n=y.shape[0],
        clean_correct=int(correct.sum()),
        class_counts=torch.bincount(y, minlength=classes).tolist(),
        clean_per_class=torch.bincount(y[correct], minlength=classes).tolist(),
        attacks=[AttackTally.empty(len(config.eps), classes) for _ in attacks],
        evidence=evidence,
        clean_seconds=time.perf_counter() - t0,
    )
    part.evidence.clean_nonfinite = int((~finite).sum())
    kept = [0] * len(attacks) if done is None else done.examples_kept()
    for a, attack in enumerate(attacks):
        tally = part.attacks[a]
        t0, samples = time.perf_counter(), counted.samples
        _attack_batch(counted, attack, x, y, logits, correct, config, tally, batch_index, a,
                      keep=max(config.examples - kept[a], 0), monitor=monitor, classes=classes)
        tally.seconds += time.perf_counter() - t0
        tally.forward_samples += counted.samples - samples
    return part


def _minimal_sweep(
    model: CountingModel,
    attack: EvalAttack,
    x: Tensor,
    y: Tensor,
    active: Tensor,
    targets: Tensor | None,
    tally_fixed: Tensor,
    config: EvalConfig,
    tally: AttackTally,
    generator: torch.Generator,
    keep: int = 0,
) -> None:
    """One unbounded run of a minimal attack on the ``active`` samples gives every ε of the curve.

    At each ε the samples whose confirmed adversarial example has norm ≤ ε·(1 + 10⁻⁵) are projected
    onto the ε-ball (a no-op unless rounding put them a hair outside), checked for ball and box,
    and confirmed again by a forward pass before they count as fooled.
    """
    found_norm = torch.full((x.shape[0],), float("nan"), device=x.device)
    pending = torch.ones_like(active, dtype=torch.bool)  # per active sample: not yet counted as fooled
    if active.numel():
        xa, ya = x[active], y[active]
        ta = None if targets is None else targets[active]
        before = model.nonfinite
        result = find_minimal(attack.spec, model, xa, ya, norm=config.norm, params=attack.params, target=ta,
                              generator=generator)
        tally.nonfinite_search += model.nonfinite - before
        minimal = torch.where(result.fooled, result.norm.double(), torch.full_like(result.norm.double(), float("inf")))
        tally.minimal_norms.extend(minimal.cpu().tolist())
    for j, eps in enumerate(config.eps):
        near = (pending & (minimal <= eps * (1 + NORM_TOLERANCE))).nonzero().squeeze(1) if active.numel() else active
        if near.numel():
            threat = ThreatModel(config.norm, eps)
            x_eps = threat.clip(result.x_adv[near], xa[near])
            before = model.nonfinite
            with torch.no_grad():
                out = model(x_eps)
            pred = out.argmax(dim=1)
            confirmed = threat.contains(x_eps, xa[near]) & (pred != ya[near]) & finite_rows(out)
            tally.nonfinite[j] += model.nonfinite - before
            counted = near[confirmed]
            pending[counted] = False
            found_norm[active[counted]] = threat.norm_of(x_eps[confirmed] - xa[counted]).float()
            if keep > len(tally.examples) and counted.numel():  # the confirming pass's predictions: the
                # forward-pass count must not depend on how many examples a batch keeps (distributed runs)
                tally.add_examples(attack.name, eps, xa[counted], x_eps[confirmed], ya[counted], pred[confirmed], keep)
        still = torch.zeros_like(y)
        still[active[pending]] = 1
        tally.add_point(j, (still | tally_fixed).bool(), y, found_norm[~torch.isnan(found_norm)])


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
) -> RobustnessReport:
    """Clean accuracy and accuracy under each attack at each ε of ``config``, with sanity checks.

    ``batches`` yields (x, y) on any device; they are moved to ``device``. ``progress`` is called
    with the number of samples finished after each batch. With ``state``, each finished batch is
    saved there and a batch it already holds is not run again, so an interrupted run continues
    where it stopped (batch ``k`` must be the same samples in both runs) and gives the same report.
    With ``shard`` (a distributed run, :mod:`advgrad.distributed`) ``batches`` are this process's
    share of the run and the report is the whole run's, equal to a single process's (timing aside).
    With ``monitor`` (:mod:`advgrad.progress`) each run of an attack at one ε is announced as it
    begins and ends, and every model call in between is counted (host-side, no synchronisation).
    The model's mode and its parameters' ``requires_grad`` are restored afterwards.
    """
    device = torch.device(device)
    names = [a.name for a in attacks]
    if len(set(names)) != len(names):
        raise UsageError(f"each attack may appear once in a sweep, got {', '.join(names)}")
    counted = CountingModel(model if monitor is None else PassCounter(model, monitor))
    total: BatchTally | None = None
    resumed = 0
    started = time.perf_counter()

    def add(parts: Iterable[BatchTally]) -> None:  # in batch order, as one process adds them
        nonlocal total
        for part in parts:
            if total is None:
                total = BatchTally.empty(len(config.eps), len(part.class_counts), len(attacks))
            total.merge(part)
            if progress is not None:
                progress(total.n)

    with frozen(counted):
        for b, (x, y) in enumerate(batches) if shard is None else shard.number(batches):
            part = state.restore(b) if state is not None else None
            if part is None:
                before = (0 if total is None else total.n) if shard is None else shard.samples_before(b)
                part = _run_batch(counted, attacks, config, x.to(device), y.to(device), b, before, total, monitor)
                if state is not None:
                    state.save(b, part)
            else:
                resumed += 1
                if monitor is not None:
                    runs = [1 if a.spec.kind == "minimal" else sum(e > 0 for e in config.eps) for a in attacks]
                    monitor.skip(part.n * sum(r * a.params.passes_per_sample(len(part.class_counts))
                                              for r, a in zip(runs, attacks, strict=True)))
            if monitor is not None:
                monitor.next_batch()
            add([part] if shard is None else shard.exchange(b, part))
        if shard is not None:
            add(shard.drain())
            resumed = shard.total(resumed)
    if total is None or total.n == 0:
        raise UsageError("no samples to evaluate: the data is empty")
    report = _report(total, attacks, config, device)
    report.timing = {"total_seconds": round(time.perf_counter() - started, 4),
                     "clean_seconds": round(total.clean_seconds, 4), "resumed_batches": resumed,
                     "world_size": 1 if shard is None else shard.world_size}
    report.checks = run_checks(report)
    return report


def _nonfinite_logits(attacks: list[EvalAttack], total: BatchTally, config: EvalConfig) -> list[dict]:
    """Per attack and ε (None: a minimal attack's unbounded search), the inputs the attack tried
    on which the model's logits were NaN or infinite; only where there were any."""
    found = []
    for attack, tally in zip(attacks, total.attacks, strict=True):
        if tally.nonfinite_search:
            found.append({"attack": attack.name, "eps": None, "inputs": tally.nonfinite_search})
        found += [{"attack": attack.name, "eps": eps, "inputs": k}
                  for eps, k in zip(config.eps, tally.nonfinite, strict=True) if k]
    return found


def _report(total: BatchTally, attacks: list[EvalAttack], config: EvalConfig, device: torch.device) -> RobustnessReport:
    """The report from the summed tallies of every batch."""
    n, clean_correct = total.n, total.clean_correct
    curves = {}
    for attack, tally in zip(attacks, total.attacks, strict=True):
        points = [
            CurvePoint(
                eps=eps,
                accuracy=tally.robust[j] / n,
                robust=tally.robust[j],
                success_rate=(clean_correct - tally.robust[j]) / clean_correct if clean_correct else 0.0,
                mean_norm=float32_decimal(tally.norm_sum[j] / tally.norm_count[j]) if tally.norm_count[j] else None,
                max_norm=float32_decimal(tally.norm_max[j]) if tally.norm_count[j] else None,
                robust_per_class=list(tally.robust_per_class[j]),
                eps_label=config.eps_labels[j],
            )
            for j, eps in enumerate(config.eps)
        ]
        curves[attack.name] = AttackCurve(
            attack=attack.spec.name,
            norm=config.norm,
            params=attack.params.to_dict(),
            target=None if config.target is None else str(config.target),
            points=points,
            seconds=round(tally.seconds, 4),
            forward_samples=tally.forward_samples,
            kind=attack.spec.kind,
            median_norm=float32_decimal(tally.median_norm()),
        )
    return RobustnessReport(
        n_samples=n,
        clean_correct=clean_correct,
        clean_accuracy=clean_correct / n,
        eps=list(config.eps),
        eps_labels=list(config.eps_labels),
        norm=config.norm,
        attacks=curves,
        class_counts=list(total.class_counts),
        clean_correct_per_class=list(total.clean_per_class),
        config={"early_stop": config.early_stop, **config.extra},
        seed=config.seed,
        versions=versions(device),
        diagnostics={**total.evidence.to_dict(), "nonfinite_logits": _nonfinite_logits(attacks, total, config)},
        examples={attack.name: tally.examples[: config.examples]  # the first ones by batch order
                  for attack, tally in zip(attacks, total.attacks, strict=True)},
    )
