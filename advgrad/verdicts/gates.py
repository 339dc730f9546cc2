"""Robustness gates: ``--fail-under ATTACK@EPS=ACC`` turns a report into pass or fail.

A gate ``pgd@8/255=0.40`` passes when the accuracy under ``pgd`` at ε = 8/255 is at least 0.40.
``clean=0.95`` gates the clean accuracy. ε is matched to the report's ε values with a small
relative tolerance (0.0314 names 8/255); the accuracy may be written as a fraction (0.4, 2/5) or a
percentage (40%). ``certified@EPS=ACC`` gates the certified curve of ``eval --certify`` or
``advgrad certify`` (certified accuracy, a lower bound). ``corruption@mean=ACC`` gates the mean
accuracy under the common corruptions of ``eval --corruptions`` (over every corruption and
severity of the run). A gate that names an attack or an ε the run does not have is a usage error,
never a silent pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from advgrad.core.eps import default_eps_label, parse_eps
from advgrad.core.errors import UsageError
from advgrad.core.results import RobustnessReport, same_eps

CLEAN = "clean"
CERTIFIED = "certified"  # names the report's certified curve, whichever bound method made it
CORRUPTION = "corruption"  # corruption@mean: the mean accuracy under the common corruptions
CORRUPTION_MEAN = "mean"
EXAMPLE = "pgd@8/255=0.40"


def parse_share(text: str, what: str) -> float:
    """A share in [0, 1]: ``0.4``, ``2/5`` or ``40%``."""
    raw = str(text).strip()
    if raw.endswith("%"):
        value = parse_eps(raw[:-1], what) / 100
    else:
        value = parse_eps(raw, what)
    if value > 1:
        raise UsageError(f"bad {what} {raw!r}: write a share between 0 and 1 (0.4) or a percentage (40%)")
    return value


@dataclass(frozen=True)
class Gate:
    """Accuracy under ``attack`` at ``eps`` (or clean accuracy, ``attack == "clean"``) must be at
    least ``threshold``."""

    text: str
    attack: str
    eps: float | None
    threshold: float


def parse_gate(text: str) -> Gate:
    """``ATTACK@EPS=ACC`` (``pgd@8/255=0.40``) or ``clean=ACC``."""
    raw = str(text).strip()
    point, sep, threshold = raw.partition("=")
    if not sep or not point.strip() or not threshold.strip():
        raise UsageError(f"bad gate {raw!r}: write ATTACK@EPS=ACC, e.g. --fail-under {EXAMPLE}")
    acc = parse_share(threshold, f"accuracy in gate {raw!r}")
    attack, at, eps = point.strip().partition("@")
    attack = attack.strip().lower()
    if attack == CLEAN and not at:
        return Gate(raw, CLEAN, None, acc)
    if attack == CORRUPTION:
        if eps.strip().lower() != CORRUPTION_MEAN:
            raise UsageError(f"bad gate {raw!r}: the corruptions are gated by their mean, write corruption@mean=ACC")
        return Gate(raw, CORRUPTION, None, acc)
    if not at or not attack or not eps.strip():
        raise UsageError(f"bad gate {raw!r}: write ATTACK@EPS=ACC, e.g. --fail-under {EXAMPLE} (or clean=ACC)")
    return Gate(raw, attack, parse_eps(eps, f"ε in gate {raw!r}"), acc)


def parse_gates(texts: list[str] | None) -> list[Gate]:
    return [parse_gate(t) for t in (texts or [])]


def check_gates_apply(gates: list[Gate], attacks: list[str], eps: list[float], *, corruptions: bool = False) -> None:
    """Raise :class:`UsageError` for a gate whose attack or ε is not in the run (before it runs);
    ``corruptions``: whether the run measures common corruptions."""
    names = [a.lower() for a in attacks]
    for gate in gates:
        if gate.attack == CLEAN:
            continue
        if gate.attack == CORRUPTION:
            if not corruptions:
                raise UsageError(f"gate {gate.text!r} needs common corruptions in the run: add --corruptions all")
            continue
        if gate.attack not in names:
            raise UsageError(
                f"gate {gate.text!r} names attack {gate.attack!r}, which this run does not include "
                f"(attacks: {', '.join(attacks)})"
            )
        if not any(same_eps(gate.eps, e) for e in eps):
            listed = ", ".join(default_eps_label(e) for e in eps)
            raise UsageError(
                f"gate {gate.text!r}: ε={default_eps_label(gate.eps)} is not among this run's ε values ({listed})"
            )


@dataclass
class GateResult:
    """A gate and the accuracy the report holds at its point."""

    gate: str
    attack: str
    eps: float | None
    threshold: float
    accuracy: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_gate(result: dict[str, Any]) -> str:
    """``pgd at ε=0.1: accuracy 35.00% < required 40.00% (pgd@0.1=0.40)`` for a gate result dict."""
    if result["attack"] == CORRUPTION:
        where = "mean corruption accuracy"
    elif result["eps"] is None:
        where = "clean accuracy"
    else:
        where = f"{result['attack']} at ε={default_eps_label(result['eps'])}"
    sign = "≥" if result["passed"] else "<"
    return (
        f"{where}: accuracy {100 * result['accuracy']:.2f}% {sign} required {100 * result['threshold']:.2f}% "
        f"({result['gate']})"
    )


def evaluate_gates(report: RobustnessReport, gates: list[Gate]) -> list[GateResult]:
    """The result of each gate on ``report``; an attack or ε the report lacks is a UsageError."""
    by_name = {name.lower(): curve for name, curve in report.attacks.items()}
    certified = [curve for curve in report.attacks.values() if curve.kind == "certified"]
    if certified:
        by_name.setdefault(CERTIFIED, certified[0])
    check_gates_apply(gates, list(by_name), report.eps, corruptions=report.corruptions is not None)
    results = []
    for gate in gates:
        eps, accuracy = None, report.clean_accuracy
        if gate.attack == CORRUPTION and report.corruptions is not None:
            accuracy = report.corruptions.mean_accuracy
        elif gate.eps is not None:  # check_gates_apply made sure the point exists
            point = next(p for p in by_name[gate.attack].points if same_eps(p.eps, gate.eps))
            eps, accuracy = point.eps, point.accuracy
        results.append(GateResult(gate.text, gate.attack, eps, gate.threshold, accuracy, accuracy >= gate.threshold))
    return results
