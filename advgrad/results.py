"""Plain-data results of an evaluation: what every renderer (table, JSON, plot) reads.

``RobustnessReport.to_dict()`` is the JSON report; its schema is documented in
docs/report-schema.md and versioned by ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SCHEMA_NAME = "advgrad.robustness-report"
SCHEMA_VERSION = 1


@dataclass
class CurvePoint:
    """Accuracy under one attack at one ε.

    ``robust`` samples are still classified correctly; ``success_rate`` is the share of the
    clean-correct samples the attack fooled; the norm statistics are over the adversarial
    examples counted at this ε (found here or at a smaller ε, in the threat model's norm).
    """

    eps: float
    accuracy: float
    robust: int
    success_rate: float
    mean_norm: float | None = None
    max_norm: float | None = None
    robust_per_class: list[int] = field(default_factory=list)


@dataclass
class AttackCurve:
    """One attack's robustness curve and what it cost.

    ``median_norm`` (minimal-perturbation attacks only, else None): the median, over the samples
    the attack ran on (classified correctly, and not already labelled as the target), of the norm
    of the smallest adversarial example it found, in the threat model's norm; a sample it could
    not fool counts as +∞, and the field is None when that makes the median +∞.
    """

    attack: str
    norm: str
    params: dict[str, Any]
    target: str | None
    points: list[CurvePoint]
    seconds: float = 0.0
    forward_samples: int = 0
    median_norm: float | None = None

    def accuracy_at(self, eps: float) -> float | None:
        for p in self.points:
            if abs(p.eps - eps) <= 1e-12 * max(1.0, abs(eps)):
                return p.accuracy
        return None


@dataclass
class RobustnessReport:
    """Clean accuracy and accuracy under each attack at each ε, with the run's context."""

    n_samples: int
    clean_correct: int
    clean_accuracy: float
    eps: list[float]
    norm: str
    attacks: dict[str, AttackCurve]
    class_counts: list[int] = field(default_factory=list)
    clean_correct_per_class: list[int] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    timing: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        return {"schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, **body}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RobustnessReport:
        body = {k: v for k, v in data.items() if k not in ("schema", "schema_version")}
        attacks = {
            name: AttackCurve(**{**curve, "points": [CurvePoint(**p) for p in curve["points"]]})
            for name, curve in body.pop("attacks").items()
        }
        return cls(attacks=attacks, **body)
