"""What a robustness sweep will cost, before it is paid.

Each attack declares its cost per sample once, next to its parameters
(:attr:`advgrad.attacks.base.AttackParams.cost_formula`): the model passes (a forward pass, with
its backward pass where the attack takes a gradient) one sample costs at most. A sweep runs a
bounded attack once per ε > 0 and a minimal attack once, on every sample, so

    passes ≤ samples × Σ_attacks runs(attack) × passes_per_sample(attack).

It is an upper bound: clean-misclassified samples are never attacked, a sample fooled at a smaller
ε is not attacked again and early stop drops a sample as soon as it is fooled, so a run usually
costs far less (8× less for the README's tour, where a forward-only query of Square also costs less
than the forward and backward pass the bound was priced at). The time a run will take is therefore
measured, not multiplied out: :func:`pilot_seconds` runs the sweep itself — every attack at every ε,
early stop as configured — on the first :data:`PILOT_SAMPLES` samples, records each model call, and
scales the calls to the run's batches with a model of a call's time fitted on two batch sizes
(:class:`CallTimes`), adding the attacks' own work per batch as the pilot measured it. ``advgrad
eval`` states the upper bound and that estimate on stderr when the bound exceeds :data:`NOTICE_PASSES`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from advgrad.attacks.base import formula_text
from advgrad.core.errors import Notice
from advgrad.core.threat import ThreatModel

NOTICE_PASSES = 1_000_000  # sample-passes above which eval states the cost before it starts
PILOT_SAMPLES = 32  # samples the pilot run measures (its time goes mostly to the model calls, not to the samples)
PILOT_SHORTER = 8  # the pilot's budgets (steps, queries) are this many times shorter than the run's
BUDGETS = ("steps", "queries")  # the parameters that set how many calls an attack makes


@dataclass(frozen=True)
class AttackCost:
    """One attack's share: ``per_sample`` passes per run, ``runs`` runs (ε values) per sample."""

    name: str
    formula: str
    per_sample: int
    runs: int
    samples: int

    @property
    def passes(self) -> int:
        return self.per_sample * self.runs * self.samples


@dataclass(frozen=True)
class CostEstimate:
    """The sweep's cost in sample-passes, at most, attack by attack."""

    attacks: tuple[AttackCost, ...]

    @property
    def passes(self) -> int:
        return sum(a.passes for a in self.attacks)

    def describe(self, seconds: float | None = None, pilot: int | None = None) -> str:
        """One line for stderr: the upper bound, each attack's share, and ``seconds``, the time the run
        should take as a pilot run of ``pilot`` samples measured it (:func:`pilot_seconds`)."""
        parts = ", ".join(
            f"{a.name} {a.per_sample:,} × {a.samples:,} samples" + (f" × {a.runs} ε" if a.runs != 1 else "")
            for a in sorted(self.attacks, key=lambda a: -a.passes)
            if a.passes
        )
        time_text = ""
        if seconds is not None:
            time_text = (
                f"; about {format_duration(seconds)} here, measured by running the sweep on the first {pilot} "
                "samples (early stop and samples fooled at a smaller ε as in the run) and extrapolating"
            )
        return Notice(
            f"cost: up to {self.passes:,} model passes over one sample ({parts}){time_text}. "
            "Cut it with `limit`, fewer ε values or a smaller `steps`/`queries`.",
            ("limit", "steps", "queries"),
        )


def estimate_cost(attacks: Sequence, eps: Sequence[float], samples: int, classes: int) -> CostEstimate:
    """The cost of sweeping ``attacks`` (:class:`advgrad.evaluation.sweep.EvalAttack`) over ``eps`` on
    ``samples`` samples of a ``classes``-class model."""
    bounded_runs = sum(1 for e in eps if e > 0)
    rows = []
    for attack in attacks:
        runs = (1 if bounded_runs else 0) if attack.spec.kind == "minimal" else bounded_runs
        rows.append(
            AttackCost(
                attack.name,
                formula_text(attack.params.cost_formula),
                attack.params.passes_per_sample(classes),
                runs,
                samples,
            )
        )
    return CostEstimate(tuple(rows))


class _CallRecorder(nn.Module):
    """The model, recording each call's rows and whether a backward pass may follow (grad enabled)."""

    def __init__(self, model: nn.Module, calls: list[tuple[int, bool]]):
        super().__init__()
        self.model, self.calls = model, calls

    def forward(self, x: Tensor) -> Tensor:
        self.calls.append((x.shape[0], torch.is_grad_enabled()))
        return self.model(x)


TIMED_CALLS = 9  # calls timed per batch size (their median): single calls of a few ms are noisy


