"""Plain-data results of an evaluation: what every renderer (table, JSON, CSV, Markdown, JUnit,
plot) reads.

``RobustnessReport.to_dict()`` is the JSON report; its schema is documented in
docs/report-schema.md, shipped as a JSON Schema in advgrad/report/schema.json and versioned by
``SCHEMA_VERSION``. Fields derived from others (per-class accuracies) are added by ``to_dict`` and
dropped again by ``from_dict``.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from advgrad.core.eps import default_eps_label

if TYPE_CHECKING:
    from torch import Tensor

SCHEMA_NAME = "advgrad.robustness-report"
SCHEMA_VERSION = 2  # 2: every time measured sits in `timing` (attacks' and corruptions' seconds moved there)
READABLE_VERSIONS = (1, 2)

EPS_RTOL = 1e-3  # ε values closer than this (relative) name the same point: 0.0314 matches 8/255


def same_eps(a: float, b: float) -> bool:
    """Whether two ε values name the same point of a curve (0.0314 and 8/255 do; 0.03 does not)."""
    return abs(a - b) <= EPS_RTOL * max(abs(a), abs(b)) + 1e-12


def float32_decimal(value: float | None) -> float | None:
    """The shortest decimal that names the same float32 as ``value``: a norm measured in float32
    is reported as ``0.1``, not ``0.10000000149011612``; None, ±∞ and NaN pass through."""
    if value is None or not math.isfinite(value):
        return value
    try:
        target = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:  # beyond float32's range: it was not measured in float32
        return value
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == target:
            return float(text)
    return target


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


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
    eps_label: str | None = None  # ε as the user wrote it (8/255); None: see default_eps_label
    # branch and bound only (else None): clean-correct samples with a confirmed counterexample at this ε
    falsified: int | None = None
    forward_samples: int = 0  # the curve's sample-passes spent at this ε (a minimal search: at the first ε)
    backward_samples: int = 0

    def undecided(self, clean_correct: int) -> int | None:
        """Branch and bound: clean-correct samples neither verified nor falsified (None otherwise)."""
        return None if self.falsified is None else clean_correct - self.robust - self.falsified


@dataclass
class AttackCurve:
    """One attack's robustness curve and what it cost.

    ``median_norm`` (minimal-perturbation attacks only, else None): the median, over the samples
    the attack ran on (classified correctly, and not already labelled as the target), of the norm
    of the smallest adversarial example it found, in the threat model's norm; a sample it could
    not fool counts as +∞, and the field is None when that makes the median +∞.

    ``kind`` is the registry's kind of the attack: ``gradient``, ``minimal`` or ``score`` (uses
    only the model's outputs), or ``certified`` for a certified curve (``advgrad certify``).

    ``abstained`` (randomized smoothing only, else None): the samples on which the smoothed
    classifier abstained; they count as not certified at every radius. ``bounds_computed`` (IBP,
    CROWN, CROWN-IBP only, else None): the margin bounds computed, one per sample and ε: a bound's
    cost, where an attack's is ``forward_samples``. ``forward_samples`` and ``backward_samples``: the
    samples passed forward through the model and back from its output by this curve, in all (each
    point holds its ε's share).
    """

    attack: str
    norm: str
    params: dict[str, Any]
    target: str | None
    points: list[CurvePoint]
    seconds: float = 0.0
    forward_samples: int = 0
    kind: str = "gradient"
    median_norm: float | None = None
    abstained: int | None = None
    bounds_computed: int | None = None
    backward_samples: int = 0
    # a cascade (strong): per stage in order, {name, forward_samples, backward_samples, fooled} over every ε
    stages: list[dict[str, Any]] | None = None

    def point_at(self, eps: float) -> CurvePoint | None:
        """The point whose ε is :func:`same_eps` as ``eps``, if any."""
        for p in self.points:
            if same_eps(p.eps, eps):
                return p
        return None

    def accuracy_at(self, eps: float) -> float | None:
        point = self.point_at(eps)
        return None if point is None else point.accuracy


@dataclass
class CorruptionPoint:
    """Accuracy under one common corruption at one severity: ``correct`` samples of the report's
    ``n_samples`` classified correctly after the corruption (every sample counts, also those the
    model misclassifies cleanly)."""

    corruption: str
    severity: int
    accuracy: float
    correct: int


@dataclass
class CorruptionResults:
    """Accuracy under the common corruptions of Hendrycks & Dietterich (``eval --corruptions``):
    one point per corruption and severity, and ``mean_accuracy``, the mean of the points'
    accuracies (over 15 corruptions × 5 severities with ``all``: the mean corruption accuracy that
    RobustBench reports). ``sample``: the run's first input (C×H×W, CPU), from which the plot draws a
    row of corrupted examples; not part of the JSON."""

    severities: list[int]
    points: list[CorruptionPoint]
    mean_accuracy: float
    seconds: float = 0.0
    forward_samples: int = 0
    sample: Any = field(default=None, repr=False, compare=False)

    @property
    def names(self) -> list[str]:
        """The corruptions, in the run's order."""
        return list(dict.fromkeys(p.corruption for p in self.points))

    def accuracy(self, corruption: str, severity: int) -> float | None:
        for p in self.points:
            if p.corruption == corruption and p.severity == severity:
                return p.accuracy
        return None

    def mean_of(self, corruption: str) -> float:
        """Mean accuracy of one corruption over its severities."""
        values = [p.accuracy for p in self.points if p.corruption == corruption]
        return sum(values) / len(values)

    def mean_at(self, severity: int) -> float:
        """Mean accuracy over the corruptions at one severity."""
        values = [p.accuracy for p in self.points if p.severity == severity]
        return sum(values) / len(values)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CorruptionResults:
        body = {k: v for k, v in _known(cls, data).items() if k != "sample"}
        return cls(**{**body, "points": [CorruptionPoint(**_known(CorruptionPoint, p)) for p in data["points"]]})


@dataclass
class Example:
    """One adversarial example kept for the report's image grid (never serialised to JSON).

    ``x`` and ``x_adv`` are C×H×W CPU tensors; ``eps`` is the smallest ε of the sweep at which the
    attack fooled the sample; ``pred`` the model's prediction on ``x_adv``."""

    attack: str
    eps: float
    x: Tensor
    x_adv: Tensor
    y: int
    pred: int


@dataclass
class Counterexample:
    """A point of the ε-ball ∩ box that branch and bound found and a forward pass confirmed:
    ``index`` the sample's place in the run, ``eps`` the smallest ε of the sweep it was found at
    (it lies within that ε), ``x`` the input (C×H×W CPU tensor), ``label`` and the model's
    ``prediction`` on ``x``. Never serialised to JSON (``--counterexamples FILE`` saves them)."""

    index: int
    eps: float
    x: Tensor
    label: int
    prediction: int


@dataclass
class RobustnessReport:
    """Clean accuracy and accuracy under each attack at each ε, with the run's context.

    ``diagnostics`` holds the cheap measurements the sanity checks read (see
    :mod:`advgrad.evaluation.evidence`), ``checks`` the checks' results (:mod:`advgrad.verdicts.checks`), ``gates``
    the results of ``--fail-under`` gates (:mod:`advgrad.verdicts.gates`). ``examples`` holds a few
    adversarial examples per attack for the image grid; it is not part of the JSON.
    """

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
    timing: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)
    examples: dict[str, list[Example]] = field(default_factory=dict, repr=False, compare=False)
    eps_labels: list[str] = field(default_factory=list)
    counterexamples: list[Counterexample] = field(default_factory=list, repr=False, compare=False)
    corruptions: CorruptionResults | None = None  # eval --corruptions: accuracy per corruption and severity
    # the run's sample-passes: forward_samples, backward_samples, and the clean predictions' and checks' share
    # (clean_forward_samples, clean_backward_samples); empty in a report read from before they were counted
    passes: dict[str, int] = field(default_factory=dict)

    def eps_label(self, eps: float) -> str:
        """How ``eps`` is printed: as the user wrote it (``8/255``) when the report knows that,
        else :func:`default_eps_label`."""
        for value, label in zip(self.eps, self.eps_labels, strict=False):
            if value == eps:
                return label
        return default_eps_label(eps)

    def class_accuracy(self, robust_per_class: list[int]) -> list[float | None]:
        """Per-class accuracy from per-class counts of correct samples (None for absent classes)."""
        return [_ratio(r, n) for r, n in zip(robust_per_class, self.class_counts, strict=False)]

    def to_dict(self) -> dict[str, Any]:
        """The JSON report. Every measured time sits in ``timing`` (``total_seconds``,
        ``clean_seconds``, ``attack_seconds`` per curve, ``corruption_seconds``) with how the run
        went (``resumed_batches``, ``world_size``): the rest of two runs of one command is byte-identical."""
        body = dataclasses.asdict(dataclasses.replace(self, examples={}, counterexamples=[]))
        del body["examples"], body["counterexamples"]
        body["timing"] = {**body["timing"], "attack_seconds": {k: c.pop("seconds") for k, c in body["attacks"].items()}}
        if not self.passes:  # an optional field: a report read from before passes were counted has none
            del body["passes"]
        if self.corruptions is None:  # an optional field: only a run with corruptions has it
            del body["corruptions"]
        else:
            body["timing"]["corruption_seconds"] = body["corruptions"].pop("seconds")
            del body["corruptions"]["sample"]  # pixels for the plot, not numbers of the report
        body["clean_accuracy_per_class"] = self.class_accuracy(self.clean_correct_per_class)
        for name, curve in self.attacks.items():
            if curve.stages is None:  # an optional field: only a cascade has stages
                del body["attacks"][name]["stages"]
            raws = body["attacks"][name]["points"]
            for k, point in enumerate(curve.points):
                raws[k] = _label_after_eps(raws[k], "eps_label")
                if raws[k]["falsified"] is None:  # an optional field: only branch and bound counts it
                    del raws[k]["falsified"]
                raws[k]["accuracy_per_class"] = self.class_accuracy(point.robust_per_class)
        return {"schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, **_label_after_eps(body, "eps_labels")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RobustnessReport:
        """The report a :meth:`to_dict` produced. Derived fields are recomputed, not read, and
        fields this version does not know (added by a later one) are ignored."""
        body = _known(cls, data)
        timing = dict(body.get("timing") or {})
        seconds = timing.pop("attack_seconds", {})  # version 1 kept them in the curves
        attacks = {}
        for name, curve in body.pop("attacks").items():
            points = [CurvePoint(**_known(CurvePoint, p)) for p in curve["points"]]
            attacks[name] = AttackCurve(
                **{"seconds": seconds.get(name, 0.0), **_known(AttackCurve, curve), "points": points}
            )
        corruptions = body.pop("corruptions", None)
        if corruptions is not None:
            corruptions = {"seconds": timing.pop("corruption_seconds", 0.0), **corruptions}
            body["corruptions"] = CorruptionResults.from_dict(corruptions)
        body["timing"] = timing
        return cls(attacks=attacks, **body)


def _label_after_eps(body: dict[str, Any], key: str) -> dict[str, Any]:
    """``body`` with ``key`` (the ε labels) moved right after ``eps``, where a reader looks for it."""
    label = body.pop(key)
    out: dict[str, Any] = {}
    for k, v in body.items():
        out[k] = v
        if k == "eps":
            out[key] = label
    return out


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls) if f.name not in ("examples", "counterexamples")}
    return {k: v for k, v in data.items() if k in names}
