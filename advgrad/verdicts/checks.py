"""Sanity checks: signs that a report's numbers are probably too good.

Every report carries the result of every check (Carlini et al. 2019, "On Evaluating Adversarial
Robustness"; Athalye et al. 2018, "Obfuscated Gradients Give a False Sense of Security"). A check
reads only the report: its curves, and the evidence :mod:`advgrad.evaluation.evidence` measured on the
clean batches (``report.diagnostics``). Each has a stable name and a section of docs/checks.md
that explains it and what to do.

A check's status is ``passed``, ``warning`` (it fired) or ``not-applicable`` (the run holds
nothing it can look at, e.g. no gradient-free attack). A warning never changes the exit code
unless ``--strict`` is given.

A check is declared once, with :func:`check`: its name and title sit on the function, whose body
returns an :class:`Outcome` (status, message, details). :data:`CHECKS` and :data:`CHECK_NAMES`
(the order of every report's checks) follow from the declarations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from advgrad.core.eps import default_eps_label
from advgrad.core.errors import UsageError
from advgrad.core.geometry import get_geometry
from advgrad.core.results import AttackCurve, RobustnessReport

DOCS = "docs/checks.md"

PASSED, WARNING, NOT_APPLICABLE = "passed", "warning", "not-applicable"

# An attack count that differs by at most this many samples (at least one) is noise, not a sign.
SLACK_SHARE = 0.01
# A query-rich score attack may beat a short gradient attack by a little on an honest model; masking
# shows as a gradient-free attack breaking a large part of what the gradient attacks could not.
GRADIENT_FREE_SURVIVOR_SHARE = 0.25
ZERO_GRADIENT_SHARE = 0.01  # fire when more than this share of samples has a zero input gradient
LARGE_EPS_ACCURACY = 0.10  # fire when accuracy stays above this at an ε that allows anything
PROBABILITY_SHARE = 0.99  # fire when this share of output rows lies in [0, 1]
SATURATED_SHARE = 0.5  # fire when more than this share of clean-correct samples has a cross-entropy of exactly 0
MISMATCH_SHARE = 0.1  # fire when autograd and finite differences disagree on more than this share


@dataclass
class CheckResult:
    """The outcome of one check. ``details`` holds the numbers behind the message."""

    name: str
    title: str
    status: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def docs(self) -> str:
        return f"{DOCS}#{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "docs": self.docs}


class Outcome(NamedTuple):
    """What a check's body returns: its status, one line of message and the numbers behind it."""

    status: str
    message: str
    details: dict[str, Any] = {}


@dataclass(frozen=True)
class Check:
    """A declared check: calling it on a report gives its :class:`CheckResult`."""

    name: str
    title: str
    body: Callable[[RobustnessReport], Outcome]

    def __call__(self, report: RobustnessReport) -> CheckResult:
        status, message, details = self.body(report)
        return CheckResult(self.name, self.title, status, message, dict(details))


CHECKS: list[Check] = []  # in the order every report lists them: the order of declaration below


def check(name: str, title: str) -> Callable[[Callable[[RobustnessReport], Outcome]], Check]:
    """Declare a check: ``name`` (stable; the anchor of its section in docs/checks.md) and ``title``
    belong to the decorated function, which returns an :class:`Outcome`. Appends it to :data:`CHECKS`."""

    def declare(body: Callable[[RobustnessReport], Outcome]) -> Check:
        if any(c.name == name for c in CHECKS):
            raise ValueError(f"two checks are named {name!r}")
        found = Check(name, title, body)
        CHECKS.append(found)
        return found

    return declare


def _slack(n: int) -> float:
    """How many samples two counts may differ by before it means something."""
    return max(1.0, SLACK_SHARE * n)


def _gradient_curves(report: RobustnessReport) -> dict[str, AttackCurve]:
    return {k: c for k, c in report.attacks.items() if c.kind == "gradient"}


def gradient_steps(curve: AttackCurve) -> int | None:
    """The gradient steps (per restart) of a gradient attack, as its curve records them: its
    ``steps`` parameter; a gradient attack without one takes a single step (the contract of
    :class:`advgrad.attacks.base.AttackParams`: an iterating gradient attack names its iterations
    ``steps``). None for other kinds and for a ``steps`` that is not a whole number."""
    if curve.kind != "gradient":
        return None
    steps = curve.params.get("steps", 1)
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None


