"""One attack over the ε values of a run on one batch of clean predictions.

The samples classified correctly are attacked at each ε in increasing order; a sample fooled at ε₁
counts as fooled at every larger ε and is not attacked again. A minimal-perturbation attack runs
once and gives every ε from each sample's smallest adversarial example. Every adversarial example
is confirmed by a forward pass, inside the ball and the box, before it counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from advgrad.attacks.base import run_attack
from advgrad.attacks.minimal import find_minimal
from advgrad.attacks.strong import observe_stages
from advgrad.core.errors import InternalError
from advgrad.core.losses import finite_rows
from advgrad.core.seeding import generator_for
from advgrad.core.targets import resolve_targets
from advgrad.core.threat import NORM_TOLERANCE, ThreatModel
from advgrad.evaluation.counting import CountingModel
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.randomized import wrong_in_repeats
from advgrad.evaluation.records import AttackRecords, clean_margin
from advgrad.evaluation.tally import AttackTally
from advgrad.execution.progress import Monitor, SilentMonitor


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

    @property
    def prediction(self) -> Tensor:
        """The clean predictions, −1 where the logits are not finite (no prediction)."""
        return torch.where(finite_rows(self.logits), self.logits.argmax(dim=1), torch.full_like(self.y, -1))


@dataclass
class _Found:
    """What a sweep from the largest ε down measured at one ε: the samples ``at`` (sorted indices into
    the batch), those the attack ran on, and per sample of ``at`` its point, whether it fools, the
    prediction there, the perturbation's norm and the margin."""

    at: Tensor
    attacked: Tensor
    x_adv: Tensor
    fooled: Tensor
    pred: Tensor
    norm: Tensor
    margin: Tensor


class _StageCounter:
    """Charges each stage of a cascade the sample-passes ``model`` made while it ran, and the samples it
    fooled, in ``tally.stages``."""

    def __init__(self, model: CountingModel, tally: AttackTally):
        self.model, self.tally, self.start = model, tally, (0, 0)

    def begin(self, name: str) -> None:
        self.start = self.model.passes

    def end(self, name: str, fooled: int) -> None:
        forward, backward = self.model.passes
        done = [forward - self.start[0], backward - self.start[1], fooled]
        self.tally.stages[name] = [a + b for a, b in zip(self.tally.stages.get(name, [0, 0, 0]), done, strict=True)]


