"""What a robustness sweep will cost, before it is paid.

Each attack declares its cost per sample once, next to its parameters
(:attr:`advgrad.attacks.base.AttackParams.cost_formula`): the model passes (a forward pass, with
its backward pass where the attack takes a gradient) one sample costs at most. A sweep runs a
bounded attack once per ε > 0 and a minimal attack once, on every sample, so

    passes ≤ samples × Σ_attacks runs(attack) × passes_per_sample(attack).

It is an upper bound: clean-misclassified samples are never attacked, a sample fooled at a smaller
ε is not attacked again and early stop drops a sample as soon as it is fooled, so a run usually
costs less. ``advgrad eval`` states the estimate on stderr when it exceeds :data:`NOTICE_PASSES`
(and, timed on the first batch, how long it may take at most).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.attacks.base import formula_text
from advgrad.core.errors import Notice

NOTICE_PASSES = 1_000_000  # sample-passes above which eval states the cost before it starts


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

    def describe(self, seconds_per_pass: float | None = None) -> str:
        """One line for stderr: the total, each attack's share, and the time it may take at most."""
        parts = ", ".join(
            f"{a.name} {a.per_sample:,} × {a.samples:,} samples" + (f" × {a.runs} ε" if a.runs != 1 else "")
            for a in sorted(self.attacks, key=lambda a: -a.passes)
            if a.passes
        )
        time_text = ""
        if seconds_per_pass is not None:
            time_text = f", up to about {format_duration(self.passes * seconds_per_pass)} here"
        return Notice(
            f"cost: up to {self.passes:,} model passes over one sample ({parts}){time_text}; "
            "early stop and samples fooled at a smaller ε make it less. "
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


def seconds_per_sample_pass(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Wall time of one forward and backward pass over one sample, timed on the batch ``x`` (the
    second of two passes, so one-off setup does not count). The parameters are frozen as attacks
    run them; an upper bound for forward-only queries."""
    from advgrad.core.gradient import frozen

    def one() -> None:
        xv = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = model(xv)
            loss = torch.nn.functional.cross_entropy(out.float(), y)
            torch.autograd.grad(loss, xv)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    with frozen(model):
        one()
        t0 = time.perf_counter()
        one()
        return (time.perf_counter() - t0) / max(1, x.shape[0])


def format_duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