@check("accuracy-rises-with-eps", "accuracy rises with ε")
def accuracy_rises(report: RobustnessReport) -> Outcome:
    """Accuracy must not rise with ε: a larger ball contains every point of a smaller one."""
    if not report.attacks:  # common corruptions alone (eval --corruptions): no curve against ε
        return Outcome(NOT_APPLICABLE, "no attack or certified curve in this run")
    rises = []
    for name, curve in report.attacks.items():
        previous, previous_eps = report.clean_correct, None
        for p in sorted(curve.points, key=lambda p: p.eps):
            if p.robust > previous:
                where = "clean accuracy" if previous_eps is None else f"ε={report.eps_label(previous_eps)}"
                rises.append(
                    f"{name} at ε={report.eps_label(p.eps)} ({p.robust} correct, more than {previous} at {where})"
                )
            previous, previous_eps = p.robust, p.eps
    if rises:
        return Outcome(WARNING, "accuracy rises with ε for " + "; ".join(rises), {"rises": rises})
    return Outcome(PASSED, "accuracy never rises with ε")


def _beaten(
    report: RobustnessReport,
    strong: dict[str, AttackCurve],
    weak: dict[str, AttackCurve],
    *,
    strongest_only: bool,
    survivor_share: float = 0.0,
) -> list[dict[str, Any]]:
    """Points where an attack of ``weak`` leaves fewer samples correct, by more than the slack,
    than an attack of ``strong`` that should be at least as strong (only the strongest of
    ``strong`` at that ε when ``strongest_only``). With ``survivor_share`` the gap must also exceed
    that share of the samples the stronger attack left correct. Sorted by the gap, largest first."""
    found = []
    for w_name, w in weak.items():
        for p in w.points:
            rivals = [(q, s_name) for s_name, s in strong.items() if (q := s.point_at(p.eps)) is not None]
            if strongest_only and rivals:
                rivals = [min(rivals, key=lambda t: t[0].robust)]
            found += [
                {
                    "eps": p.eps,
                    "expected_stronger": s_name,
                    "expected_stronger_accuracy": q.accuracy,
                    "weaker": w_name,
                    "weaker_accuracy": p.accuracy,
                }
                for q, s_name in rivals
                if q.robust - p.robust > max(_slack(report.n_samples), survivor_share * q.robust)
            ]
    return sorted(found, key=lambda f: f["weaker_accuracy"] - f["expected_stronger_accuracy"])


def _finding(found: list[dict[str, Any]], stronger: str, weaker: str) -> str:
    """One line about the largest gap: '{stronger} leaves X% correct at ε=E where {weaker} leaves Y%'."""
    worst = found[0]
    more = f" (and {len(found) - 1} more points)" if len(found) > 1 else ""
    return (
        f"{stronger.format(worst['expected_stronger'])} leaves {100 * worst['expected_stronger_accuracy']:.1f}% "
        f"correct at ε={default_eps_label(worst['eps'])} where {weaker.format(worst['weaker'])} leaves "
        f"{100 * worst['weaker_accuracy']:.1f}%{more}"
    )


@check("iterative-weaker-than-single-step", "an iterative attack is weaker than a single-step one")
def iterative_weaker(report: RobustnessReport) -> Outcome:
    """An iterative gradient attack should be at least as strong as a single-step one."""
    curves = _gradient_curves(report)
    single = {k: c for k, c in curves.items() if gradient_steps(c) == 1}
    iterative = {k: c for k, c in curves.items() if (gradient_steps(c) or 0) > 1}
    if not single or not iterative:
        return Outcome(NOT_APPLICABLE, "needs a single-step and an iterative gradient attack (e.g. --attack fgsm,pgd)")
    found = _beaten(report, iterative, single, strongest_only=False)
    if found:
        return Outcome(WARNING, _finding(found, "iterative {}", "single-step {}"), {"points": found})
    return Outcome(PASSED, "every iterative attack is at least as strong as every single-step one")


def _or_one(accuracy: float | None) -> float:
    return 1.0 if accuracy is None else accuracy


def large_eps_threshold(norm: str, input_shape: list[int]) -> float | None:
    """The ε from which an attacker can move every input to the same mid-grey image (all 0.5): half
    the diameter of [0, 1]^d, 0.5 in L∞, 0.5·√d in L2, 0.5·d in L1 for d input values. None when it
    depends on d and d is unknown."""
    diameter = get_geometry(norm).box_diameter(math.prod(input_shape) if input_shape else None)
    return None if diameter is None else 0.5 * diameter


