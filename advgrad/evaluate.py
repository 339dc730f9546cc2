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

import torch
from torch import Tensor, nn

from advgrad import __version__
from advgrad.attacks.base import AttackParams, AttackSpec, run_attack
from advgrad.attacks.minimal import find_minimal
from advgrad.errors import AdvgradError, UsageError
from advgrad.gradient import frozen
from advgrad.io.probe import check_logits
from advgrad.results import AttackCurve, CurvePoint, RobustnessReport
from advgrad.seeding import generator_for
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
    """What the sweep does besides the attacks: ε values, threat norm, target, seed."""

    eps: list[float]
    norm: Norm = "inf"
    target: int | str | None = None
    seed: int = 0
    early_stop: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.eps:
            raise UsageError("give at least one ε value")
        for e in self.eps:
            ThreatModel(self.norm, e)  # validates each ε
        self.eps = sorted(set(float(e) for e in self.eps))


class CountingModel(nn.Module):
    """Wraps a model and counts the samples it is run on (forward passes × batch size)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.samples = 0

    def forward(self, x: Tensor) -> Tensor:
        self.samples += x.shape[0]
        return self.model(x)


class _Tally:
    """Running counts for one attack over all batches."""

    def __init__(self, n_eps: int, classes: int):
        self.robust = [0] * n_eps
        self.robust_per_class = [torch.zeros(classes, dtype=torch.long) for _ in range(n_eps)]
        self.norm_sum = [0.0] * n_eps
        self.norm_max = [float("-inf")] * n_eps
        self.norm_count = [0] * n_eps
        self.seconds = 0.0
        self.forward_samples = 0
        self.minimal_norms: list[Tensor] = []  # minimal attacks: per attacked sample, inf if not fooled

    def record(self, j: int, robust: Tensor, y: Tensor, found_norm: Tensor) -> None:
        """Count the samples still ``robust`` (0/1 per sample) at ε index ``j`` and the norms of the
        adversarial examples found so far (NaN where none)."""
        self.robust[j] += int(robust.sum())
        self.robust_per_class[j] += torch.bincount(y[robust.bool()], minlength=len(self.robust_per_class[j])).cpu()
        found = found_norm[~torch.isnan(found_norm)]
        if found.numel():
            self.norm_sum[j] += float(found.sum())
            self.norm_max[j] = max(self.norm_max[j], float(found.max()))
            self.norm_count[j] += found.numel()

    def median_norm(self) -> float | None:
        """Median minimal norm over the attacked samples, a sample the attack could not fool counting
        as +∞; None when no minimal attack ran or when the median is +∞ (fewer than half fooled)."""
        if not self.minimal_norms:
            return None
        norms = torch.cat(self.minimal_norms).double().sort().values
        if norms.numel() == 0:
            return None
        mid = norms.numel() // 2
        value = norms[mid] if norms.numel() % 2 else (norms[mid - 1] + norms[mid]) / 2
        return float(value) if torch.isfinite(value) else None


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


def _attack_batch(
    model: CountingModel,
    attack: EvalAttack,
    x: Tensor,
    y: Tensor,
    logits: Tensor,
    correct: Tensor,
    config: EvalConfig,
    tally: _Tally,
    batch_index: int,
    attack_index: int,
) -> None:
    """Run one attack over the ε sweep on one batch, updating ``tally``."""
    device = x.device
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
        _minimal_sweep(model, attack, x, y, active, targets, tally_fixed, config, tally, gen)
        return
    for j, eps in enumerate(config.eps):
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
                raise AdvgradError(  # run_attack clips every result, so this is a bug, never data
                    f"internal check failed: {attack.name} returned points outside the ε-ball at ε={eps}"
                )
            with torch.no_grad():
                pred = model(x_adv).argmax(dim=1)
            fooled = pred != ya
            found_norm[active[fooled]] = threat.norm_of(x_adv[fooled] - xa[fooled]).float()
            active = active[~fooled]
        still = torch.zeros_like(y)
        still[active] = 1
        tally.record(j, still | tally_fixed, y, found_norm)


def _minimal_sweep(
    model: nn.Module,
    attack: EvalAttack,
    x: Tensor,
    y: Tensor,
    active: Tensor,
    targets: Tensor | None,
    tally_fixed: Tensor,
    config: EvalConfig,
    tally: _Tally,
    generator: torch.Generator,
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
        result = find_minimal(attack.spec, model, xa, ya, norm=config.norm, params=attack.params, target=ta,
                              generator=generator)
        minimal = torch.where(result.fooled, result.norm.double(), torch.full_like(result.norm.double(), float("inf")))
        tally.minimal_norms.append(minimal.cpu())
    for j, eps in enumerate(config.eps):
        near = (pending & (minimal <= eps * (1 + NORM_TOLERANCE))).nonzero().squeeze(1) if active.numel() else active
        if near.numel():
            threat = ThreatModel(config.norm, eps)
            x_eps = threat.clip(result.x_adv[near], xa[near])
            with torch.no_grad():
                confirmed = threat.contains(x_eps, xa[near]) & (model(x_eps).argmax(dim=1) != ya[near])
            counted = near[confirmed]
            pending[counted] = False
            found_norm[active[counted]] = threat.norm_of(x_eps[confirmed] - xa[counted]).float()
        still = torch.zeros_like(y)
        still[active[pending]] = 1
        tally.record(j, still | tally_fixed, y, found_norm)


def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    attacks: list[EvalAttack],
    config: EvalConfig,
    *,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> RobustnessReport:
    """Clean accuracy and accuracy under each attack at each ε of ``config``.

    ``batches`` yields (x, y) on any device; they are moved to ``device``. ``progress`` is called
    with the number of samples finished after each batch. The model's mode and its parameters'
    ``requires_grad`` are restored afterwards.
    """
    device = torch.device(device)
    names = [a.name for a in attacks]
    if len(set(names)) != len(names):
        raise UsageError(f"each attack may appear once in a sweep, got {', '.join(names)}")
    counted = CountingModel(model)
    n = 0
    clean_correct = 0
    classes = 0
    class_counts = torch.zeros(0, dtype=torch.long)
    clean_per_class = torch.zeros(0, dtype=torch.long)
    tallies: list[_Tally] = []
    started = time.perf_counter()
    clean_seconds = 0.0
    with frozen(counted):
        for b, (x, y) in enumerate(batches):
            x, y = x.to(device), y.to(device)
            t0 = time.perf_counter()
            with torch.no_grad():
                logits = counted(x)
            batch_classes = check_logits(logits, y)
            if not tallies:
                classes = batch_classes
                tallies = [_Tally(len(config.eps), classes) for _ in attacks]
                class_counts = torch.zeros(classes, dtype=torch.long)
                clean_per_class = torch.zeros(classes, dtype=torch.long)
            correct = logits.argmax(dim=1) == y
            n += y.shape[0]
            clean_correct += int(correct.sum())
            class_counts += torch.bincount(y, minlength=classes).cpu()
            clean_per_class += torch.bincount(y[correct], minlength=classes).cpu()
            clean_seconds += time.perf_counter() - t0
            for a, attack in enumerate(attacks):
                tally = tallies[a]
                t0, before = time.perf_counter(), counted.samples
                _attack_batch(counted, attack, x, y, logits, correct, config, tally, b, a)
                tally.seconds += time.perf_counter() - t0
                tally.forward_samples += counted.samples - before
            if progress is not None:
                progress(n)
    if n == 0:
        raise UsageError("no samples to evaluate: the data is empty")
    curves = {}
    for attack, tally in zip(attacks, tallies, strict=True):
        points = [
            CurvePoint(
                eps=eps,
                accuracy=tally.robust[j] / n,
                robust=tally.robust[j],
                success_rate=(clean_correct - tally.robust[j]) / clean_correct if clean_correct else 0.0,
                mean_norm=tally.norm_sum[j] / tally.norm_count[j] if tally.norm_count[j] else None,
                max_norm=tally.norm_max[j] if tally.norm_count[j] else None,
                robust_per_class=tally.robust_per_class[j].tolist(),
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
            median_norm=tally.median_norm(),
        )
    total = time.perf_counter() - started
    return RobustnessReport(
        n_samples=n,
        clean_correct=clean_correct,
        clean_accuracy=clean_correct / n,
        eps=list(config.eps),
        norm=config.norm,
        attacks=curves,
        class_counts=class_counts.tolist(),
        clean_correct_per_class=clean_per_class.tolist(),
        config={"early_stop": config.early_stop, **config.extra},
        seed=config.seed,
        timing={"total_seconds": round(total, 4), "clean_seconds": round(clean_seconds, 4)},
        versions=versions(device),
    )
