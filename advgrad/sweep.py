"""The robustness sweep: batches × attacks × ε → a :class:`RobustnessReport`.

For every batch the clean predictions are computed once. Each attack then runs over the ε values
in increasing order on the samples still classified correctly: a sample misclassified cleanly is
never attacked, and an adversarial example found within ε₁ is also one within ε₂ > ε₁, so a
sample fooled at ε₁ counts as fooled at every larger ε and is not attacked again. Inside an
attack a sample leaves the batch as soon as an iterate fools the model (early stop).

Every adversarial example is re-checked before it is counted: a fresh forward pass must
misclassify it and its perturbation must lie inside the ε-ball and the box. A run whose attacks
use expectation over transformation (``eot`` > 1) treats the model as randomized and makes every
deciding prediction that many times (:mod:`advgrad.randomized`): correct only when all are correct,
fooled when any is wrong.

A minimal-perturbation attack (``kind == "minimal"``: DeepFool, CW) runs once per batch without a
budget; a sample counts as fooled at ε when its adversarial example, confirmed by a forward pass,
has norm ≤ ε (up to a relative 10⁻⁵ for float rounding, after which the example is projected onto
the ε-ball and checked again). One run gives the whole curve and the median minimal norm.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from advgrad import __version__
from advgrad.attacks.base import AttackParams, AttackSpec, run_attack
from advgrad.attacks.minimal import find_minimal
from advgrad.checks import run_checks
from advgrad.corruptions import SEVERITIES, corrupt, parse_corruptions
from advgrad.distributed import LocalExchange
from advgrad.errors import InternalError, UsageError
from advgrad.evidence import GRADIENT_SAMPLES, measure
from advgrad.gradient import frozen
from advgrad.io.probe import check_logits
from advgrad.losses import finite_rows
from advgrad.numeric import check_number
from advgrad.progress import CORRUPTION_UNIT, Monitor, PassCounter
from advgrad.randomized import prediction_passes, wrong_in_repeats
from advgrad.results import (
    AttackCurve,
    CorruptionPoint,
    CorruptionResults,
    CurvePoint,
    RobustnessReport,
    default_eps_label,
    float32_decimal,
)
from advgrad.seeding import generator_for
from advgrad.tally import AttackTally, BatchTally, CorruptionTally
from advgrad.targets import resolve_targets
from advgrad.threat import NORM_TOLERANCE, Norm, ThreatModel

#: what ``certify`` may name: a bound method of :mod:`advgrad.bounds`, or randomized smoothing
CERTIFY_METHODS = ("ibp", "crown", "crown-ibp", "smoothing")


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
    (:func:`advgrad.threat.parse_eps_labelled`); by default :func:`default_eps_label`.
    ``predictions``: forward passes per deciding prediction, for randomized models
    (:mod:`advgrad.randomized`); by default the largest ``eot`` among the run's attacks.
    ``corruptions``: common corruptions (``"all"`` or names, :mod:`advgrad.corruptions`) whose
    accuracy at severities 1 to 5 the sweep also measures on every sample; stored as names."""

    eps: list[float]
    norm: Norm = "inf"
    target: int | str | None = None
    seed: int = 0
    early_stop: bool = True
    examples: int = 0
    gradient_evidence: bool = True
    extra: dict = field(default_factory=dict)
    eps_labels: list[str] | None = None
    certify: str | None = None  # a method of CERTIFY_METHODS: add its certified curve to the report
    smoothing: Any = None  # certify == "smoothing": its SmoothingParams (the defaults when None)
    predictions: int | None = None
    corruptions: list[str] = field(
        default_factory=list
    )  # common corruptions to run: names or "all" (advgrad.corruptions)
    fixed: tuple[int, ...] = ()  # input coordinates the threat model holds (a table's immutable features)

    def __post_init__(self) -> None:
        raw = self.corruptions
        self.corruptions = parse_corruptions(raw if isinstance(raw, str) else list(raw))
        if not self.eps:
            raise UsageError("give at least one ε value")
        if self.predictions is not None:
            check_number(self.predictions, "predictions", integer=True, minimum=1)
        if self.certify is not None:
            from advgrad.bounds import NORMS
            from advgrad.bounds.smoothing import METHOD, SmoothingParams

            if self.certify not in CERTIFY_METHODS:
                raise UsageError(
                    f"unknown certification method {self.certify!r}; choose one of {', '.join(CERTIFY_METHODS)}",
                    params="certify",
                )
            if self.certify == METHOD:
                if str(self.norm) != "2":
                    raise UsageError(
                        "randomized smoothing certifies L2 radii only: use --norm 2 (ε is then the L2 radius)",
                        params="norm",
                    )
                self.smoothing = SmoothingParams() if self.smoothing is None else self.smoothing
            elif str(self.norm) not in NORMS:
                raise UsageError(f"certified bounds support the norms inf and 2, not {self.norm}", params="norm")
        for e in self.eps:
            ThreatModel(self.norm, e)  # validates each ε
        if self.eps_labels is not None and len(self.eps_labels) != len(self.eps):
            raise UsageError("give one label per ε value")
        labels: dict[float, str] = {}
        for k, e in enumerate(self.eps):  # sorted and without repeats; the first label of a value wins
            labels.setdefault(float(e), default_eps_label(float(e)) if self.eps_labels is None else self.eps_labels[k])
        self.eps = sorted(labels)
        self.eps_labels = [labels[e] for e in self.eps]

    @property
    def target_text(self) -> str | None:
        """The target as reports name it: ``"3"``, ``"random"``, ``"least-likely"``, or None."""
        return None if self.target is None else str(self.target)


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
    """How the processes of a run share their finished batches: each runs its own batches and
    adds everyone's to its totals in batch order (:class:`advgrad.distributed.Shard` under
    torchrun; :class:`advgrad.distributed.LocalExchange` for a process alone)."""

    world_size: int

    def number(self, batches: Iterable[tuple[Tensor, Tensor]]) -> Iterable[tuple[int, tuple[Tensor, Tensor]]]: ...

    def samples_before(self, batch_index: int) -> int: ...

    def exchange(self, batch_index: int, part: BatchTally) -> list[BatchTally]: ...

    def drain(self) -> Iterable[BatchTally]: ...

    def total(self, value: int) -> int: ...