@check("accuracy-at-large-eps", "accuracy far from zero at a large ε")
def large_eps_accuracy(report: RobustnessReport) -> Outcome:
    """At an ε that allows any input to become the same image, accuracy must come near zero."""
    if report.config.get("fixed"):  # immutable features differ between inputs whatever the attacker does
        return Outcome(
            NOT_APPLICABLE,
            "some input features are immutable (ε weight 0), so no ε lets every input become the same one",
        )
    threshold = large_eps_threshold(report.norm, report.diagnostics.get("input_shape", []))
    large = [e for e in report.eps if threshold is not None and e >= threshold * (1 - 1e-9)]
    attacked = [c for c in report.attacks.values() if c.kind != "certified"]  # a bound is no attack
    if not large or not attacked:
        bound = "unknown" if threshold is None else f"{threshold:g}"
        return Outcome(
            NOT_APPLICABLE,
            f"no ε in this run reaches {bound}, where every input can "
            "be turned into the same grey image; add one to check that the attacks reach 0%",
            {"threshold": threshold},
        )
    eps = max(large)
    best = min(attacked, key=lambda c: _or_one(c.accuracy_at(eps)))
    accuracy = _or_one(best.accuracy_at(eps))
    share = max(report.class_counts) / report.n_samples if report.class_counts else None
    details = {"eps": eps, "threshold": threshold, "accuracy": accuracy, "largest_class_share": share}
    if accuracy > LARGE_EPS_ACCURACY:
        return Outcome(
            WARNING,
            (
                f"at ε={report.eps_label(eps)} every input can be turned into the same grey image, yet the strongest attack "
                f"({best.attack}) leaves {100 * accuracy:.1f}% correct"
            ),
            details,
        )
    return Outcome(PASSED, f"at ε={report.eps_label(eps)} the attacks leave {100 * accuracy:.1f}% correct", details)


@check("zero-gradients", "zero or non-finite input gradients")
def zero_gradients(report: RobustnessReport) -> Outcome:
    """The gradient attacks need a usable ∇ₓJ: zero or non-finite gradients mean they are blind."""
    d = report.diagnostics
    measured = d.get("gradient_samples", 0)
    if not measured:
        return Outcome(NOT_APPLICABLE, "no clean-correct sample had its gradient measured")
    zero, nonfinite = d.get("gradient_zero", 0), d.get("gradient_nonfinite", 0)
    details = {"measured": measured, "zero": zero, "nonfinite": nonfinite}
    if nonfinite or zero > ZERO_GRADIENT_SHARE * measured:
        return Outcome(
            WARNING,
            (
                f"{zero} of {measured} samples ({100 * zero / measured:.1f}%) have an input gradient that is exactly "
                f"zero and {nonfinite} a non-finite one; gradient attacks cannot move them (a non-differentiable "
                "layer? `--bpda NAME` differentiates through it as the identity)"
            ),
            details,
        )
    return Outcome(PASSED, f"{measured - zero} of {measured} measured samples have a usable gradient", details)


@check("gradient-free-beats-gradient", "a gradient-free attack succeeds where gradient attacks fail")
def gradient_free_stronger(report: RobustnessReport) -> Outcome:
    """A score-based attack (outputs only) should not beat the gradient attacks."""
    score = {k: c for k, c in report.attacks.items() if c.kind == "score"}
    gradient = _gradient_curves(report)
    if not score or not gradient:
        return Outcome(
            NOT_APPLICABLE,
            "needs a gradient-free (score-based) attack and a gradient "
            "attack in the same run (e.g. --attack pgd,square)",
        )
    found = _beaten(report, gradient, score, strongest_only=True, survivor_share=GRADIENT_FREE_SURVIVOR_SHARE)
    if found:
        return Outcome(
            WARNING, _finding(found, "the strongest gradient attack ({})", "gradient-free {}"), {"points": found}
        )
    return Outcome(PASSED, "no gradient-free attack beats the gradient attacks")