@dataclass
class AttackSweep:
    """One attack over the ε values of ``config`` on one batch, filling ``tally`` (and keeping up to
    ``keep`` adversarial examples in it) and its per-sample ``records`` (:mod:`advgrad.evaluation.records`);
    ``monitor`` hears each run of the attack begin and end.

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
    monitor: Monitor = field(default_factory=SilentMonitor)
    records: AttackRecords = field(init=False)
    targets: Tensor | None = field(init=False)
    active: Tensor = field(init=False)  # indices into the batch of the samples still attacked
    fixed: Tensor = field(init=False)  # 1 for a sample that counts as robust whatever the attack does
    found_norm: Tensor = field(init=False)  # per sample: the norm of its counted adversarial example, else NaN

    def __post_init__(self) -> None:
        b = self.batch
        device = b.x.device
        self.active = b.correct.nonzero().squeeze(1)
        self.found_norm = torch.full((b.x.shape[0],), float("nan"), device=device)
        self.records = AttackRecords.start(len(self.config.eps), b.prediction, clean_margin(b.logits, b.y))
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
        elif self.attack.spec.sweep_once:
            self._once()
        else:
            self._bounded()

    def _once(self) -> None:
        """A bounded attack from the largest ε down (:attr:`~advgrad.attacks.base.AttackSpec.sweep_once`):
        at each smaller ε only the samples fooled at the next larger one are tried, first with their
        example there projected into the smaller ball (one confirming pass), then, where that no longer
        fools, with the attack. A sample the attack leaves robust at ε_k counts as robust at every
        smaller ε, so each sample pays a whole run of the attack at most once. The points are then
        recorded from the smallest ε up, as :meth:`_bounded` records them."""
        eps_list = self.config.eps
        found: list[_Found | None] = [None] * len(eps_list)
        candidates, previous = self.active, None
        for j in reversed(range(len(eps_list))):
            passes_before, nonfinite_before = self.model.passes, self.model.nonfinite
            if eps_list[j] > 0:
                self._begin(eps_list[j])
                if candidates.numel():
                    found[j] = self._attack_once(j, candidates, previous)
                    candidates, previous = candidates[found[j].fooled], found[j]
                self.monitor.end()
            else:
                candidates = candidates[:0]
            self.tally.nonfinite[j] += self.model.nonfinite - nonfinite_before
            self._charge(j, passes_before)
        robust = self.active
        for j, eps in enumerate(eps_list):
            if j:
                self.records.carry(j)
            done = found[j]
            if done is not None:
                threat = ThreatModel(self.config.norm, eps, fixed=self.config.fixed)
                self.records.point(j, done.at, done.pred, done.norm, done.margin)
                self.records.passes[j, done.attacked] = self.attack.params.passes_per_sample(self.batch.classes)
                new = done.fooled & torch.isin(done.at, robust)
                at = done.at[new]
                xa, ya, _ = self._inputs(at)
                self._fooled(j, threat, at, xa, done.x_adv[new], ya, done.pred[new])
                robust = robust[~torch.isin(robust, done.at[done.fooled])]
            self._count(j, robust)

    def _attack_once(self, j: int, at: Tensor, previous: _Found | None) -> _Found:
        """The samples ``at`` at the ``j``-th ε: each one's example at the next larger ε (``previous``)
        projected into this ball, and the attack on those it no longer fools; every result confirmed."""
        threat = ThreatModel(self.config.norm, self.config.eps[j], fixed=self.config.fixed)
        xa, ya, ta = self._inputs(at)
        if previous is None:
            x_adv, attacked = xa.clone(), at
            todo = torch.ones_like(at, dtype=torch.bool)
        else:
            rows = torch.searchsorted(previous.at, at)
            x_adv = threat.clip(previous.x_adv[rows], xa)
            todo = ~self._confirm(x_adv, ya)[0]
            attacked = at[todo]
        if bool(todo.any()):
            # seeded by ε's value, not its place in the sweep: the largest ε runs as a run at that ε alone
            eps_key = f"eps={float(self.config.eps[j])!r}"
            gen = generator_for(self.batch.x.device, self.config.seed, self.batch.index, self.attack_index, eps_key)
            t = None if ta is None else ta[todo]
            with observe_stages(_StageCounter(self.model, self.tally)):
                x_adv[todo] = self._run_attack(threat, gen, xa[todo], ya[todo], t)
        if not bool(threat.contains(x_adv, xa).all()):
            raise InternalError(
                f"internal check failed: {self.attack.name} returned points outside the ε-ball at ε={self.config.eps[j]}"
            )
        fooled, pred, out = self._confirm(x_adv, ya)
        return _Found(at, attacked, x_adv, fooled, pred, threat.norm_of(x_adv - xa), clean_margin(out, ya))

    def _confirm(self, x_adv: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One confirming forward pass (and a randomized model's further ones): fooled, prediction, logits."""
        with torch.no_grad():
            out = self.model(x_adv)
        pred = out.argmax(dim=1)
        fooled, pred = self._repeat(x_adv, y, (pred != y) & finite_rows(out), pred)
        return fooled, pred, out

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
            nonfinite_before, passes_before = model.nonfinite, model.passes
            if j:
                self.records.carry(j)
            if eps > 0:
                self._begin(eps)
            if eps > 0 and self.active.numel():
                threat = ThreatModel(config.norm, eps, fixed=config.fixed)
                gen = generator_for(self.batch.x.device, config.seed, self.batch.index, self.attack_index, j)
                xa, ya, ta = self._inputs(self.active)
                with observe_stages(_StageCounter(model, self.tally)):
                    x_adv = self._run_attack(threat, gen, xa, ya, ta)
                if not bool(threat.contains(x_adv, xa).all()):
                    raise InternalError(  # run_attack clips every result, so this is a bug, never data
                        f"internal check failed: {self.attack.name} returned points outside the ε-ball at ε={eps}"
                    )
                with torch.no_grad():
                    out = model(x_adv)
                pred = out.argmax(dim=1)
                fooled = (pred != ya) & finite_rows(out)  # non-finite logits never count as fooled
                fooled, pred = self._repeat(x_adv, ya, fooled, pred)
                self.records.point(j, self.active, pred, threat.norm_of(x_adv - xa), clean_margin(out, ya))
                self.records.passes[j, self.active] = self.attack.params.passes_per_sample(self.batch.classes)
                self._fooled(j, threat, self.active[fooled], xa[fooled], x_adv[fooled], ya[fooled], pred[fooled])
                self.active = self.active[~fooled]
            if eps > 0:
                self.monitor.end()
            self._count(j, self.active)
            self.tally.nonfinite[j] += model.nonfinite - nonfinite_before
            self._charge(j, passes_before)

    def _minimal(self) -> None:
        """One unbounded run of a minimal attack on the active samples gives every ε of the curve.

        At each ε the samples whose confirmed adversarial example has norm ≤ ε·(1 + 10⁻⁵) are
        projected onto the ε-ball (a no-op unless rounding put them a hair outside), checked for
        ball and box, and confirmed again by a forward pass before they count as fooled."""
        model, config, active = self.model, self.config, self.active
        pending = torch.ones_like(active, dtype=torch.bool)  # per active sample: not yet counted as fooled
        passes_before = model.passes
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
            self.records.passes[0, active] = self.attack.params.passes_per_sample(self.batch.classes)
        for j, eps in enumerate(config.eps):
            if j:
                self.records.carry(j)
                passes_before = model.passes
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
                at = active[counted]
                norms = threat.norm_of(x_eps[confirmed] - xa[counted])
                self.records.point(j, at, pred[confirmed], norms, clean_margin(out[confirmed], ya[counted]))
                # the confirming pass's predictions: the forward-pass count must not depend on how many
                # examples a batch keeps (distributed runs)
                self._fooled(j, threat, at, xa[counted], x_eps[confirmed], ya[counted], pred[confirmed])
            self._count(j, active[pending])
            self._charge(j, passes_before)  # the search is charged to the first ε, with its confirmations

    def _run_attack(
        self, threat: ThreatModel, gen: torch.Generator, xa: Tensor, ya: Tensor, ta: Tensor | None
    ) -> Tensor:
        """The bounded attack at one ε on the samples ``xa``."""
        return run_attack(
            self.attack.spec,
            self.model,
            xa,
            ya,
            threat=threat,
            params=self.attack.params,
            target=ta,
            generator=gen,
            early_stop=self.config.early_stop,
        )

    def _charge(self, j: int, before: tuple[int, int]) -> None:
        """Charge the sample-passes the model made since it stood at ``before`` to the ``j``-th ε."""
        forward, backward = self.model.passes
        self.tally.add_passes(j, forward - before[0], backward - before[1])

    def _repeat(self, x_adv: Tensor, y: Tensor, fooled: Tensor, pred: Tensor) -> tuple[Tensor, Tensor]:
        """``fooled`` and ``pred`` from one confirming pass, updated by the run's further predictions
        of a randomized model: fooled when any is wrong, its prediction the first wrong one."""
        more, first = wrong_in_repeats(self.model, x_adv, y, (self.config.predictions or 1) - 1)
        return fooled | more, torch.where(fooled, pred, torch.where(more, first, pred))

    def _fooled(
        self, j: int, threat: ThreatModel, at: Tensor, x: Tensor, x_adv: Tensor, y: Tensor, pred: Tensor
    ) -> None:
        """The samples ``at`` (indices into the batch) are fooled at the ``j``-th ε by ``x_adv``: record
        the norms of their perturbations, keep them as examples while the tally wants more, and as
        evidence when the run keeps every adversarial example."""
        self.found_norm[at] = threat.norm_of(x_adv - x).float()
        self.records.fooled(j, at)
        if self.config.keep_adversarial and at.numel():
            self.records.keep(at, x_adv)
        if self.keep > len(self.tally.examples) and at.numel():
            self.tally.add_examples(self.attack.name, self.config.eps[j], x, x_adv, y, pred, self.keep)

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
                f"sample {self.batch.first + i} is certified at ε={self.config.eps[j].label} by "
                f"{self.config.certify} yet fooled there by {self.attack.name}: one of the two computations is wrong"
            )
        self.tally.add_point(j, still, y, self.found_norm[~torch.isnan(self.found_norm)])