@dataclass(frozen=True)
class CallTimes:
    """Seconds of one model call on m rows, t(m) = a + b·m, forward and backward (``grad``) or forward
    only, fitted through two batch sizes: a call's fixed cost and its cost per row."""

    grad: tuple[float, float]
    forward: tuple[float, float]

    def seconds(self, rows: float, grad: bool) -> float:
        a, b = self.grad if grad else self.forward
        return a + b * rows

    @classmethod
    def measure(cls, model: nn.Module, x: Tensor, y: Tensor, sizes: tuple[int, int]) -> CallTimes:
        """Timed on ``x`` tiled to each size (the median of :data:`TIMED_CALLS` calls after one to warm up)."""
        from advgrad.core.gradient import frozen

        def call(m: int, grad: bool) -> float:
            reps = -(-m // x.shape[0])
            xm, ym = x.repeat(reps, *([1] * (x.dim() - 1)))[:m], y.repeat(reps)[:m]
            times = []
            for _ in range(TIMED_CALLS + 1):
                t0 = time.perf_counter()
                if grad:
                    xv = xm.detach().clone().requires_grad_(True)
                    with torch.enable_grad():
                        torch.autograd.grad(torch.nn.functional.cross_entropy(model(xv).float(), ym), xv)
                else:
                    with torch.no_grad():
                        model(xm)
                if x.device.type == "cuda":
                    torch.cuda.synchronize(x.device)
                times.append(time.perf_counter() - t0)
            return sorted(times[1:])[TIMED_CALLS // 2]

        def fit(grad: bool) -> tuple[float, float]:
            small, large = sizes
            t_small, t_large = call(small, grad), call(large, grad)
            per_row = max(0.0, (t_large - t_small) / (large - small)) if large > small else t_large / large
            return max(0.0, t_large - per_row * large), per_row

        with frozen(model):
            return cls(grad=fit(True), forward=fit(False))


def shortened(params: Any, factor: int, threat: Any) -> Any:
    """``params`` with their iteration budgets (``steps``, ``queries``; a default that is None taken as
    ``threat`` resolves it) divided by ``factor``, at least 1 each: the pilot's short run of an attack."""
    resolved = params.resolve(threat)
    cut = {}
    for name in BUDGETS:
        value = getattr(params, name, None)
        value = getattr(resolved, name, None) if value is None else value
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            cut[name] = max(1, -(-value // factor))
    return dataclasses.replace(params, **cut) if cut else params


def pilot_seconds(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attacks: Sequence,
    config: Any,
    samples: int,
    batch_size: int,
    device: torch.device,
) -> float:
    """The seconds the attacks of a sweep (``config``: :class:`advgrad.evaluation.eval_config.EvalConfig`)
    over ``samples`` samples in batches of ``batch_size`` should take, from a short pilot run of the sweep
    on ``x``, ``y`` (the run's first k samples, one batch): every attack at every ε with early stop, its
    ``steps`` and ``queries`` divided by :data:`PILOT_SHORTER` (a call of an attack costs about the same
    whatever its budget; their number is what the budget sets). The pilot records every model call: its
    rows r and whether a backward pass follows. A batch of B samples makes F times as many calls, F the
    ratio of the full budgets' passes to the pilot's, with r·B/k rows; with t(m) = a + b·m the time of a
    call (:class:`CallTimes`) and o the pilot's time beside its model calls (the attacks' own work)

        seconds ≈ Σ_batches F · (Σ_calls t(r · B / k) + o),

    over the run's batches (B = ``batch_size``, the last one what is left). Certification is left out
    (its bounds do not call the model). Nothing of the pilot is kept but its time; attacks draw from
    their own seeded generators, so the run's results do not change."""
    from advgrad.evaluation.sweep import evaluate

    k, full = x.shape[0], max(1, min(batch_size, samples))
    times = CallTimes.measure(model, x, y, (max(1, full // 8), full))
    threat = ThreatModel(config.norm, max(config.eps, default=0.0))
    short = [dataclasses.replace(a, params=shortened(a.params, PILOT_SHORTER, threat)) for a in attacks]
    runs = estimate_cost(attacks, config.eps, 1, 10).attacks  # runs per attack (ε values); passes per sample
    full_passes = sum(r.passes for r in runs)
    short_passes = sum(r.passes for r in estimate_cost(short, config.eps, 1, 10).attacks)
    factor = full_passes / short_passes if short_passes else 1.0
    calls: list[tuple[int, bool]] = []
    pilot = dataclasses.replace(config, examples=0, certify=None, smoothing=None)
    t0 = time.perf_counter()
    evaluate(_CallRecorder(model, calls), [(x, y)], short, pilot, device=device)
    beside = max(0.0, time.perf_counter() - t0 - sum(times.seconds(rows, grad) for rows, grad in calls))
    sizes = [full] * (samples // full) + ([samples % full] if samples % full else [])
    per_batch = [sum(times.seconds(rows * size / max(1, k), grad) for rows, grad in calls) + beside for size in sizes]
    return factor * sum(per_batch)


def format_duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