def _eot(curve: AttackCurve) -> int:
    """The EOT passes per gradient an attack's curve records (1: a plain gradient)."""
    value = curve.params.get("eot", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


@check("randomized-model", "outputs change between two identical forward passes")
def randomized_model(report: RobustnessReport) -> Outcome:
    """The same input must give the same output; a randomized model defeats attacks that take one
    gradient per step, unless each gradient is an expectation over many passes (EOT)."""
    d = report.diagnostics
    measured = d.get("repeat_samples", 0)
    if not measured:
        return Outcome(NOT_APPLICABLE, "no sample was run twice")
    changed = d.get("repeat_changed", 0)
    plain = sorted(k for k, c in report.attacks.items() if c.kind in ("gradient", "ensemble") and _eot(c) == 1)
    details = {
        "measured": measured,
        "changed": changed,
        "max_relative_difference": d.get("repeat_max_difference", 0.0),
        "without_eot": plain,
    }
    if not changed:
        return Outcome(PASSED, f"{measured} samples gave the same outputs twice", details)
    finding = (
        f"the outputs of {changed} of {measured} samples changed between two forward passes on the same input "
        f"(up to {100 * details['max_relative_difference']:.3g}% of the largest output): the model is randomized"
    )
    if plain or not any(c.kind in ("gradient", "ensemble") for c in report.attacks.values()):
        took = f", and {', '.join(plain)} took one gradient per step" if plain else ""
        return Outcome(
            WARNING,
            f"{finding}{took}; run gradient attacks with `--eot 20` (expectation over transformation) "
            "or use `--attack autoattack-rand`",
            details,
        )
    return Outcome(
        PASSED, f"{finding}; every gradient attack averaged its gradients over several passes (EOT)", details
    )


@check("probability-outputs", "outputs look like probabilities rather than logits")
def probability_outputs(report: RobustnessReport) -> Outcome:
    """Attacks expect logits; probabilities (softmax already applied) weaken their gradients."""
    d = report.diagnostics
    rows = d.get("output_rows", 0)
    if not rows:
        return Outcome(NOT_APPLICABLE, "no outputs were measured")
    unit, simplex = d.get("output_unit_rows", 0), d.get("output_simplex_rows", 0)
    details = {"rows": rows, "in_unit_interval": unit, "sum_to_one": simplex}
    if unit >= PROBABILITY_SHARE * rows:
        what = "non-negative and sum to 1 (softmax)" if simplex >= PROBABILITY_SHARE * rows else "lie in [0, 1]"
        return Outcome(
            WARNING,
            (f"{unit} of {rows} output rows {what}: the model seems to return probabilities, not logits"),
            details,
        )
    return Outcome(PASSED, "the outputs look like logits", details)


@check("non-finite-logits", "the model returned NaN or infinite logits")
def nonfinite_logits(report: RobustnessReport) -> Outcome:
    """NaN or infinite logits: clean ones count as misclassified, those met during an attack never
    count as fooled (the sample keeps its last point with finite logits). Either way the numbers
    rest on a model that fails numerically somewhere near the data."""
    d = report.diagnostics
    clean = d.get("clean_nonfinite", 0)
    during = d.get("nonfinite_logits", [])
    details = {"clean_samples": clean, "attacks": during}
    if not clean and not during:
        return Outcome(PASSED, "every logit the model returned was finite", details)
    parts = []
    if clean:
        parts.append(
            f"{clean} of {report.n_samples} samples have NaN or infinite clean logits (counted as misclassified)"
        )
    for item in during:
        where = "in its unbounded search" if item["eps"] is None else f"at ε={item['eps']:g}"
        parts.append(
            f"{item['attack']} {where}: {item['inputs']} inputs tried gave NaN or infinite logits "
            "(never counted as fooled)"
        )
    return Outcome(WARNING, "; ".join(parts), details)


def _cross_entropy_attacks(report: RobustnessReport) -> list[str]:
    """The attacks of the run that climb the cross-entropy: gradient attacks whose ``loss`` is ce
    (the default of those that have one), and the ensembles (each starts with APGD-CE)."""
    return sorted(
        name
        for name, c in report.attacks.items()
        if (c.kind == "gradient" and c.params.get("loss", "ce") == "ce") or c.kind == "ensemble"
    )


@check("loss-saturation", "the cross-entropy is saturated at the clean samples")
def loss_saturation(report: RobustnessReport) -> Outcome:
    """Logits so large that the cross-entropy is exactly 0 in float32 leave CE-based attacks a flat
    loss (and gradients that underflow): the margin and DLR losses are invariant to that scale."""
    d = report.diagnostics
    measured, saturated = d.get("loss_samples", 0), d.get("loss_saturated", 0)
    if not measured:
        return Outcome(NOT_APPLICABLE, "no clean-correct sample had its loss read")
    using = _cross_entropy_attacks(report)
    details = {"measured": measured, "saturated": saturated, "cross_entropy_attacks": using}
    finding = (
        f"{saturated} of {measured} clean-correct samples ({100 * saturated / measured:.1f}%) have a cross-entropy of "
        "exactly 0 in float32: the logits are so large that the softmax saturates"
    )
    if saturated <= SATURATED_SHARE * measured:
        return Outcome(
            PASSED, f"{measured - saturated} of {measured} clean-correct samples have a non-zero loss", details
        )
    if not using:
        return Outcome(PASSED, f"{finding}; no attack of the run uses the cross-entropy", details)
    return Outcome(
        WARNING,
        f"{finding}, and {', '.join(using)} climb it: run `--loss margin` or `--loss dlr` (or apgd-dlr), which do "
        "not depend on the logits' scale",
        details,
    )


@check("input-dependent-computation", "the model changes its computation with the input")
def input_dependent_computation(report: RobustnessReport) -> Outcome:
    """A model whose forward pass depends on its input beyond a fixed graph (test-time optimisation,
    input-dependent iterations or branches) defeats attacks that trust one gradient: the cost of a
    forward pass varies between samples, or autograd disagrees with finite differences."""
    d = report.diagnostics
    costed, low, high = d.get("cost_samples", 0), d.get("cost_min", 0), d.get("cost_max", 0)
    compared, mismatched = d.get("consistency_samples", 0), d.get("consistency_mismatched", 0)
    randomized = d.get("repeat_changed", 0) > 0  # finite differences of a random model say nothing
    details = {
        "cost_samples": costed,
        "cost_min": low,
        "cost_max": high,
        "compared": compared,
        "mismatched": mismatched,
    }
    if not costed and (not compared or randomized):
        return Outcome(NOT_APPLICABLE, "no sample was measured (the gradient evidence did not run)", details)
    found = []
    if high > low:
        found.append(
            f"its forward pass ran between {low} and {high} tensor operations on single samples: its iterations or "
            "branches depend on the input"
        )
    if compared and not randomized and mismatched > MISMATCH_SHARE * compared:
        found.append(
            f"autograd's derivative disagrees with finite differences of its outputs on {mismatched} of {compared} "
            "samples: its gradient does not describe what it computes (test-time optimisation, a purification step "
            "passed straight through)"
        )
    if found:
        return Outcome(
            WARNING,
            "the model changes its computation at inference: " + "; ".join(found) + ". Attack the whole computation "
            "(BPDA with `--bpda`, EOT, a gradient-free attack such as square) and run `--check binarization`",
            details,
        )
    return Outcome(PASSED, "the model runs one fixed computation, and its gradient matches its outputs", details)


@check("binarization", "attacks miss adversarial examples that are known to exist")
def binarization(report: RobustnessReport) -> Outcome:
    """The binarization test (Zimmermann et al. 2022; :mod:`advgrad.evaluation.binarization`): each
    attack must find the adversarial example planted in a binarized copy of the model, for all but
    a small share of the samples."""
    found = report.diagnostics.get("binarization")
    if not found or not found.get("attacks"):
        return Outcome(
            NOT_APPLICABLE,
            "the binarization test did not run (`--check binarization`; it runs by default with an ensemble "
            "attack when cheap, and needs an attack that left a sample robust)",
        )
    share = found.get("miss_share", 0.1)
    tested = [a for a in found["attacks"] if a["samples"]]
    failed = [a for a in tested if a["samples"] - a["found"] > share * a["samples"]]
    details = {"attacks": found["attacks"], "miss_share": share}
    if not tested:
        return Outcome(NOT_APPLICABLE, "no sample admitted a binarized model (its logits near x cannot be separated)")
    if failed:
        worst = min(failed, key=lambda a: a["found"] / a["samples"])
        return Outcome(
            WARNING,
            (
                f"{worst['attack']} found the adversarial example that provably exists within ε="
                f"{report.eps_label(worst['eps'])} for only {worst['found']} of {worst['samples']} binarized samples: "
                "the attack, not the model, is failing; its accuracies overstate robustness"
                + (f" (and {len(failed) - 1} more attacks)" if len(failed) > 1 else "")
            ),
            details,
        )
    names = ", ".join(a["attack"] for a in tested)
    return Outcome(
        PASSED,
        f"{names} found the planted adversarial example on every binarized sample but at most {share:.0%}",
        details,
    )


CHECK_NAMES = tuple(c.name for c in CHECKS)


OPTIONAL_CHECKS = ("binarization",)  # checks that cost model passes: run when asked (or by their own default rule)


def parse_optional_checks(text: str | None) -> bool | None:
    """``check`` as given: ``binarization`` → True (run the binarization test), ``none`` → False,
    not given → None (each check's default rule)."""
    if text is None:
        return None
    names = [n.strip().lower() for n in str(text).split(",") if n.strip()]
    unknown = [n for n in names if n not in (*OPTIONAL_CHECKS, "none")]
    if unknown or not names:
        raise UsageError(
            f"unknown check {unknown[0] if unknown else text!r} for `check`: choose binarization or none "
            "(the other checks always run)",
            params="check",
        )
    return "binarization" in names


def run_checks(report: RobustnessReport) -> list[dict[str, Any]]:
    """Every check on ``report``, as the dicts the report stores (in ``CHECK_NAMES`` order)."""
    return [c(report).to_dict() for c in CHECKS]


def fired(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The checks that gave a warning."""
    return [c for c in checks if c["status"] == WARNING]