class _Silent:
    """The monitor of a sweep nobody watches: every event is ignored."""

    def begin(self, attack: str, eps: float | None, steps: int, samples: int, units: int, unit: str = "step") -> None:
        pass

    def on_pass(self) -> None:
        pass

    def end(self) -> None:
        pass

    def next_batch(self) -> None:
        pass

    def skip(self, units: int) -> None:
        pass


@dataclass
class CleanBatch:
    """One batch of the run with its clean predictions: ``correct`` marks the samples classified
    correctly (with finite logits); ``index`` is the batch's place in the run, which seeds it."""

    x: Tensor
    y: Tensor
    logits: Tensor
    correct: Tensor
    index: int
    classes: int
    certified: Tensor | None = None  # bool (len(eps), N): certified at each ε (eval --certify)
    first: int = 0  # the run's index of the batch's first sample


@dataclass
class AttackSweep:
    """One attack over the ε values of ``config`` on one batch, filling ``tally`` (and keeping up to
    ``keep`` adversarial examples in it); ``monitor`` hears each run of the attack begin and end.

    The samples attacked (``active``) are those classified correctly, less those labelled as their
    target (they count as robust: ``fixed``). :meth:`run` runs a bounded attack at each ε on the
    samples it has not fooled yet, or a minimal attack once for every ε; either way each fooled
    sample's adversarial example is confirmed by a forward pass before it counts."""

    model: CountingModel
    attack: EvalAttack
    config: EvalConfig
    batch: CleanBatch
    attack_index: int
    tally: AttackTally
    keep: int = 0
    monitor: Monitor = field(default_factory=_Silent)
    targets: Tensor | None = field(init=False)
    active: Tensor = field(init=False)  # indices into the batch of the samples still attacked
    fixed: Tensor = field(init=False)  # 1 for a sample that counts as robust whatever the attack does
    found_norm: Tensor = field(init=False)  # per sample: the norm of its counted adversarial example, else NaN

    def __post_init__(self) -> None:
        b = self.batch
        device = b.x.device
        self.active = b.correct.nonzero().squeeze(1)
        self.found_norm = torch.full((b.x.shape[0],), float("nan"), device=device)
        target_gen = generator_for(device, self.config.seed, "target", b.index, self.attack_index)
        self.targets = resolve_targets(self.config.target, b.logits, b.y, target_gen)
        if self.targets is not None:  # a sample whose label is its target cannot be attacked towards it
            self.active = self.active[self.targets[self.active] != b.y[self.active]]
            self.fixed = (b.correct & (self.targets == b.y)).long()
        else:
            self.fixed = torch.zeros_like(b.y)

    def run(self) -> None:
        """The whole curve of this attack on this batch."""
        if self.attack.spec.kind == "minimal":
            self._begin(None)
            self._minimal()
            self.monitor.end()
        else:
            self._bounded()

    def _begin(self, eps: float | None) -> None:
        """Announce a run: model calls of one run (the formula with one class: DeepFool's gradients
        per class share a call), the run's budget in sample-passes, and what one call is."""
        params = self.attack.params
        self.monitor.begin(
            self.attack.name,
            eps,
            params.passes_per_sample(1),
            int(self.active.numel()),
            self.batch.x.shape[0] * params.passes_per_sample(self.batch.classes),
            "query" if self.attack.spec.kind == "score" else "step",
        )

    def _inputs(self, at: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Inputs, labels and targets of the samples ``at`` (indices into the batch)."""
        return self.batch.x[at], self.batch.y[at], None if self.targets is None else self.targets[at]

    def _bounded(self) -> None:
        """A bounded attack at each ε > 0, on the samples not fooled at a smaller ε."""
        model, config = self.model, self.config
        for j, eps in enumerate(config.eps):
            nonfinite_before = model.nonfinite
            if eps > 0:
                self._begin(eps)
            if eps > 0 and self.active.numel():
                threat = ThreatModel(config.norm, eps, fixed=config.fixed)
                gen = generator_for(self.batch.x.device, config.seed, self.batch.index, self.attack_index, j)
                xa, ya, ta = self._inputs(self.active)
                x_adv = run_attack(
                    self.attack.spec,
                    model,
                    xa,
                    ya,
                    threat=threat,
                    params=self.attack.params,
                    target=ta,
                    generator=gen,
                    early_stop=config.early_stop,
                )
                if not bool(threat.contains(x_adv, xa).all()):
                    raise InternalError(  # run_attack clips every result, so this is a bug, never data
                        f"internal check failed: {self.attack.name} returned points outside the ε-ball at ε={eps}"
                    )
                with torch.no_grad():
                    out = model(x_adv)
                pred = out.argmax(dim=1)
                fooled = (pred != ya) & finite_rows(out)  # non-finite logits never count as fooled
                fooled, pred = self._repeat(x_adv, ya, fooled, pred)
                self._fooled(eps, threat, self.active[fooled], xa[fooled], x_adv[fooled], ya[fooled], pred[fooled])
                self.active = self.active[~fooled]
            if eps > 0:
                self.monitor.end()
            self._count(j, self.active)
            self.tally.nonfinite[j] += model.nonfinite - nonfinite_before

    def _minimal(self) -> None:
        """One unbounded run of a minimal attack on the active samples gives every ε of the curve.

        At each ε the samples whose confirmed adversarial example has norm ≤ ε·(1 + 10⁻⁵) are
        projected onto the ε-ball (a no-op unless rounding put them a hair outside), checked for
        ball and box, and confirmed again by a forward pass before they count as fooled."""
        model, config, active = self.model, self.config, self.active
        pending = torch.ones_like(active, dtype=torch.bool)  # per active sample: not yet counted as fooled
        if active.numel():
            xa, ya, ta = self._inputs(active)
            gen = generator_for(self.batch.x.device, config.seed, self.batch.index, self.attack_index, "minimal")
            before = model.nonfinite
            result = find_minimal(
                self.attack.spec,
                model,
                xa,
                ya,
                norm=config.norm,
                params=self.attack.params,
                target=ta,
                generator=gen,
                predictions=config.predictions or 1,
                fixed=config.fixed,
            )
            self.tally.nonfinite_search += model.nonfinite - before
            norms = result.norm.double()
            minimal = torch.where(result.fooled, norms, torch.full_like(norms, float("inf")))
            self.tally.minimal_norms.extend(minimal.cpu().tolist())
        for j, eps in enumerate(config.eps):
            near = (
                (pending & (minimal <= eps * (1 + NORM_TOLERANCE))).nonzero().squeeze(1) if active.numel() else active
            )
            if near.numel():
                threat = ThreatModel(config.norm, eps, fixed=config.fixed)
                x_eps = threat.clip(result.x_adv[near], xa[near])
                before = model.nonfinite
                with torch.no_grad():
                    out = model(x_eps)
                pred = out.argmax(dim=1)
                wrong, pred = self._repeat(x_eps, ya[near], (pred != ya[near]) & finite_rows(out), pred)
                confirmed = threat.contains(x_eps, xa[near]) & wrong
                self.tally.nonfinite[j] += model.nonfinite - before
                counted = near[confirmed]
                pending[counted] = False
                # the confirming pass's predictions: the forward-pass count must not depend on how many
                # examples a batch keeps (distributed runs)
                self._fooled(eps, threat, active[counted], xa[counted], x_eps[confirmed], ya[counted], pred[confirmed])
            self._count(j, active[pending])

    def _repeat(self, x_adv: Tensor, y: Tensor, fooled: Tensor, pred: Tensor) -> tuple[Tensor, Tensor]:
        """``fooled`` and ``pred`` from one confirming pass, updated by the run's further predictions
        of a randomized model: fooled when any is wrong, its prediction the first wrong one."""
        more, first = wrong_in_repeats(self.model, x_adv, y, (self.config.predictions or 1) - 1)
        return fooled | more, torch.where(fooled, pred, torch.where(more, first, pred))

    def _fooled(
        self, eps: float, threat: ThreatModel, at: Tensor, x: Tensor, x_adv: Tensor, y: Tensor, pred: Tensor
    ) -> None:
        """The samples ``at`` (indices into the batch) are fooled at ``eps`` by ``x_adv``: record the
        norms of their perturbations, and keep them as examples while the tally wants more."""
        self.found_norm[at] = threat.norm_of(x_adv - x).float()
        if self.keep > len(self.tally.examples) and at.numel():
            self.tally.add_examples(self.attack.name, eps, x, x_adv, y, pred, self.keep)

    def _count(self, j: int, robust: Tensor) -> None:
        """The point at the ``j``-th ε: the samples ``robust`` (indices into the batch) and the fixed
        ones are still classified correctly."""
        y = self.batch.y
        still = torch.zeros_like(y)
        still[robust] = 1
        still = (still | self.fixed).bool()
        certified = self.batch.certified
        if certified is not None and bool((certified[j] & ~still).any()):
            i = int((certified[j] & ~still).nonzero()[0, 0])
            raise InternalError(
                f"sample {self.batch.first + i} is certified at ε={self.config.eps_labels[j]} by "
                f"{self.config.certify} yet fooled there by {self.attack.name}: one of the two computations is wrong"
            )
        self.tally.add_point(j, still, y, self.found_norm[~torch.isnan(self.found_norm)])


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
    if (config.predictions or 1) > 1:  # a randomized model: correct only when every prediction is
        correct &= ~wrong_in_repeats(counted, x, y, config.predictions - 1)[0]
    evidence = measure(
        counted.model, x, y, logits, correct, gradients=config.gradient_evidence and before < GRADIENT_SAMPLES
    )
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
    certified = None
    if config.certify is not None and bounds is not None:
        t0, samples = time.perf_counter(), counted.samples
        part.certified = AttackTally.empty(len(config.eps), classes)
        if config.smoothing is not None:
            certified, part.certified.abstained = _smoothed(counted, x, y, batch_index, config, monitor)
        else:
            certified = _certify(bounds(x), x, y, logits, correct, config, monitor)
        for j in range(len(config.eps)):
            part.certified.add_point(j, certified[j], y, torch.zeros(0))
        part.certified.seconds += time.perf_counter() - t0
        part.certified.forward_samples += counted.samples - samples
    batch = CleanBatch(x, y, logits, correct, batch_index, classes, certified, before)
    kept = [0] * len(attacks) if done is None else done.examples_kept()
    for a, attack in enumerate(attacks):
        tally = part.attacks[a]
        t0, samples = time.perf_counter(), counted.samples
        AttackSweep(
            counted, attack, config, batch, a, tally, keep=max(config.examples - kept[a], 0), monitor=monitor
        ).run()
        tally.seconds += time.perf_counter() - t0
        tally.forward_samples += counted.samples - samples
    if config.corruptions:
        part.corruptions = _corrupted(counted, x, y, before, config, monitor)
    return part


def _corrupted(
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
    return tally


def corruption_passes(config: EvalConfig, samples: int) -> int:
    """Model passes over one sample that the corruptions of ``config`` take for ``samples`` samples."""
    return samples * len(config.corruptions) * len(SEVERITIES) * (config.predictions or 1)


def _certify(
    bounded: Any, x: Tensor, y: Tensor, logits: Tensor, correct: Tensor, config: EvalConfig, monitor: Monitor
) -> Tensor:
    """bool (len(eps), N): classified correctly and every margin lower bound of ``bounded``
    (:class:`advgrad.bounds.BoundedModel`) over the ε-ball ∩ [0, 1] above the rounding slack
    (:data:`advgrad.bounds.CERTIFY_SLACK` times 1 + the sample's largest clean |logit|, as
    :func:`advgrad.bounds.certified` requires)."""
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
    return torch.stack(rows)


def _smoothed(
    model: nn.Module, x: Tensor, y: Tensor, batch_index: int, config: EvalConfig, monitor: Monitor
) -> tuple[Tensor, int]:
    """Randomized smoothing's CERTIFY on one batch (noise seeded by the batch's index, so a batch
    gives the same certificates alone, resumed or in a distributed run): bool (len(eps), N), the
    smoothed classifier returns the label with a certified L2 radius ≥ ε; and how many samples it
    abstained on. The model sees at most as many noisy rows per call as the batch has samples."""
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
    return certified, int((result.prediction == ABSTAIN).sum())


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
    share of the run and the report is the whole run's, equal to a single process's (timing aside);
    without it the process runs alone (:class:`advgrad.distributed.LocalExchange`).
    With ``monitor`` (:mod:`advgrad.progress`) each run of an attack at one ε is announced as it
    begins and ends, and every model call in between is counted (host-side, no synchronisation).
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
    monitor = _Silent() if monitor is None else monitor
    exchange = LocalExchange() if shard is None else shard
    total: BatchTally | None = None
    resumed = 0
    started = time.perf_counter()
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
            if progress is not None:
                progress(total.n)

    with frozen(counted):
        for b, (x, y) in exchange.number(batches):
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
    report = _report(total, attacks, config, device)
    report.timing = {
        "total_seconds": round(time.perf_counter() - started, 4),
        "clean_seconds": round(total.clean_seconds, 4),
        "resumed_batches": resumed,
        "world_size": exchange.world_size,
    }
    report.checks = run_checks(report)
    return report


def _nonfinite_logits(attacks: list[EvalAttack], total: BatchTally, config: EvalConfig) -> list[dict]:
    """Per attack and ε (None: a minimal attack's unbounded search), the inputs the attack tried
    on which the model's logits were NaN or infinite; only where there were any."""
    found = []
    for attack, tally in zip(attacks, total.attacks, strict=True):
        if tally.nonfinite_search:
            found.append({"attack": attack.name, "eps": None, "inputs": tally.nonfinite_search})
        found += [
            {"attack": attack.name, "eps": eps, "inputs": k}
            for eps, k in zip(config.eps, tally.nonfinite, strict=True)
            if k
        ]
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
            target=config.target_text,
            points=points,
            seconds=round(tally.seconds, 4),
            forward_samples=tally.forward_samples,
            kind=attack.spec.kind,
            median_norm=float32_decimal(tally.median_norm()),
        )
    if total.certified is not None and config.certify is not None:
        tally = total.certified
        smoothing = config.smoothing
        curves[config.certify] = AttackCurve(
            attack=config.certify,
            norm=config.norm,
            params={"method": config.certify, **({} if smoothing is None else smoothing.to_dict())},
            target=None,
            points=[
                CurvePoint(
                    eps=eps,
                    accuracy=tally.robust[j] / n,
                    robust=tally.robust[j],
                    success_rate=(clean_correct - tally.robust[j]) / clean_correct if clean_correct else 0.0,
                    robust_per_class=list(tally.robust_per_class[j]),
                    eps_label=config.eps_labels[j],
                )
                for j, eps in enumerate(config.eps)
            ],
            seconds=round(tally.seconds, 4),
            forward_samples=tally.forward_samples,
            kind="certified",
            abstained=None if smoothing is None else tally.abstained,
        )
    corruptions = None
    if total.corruptions is not None:
        tally = total.corruptions
        found = [
            CorruptionPoint(name, severity, tally.correct[i][s] / n, tally.correct[i][s])
            for i, name in enumerate(config.corruptions)
            for s, severity in enumerate(SEVERITIES)
        ]
        corruptions = CorruptionResults(
            severities=list(SEVERITIES),
            points=found,
            mean_accuracy=sum(p.correct for p in found) / (n * len(found)),  # the mean of the accuracies
            seconds=round(tally.seconds, 4),
            forward_samples=tally.forward_samples,
        )
    return RobustnessReport(
        corruptions=corruptions,
        n_samples=n,
        clean_correct=clean_correct,
        clean_accuracy=clean_correct / n,
        eps=list(config.eps),
        eps_labels=list(config.eps_labels),
        norm=config.norm,
        attacks=curves,
        class_counts=list(total.class_counts),
        clean_correct_per_class=list(total.clean_per_class),
        config={
            "early_stop": config.early_stop,
            **({"predictions": config.predictions} if (config.predictions or 1) > 1 else {}),
            **({"fixed": list(config.fixed)} if config.fixed else {}),
            **config.extra,
        },
        seed=config.seed,
        versions=versions(device),
        diagnostics={**total.evidence.to_dict(), "nonfinite_logits": _nonfinite_logits(attacks, total, config)},
        examples={
            attack.name: tally.examples[: config.examples]  # the first ones by batch order
            for attack, tally in zip(attacks, total.attacks, strict=True)
        },
    )
