"""Running counts of an evaluation, one batch at a time.

Each batch produces a :class:`BatchTally` (clean counts, one :class:`AttackTally` per attack and
the checks' :class:`~advgrad.evaluation.evidence.Evidence`); the run's totals are their sum in batch order.
A batch's tally is plain data (numbers, lists and a few small example tensors), so a resume state
can store it and a later run can add it back in without running the batch again: integer counts
add exactly and float sums are added in the same order, so the totals are identical.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from advgrad.core.results import Counterexample, Example
from advgrad.evaluation.evidence import Evidence
from advgrad.evaluation.records import BatchRecords


def _add(a: list, b: list) -> list:
    return [u + v for u, v in zip(a, b, strict=True)]


@dataclass
class AttackTally:
    """Counts for one attack, per ε: samples still correct (overall and per class), the sum,
    maximum and count of the norms of the adversarial examples counted at that ε, and the forward and
    backward sample-passes spent there (a minimal attack's one search is spent at the first ε); the
    run's totals of both in ``forward_samples`` and ``backward_samples``."""

    robust: list[int]
    robust_per_class: list[list[int]]
    norm_sum: list[float]
    norm_max: list[float]
    norm_count: list[int]
    seconds: float = 0.0
    forward_samples: int = 0
    backward_samples: int = 0
    forward_per_eps: list[int] = field(default_factory=list)  # per ε ([] = a state saved before they were counted)
    backward_per_eps: list[int] = field(default_factory=list)
    # a cascade: per stage name (in order), [forward samples, backward samples, samples it fooled], over every ε
    stages: dict[str, list[int]] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)
    minimal_norms: list[float] = field(default_factory=list)  # minimal attacks: per attacked sample, inf if not fooled
    nonfinite: list[int] = field(default_factory=list)  # per ε: inputs tried with NaN/Inf logits ([] = none)
    nonfinite_search: int = 0  # minimal attacks: the same, during the unbounded search
    abstained: int = 0  # randomized smoothing: samples the smoothed classifier abstained on
    falsified: list[int] | None = None  # branch and bound, per ε: clean-correct samples with a counterexample
    counterexamples: list[Counterexample] = field(default_factory=list)  # branch and bound: one per falsified sample
    bounds: int = 0  # IBP, CROWN: margin bounds computed (one per sample and ε)

    @classmethod
    def empty(cls, n_eps: int, classes: int) -> AttackTally:
        return cls(
            robust=[0] * n_eps,
            robust_per_class=[[0] * classes for _ in range(n_eps)],
            norm_sum=[0.0] * n_eps,
            norm_max=[float("-inf")] * n_eps,
            norm_count=[0] * n_eps,
            nonfinite=[0] * n_eps,
            forward_per_eps=[0] * n_eps,
            backward_per_eps=[0] * n_eps,
        )

    def add_passes(self, j: int, forward: int, backward: int) -> None:
        """Charge ``forward`` and ``backward`` sample-passes to ε number ``j`` and to the totals."""
        self.forward_per_eps[j] += forward
        self.backward_per_eps[j] += backward
        self.forward_samples += forward
        self.backward_samples += backward

    def add_point(self, j: int, still: Tensor, y: Tensor, norms: Tensor) -> None:
        """Record ε number ``j``: ``still`` marks the samples still correct, ``norms`` are the
        perturbation norms of the adversarial examples counted at this ε."""
        classes = len(self.robust_per_class[j])
        self.robust[j] += int(still.sum())
        per_class = torch.bincount(y[still], minlength=classes).tolist()
        self.robust_per_class[j] = _add(self.robust_per_class[j], per_class)
        if norms.numel():
            self.norm_sum[j] += float(norms.double().sum())  # float32 sums drift above the max
            self.norm_max[j] = max(self.norm_max[j], float(norms.max()))
            self.norm_count[j] += norms.numel()

    def add_examples(
        self, attack: str, eps: float, x: Tensor, x_adv: Tensor, y: Tensor, pred: Tensor, limit: int
    ) -> None:
        """Keep up to ``limit`` examples in all (copies on the CPU, so memory stays flat)."""
        take = min(max(limit - len(self.examples), 0), x.shape[0])
        for i in range(take):
            self.examples.append(
                Example(
                    attack,
                    float(eps),
                    x[i].detach().cpu().clone(),
                    x_adv[i].detach().cpu().clone(),
                    int(y[i]),
                    int(pred[i]),
                )
            )

    def merge(self, other: AttackTally) -> None:
        """Add ``other`` (a later batch) to these counts, in place."""
        self.robust = _add(self.robust, other.robust)
        self.robust_per_class = [_add(a, b) for a, b in zip(self.robust_per_class, other.robust_per_class, strict=True)]
        self.norm_sum = _add(self.norm_sum, other.norm_sum)
        self.norm_max = [max(a, b) for a, b in zip(self.norm_max, other.norm_max, strict=True)]
        self.norm_count = _add(self.norm_count, other.norm_count)
        self.seconds += other.seconds
        self.forward_samples += other.forward_samples
        self.backward_samples += other.backward_samples
        for name, counts in other.stages.items():
            self.stages[name] = _add(self.stages.get(name, [0, 0, 0]), counts)
        self.examples.extend(other.examples)
        self.minimal_norms.extend(other.minimal_norms)
        zeros = [0] * len(self.robust)  # a state saved before these counts existed holds none
        self.forward_per_eps = _add(self.forward_per_eps or zeros, other.forward_per_eps or zeros)
        self.backward_per_eps = _add(self.backward_per_eps or zeros, other.backward_per_eps or zeros)
        self.nonfinite = _add(self.nonfinite or zeros, other.nonfinite or zeros)
        self.nonfinite_search += other.nonfinite_search
        self.abstained += other.abstained
        if self.falsified is not None or other.falsified is not None:
            self.falsified = _add(self.falsified or zeros, other.falsified or zeros)
        self.counterexamples.extend(other.counterexamples)
        self.bounds += other.bounds

    def median_norm(self) -> float | None:
        """Median minimal norm over the attacked samples, a sample the attack could not fool counting
        as +∞; None when no minimal attack ran or when the median is +∞ (fewer than half fooled)."""
        if not self.minimal_norms:
            return None
        norms = sorted(self.minimal_norms)
        mid = len(norms) // 2
        value = norms[mid] if len(norms) % 2 else (norms[mid - 1] + norms[mid]) / 2
        return float(value) if math.isfinite(value) else None

    def to_state(self) -> dict[str, Any]:
        kept = ("examples", "counterexamples")
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in kept}
        body["examples"] = [dataclasses.asdict(e) for e in self.examples]
        body["counterexamples"] = [dataclasses.asdict(c) for c in self.counterexamples]
        return body

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> AttackTally:
        body = dict(data)
        examples = [Example(**e) for e in body.pop("examples", [])]
        found = [Counterexample(**c) for c in body.pop("counterexamples", [])]
        return cls(**body, examples=examples, counterexamples=found)


@dataclass
class CorruptionTally:
    """Counts for the common corruptions: ``correct[i][s]``, samples classified correctly under
    corruption ``i`` at severity ``s + 1``; the time and model samples they took."""

    correct: list[list[int]]
    seconds: float = 0.0
    forward_samples: int = 0
    sample: Tensor | None = None  # the run's first input (batch 0), for the plot's row of corrupted examples

    @classmethod
    def empty(cls, corruptions: int, severities: int) -> CorruptionTally:
        return cls([[0] * severities for _ in range(corruptions)])

    def merge(self, other: CorruptionTally) -> None:
        self.correct = [_add(a, b) for a, b in zip(self.correct, other.correct, strict=True)]
        self.seconds += other.seconds
        self.forward_samples += other.forward_samples
        self.sample = self.sample if self.sample is not None else other.sample


@dataclass
class BatchTally:
    """Everything one batch (or several, merged) contributes to a report."""

    n: int
    clean_correct: int
    class_counts: list[int]
    clean_per_class: list[int]
    attacks: list[AttackTally]
    evidence: Evidence
    clean_seconds: float = 0.0
    clean_forward: int = 0  # sample-passes of the clean predictions and the checks' measurements
    clean_backward: int = 0
    certified: AttackTally | None = None  # eval --certify / certify: samples certified per ε (robust counts)
    corruptions: CorruptionTally | None = None  # eval --corruptions: correct samples per corruption and severity
    # one batch's per-sample records: saved and exchanged with it, never merged (the rows are written in
    # batch order as batches are added, so memory stays flat)
    records: BatchRecords | None = None

    @classmethod
    def empty(
        cls, n_eps: int, classes: int, n_attacks: int, certify: bool = False, corruptions: int = 0, severities: int = 0
    ) -> BatchTally:
        """Zero counts, to which batches are added in order."""
        return cls(
            0,
            0,
            [0] * classes,
            [0] * classes,
            [AttackTally.empty(n_eps, classes) for _ in range(n_attacks)],
            Evidence(),
            certified=AttackTally.empty(n_eps, classes) if certify else None,
            corruptions=CorruptionTally.empty(corruptions, severities) if corruptions else None,
        )

    def merge(self, other: BatchTally) -> None:
        self.n += other.n
        self.clean_correct += other.clean_correct
        self.class_counts = _add(self.class_counts, other.class_counts)
        self.clean_per_class = _add(self.clean_per_class, other.clean_per_class)
        for mine, theirs in zip(self.attacks, other.attacks, strict=True):
            mine.merge(theirs)
        self.evidence.merge(other.evidence)
        self.clean_seconds += other.clean_seconds
        self.clean_forward += other.clean_forward
        self.clean_backward += other.clean_backward
        if (self.certified is None) != (other.certified is None):
            raise ValueError("cannot add a batch with certified counts to one without")
        if self.certified is not None and other.certified is not None:
            self.certified.merge(other.certified)
        if (self.corruptions is None) != (other.corruptions is None):
            raise ValueError("cannot add a batch with corruption counts to one without")
        if self.corruptions is not None and other.corruptions is not None:
            self.corruptions.merge(other.corruptions)

    def examples_kept(self) -> list[int]:
        return [len(a.examples) for a in self.attacks]

    def to_state(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "clean_correct": self.clean_correct,
            "class_counts": self.class_counts,
            "clean_per_class": self.clean_per_class,
            "clean_seconds": self.clean_seconds,
            "clean_forward": self.clean_forward,
            "clean_backward": self.clean_backward,
            "attacks": [a.to_state() for a in self.attacks],
            "evidence": self.evidence.to_dict(),
            "certified": None if self.certified is None else self.certified.to_state(),
            "corruptions": None if self.corruptions is None else dataclasses.asdict(self.corruptions),
            "records": None if self.records is None else self.records.to_state(),
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> BatchTally:
        body = dict(data)
        attacks = [AttackTally.from_state(a) for a in body.pop("attacks")]
        evidence = Evidence.from_dict(body.pop("evidence"))
        certified = body.pop("certified", None)
        corruptions = body.pop("corruptions", None)
        records = body.pop("records", None)
        return cls(
            **body,
            attacks=attacks,
            evidence=evidence,
            certified=None if certified is None else AttackTally.from_state(certified),
            corruptions=None if corruptions is None else CorruptionTally(**corruptions),
            records=None if records is None else BatchRecords.from_state(records),
        )
