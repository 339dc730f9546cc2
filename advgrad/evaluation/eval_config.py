"""What one sweep runs: its attacks (:class:`EvalAttack`) and everything else (:class:`EvalConfig`).

The API (:func:`advgrad.evaluate`, :func:`advgrad.certify`) and the commands (``eval``, ``certify``,
``train``'s closing report) build both through :func:`plan_eval` and :func:`plan_certify`, so a run
means the same whichever way it was asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from advgrad.attacks.base import AttackParams, AttackSpec
from advgrad.bounds.smoothing import METHOD as SMOOTHING
from advgrad.bounds.smoothing import SmoothingParams
from advgrad.core.eps import Eps, parse_eps_labelled
from advgrad.core.errors import UsageError
from advgrad.core.geometry import L2, get_geometry
from advgrad.core.numeric import check_number
from advgrad.core.targets import parse_target
from advgrad.core.threat import Norm, ThreatModel, parse_norm
from advgrad.corruptions import list_corruptions, parse_corruptions

#: branch and bound (:mod:`advgrad.bounds.bab`): a verdict per sample, verified, falsified or unknown
BAB = "bab"
#: what ``certify`` may name: a bound method of :mod:`advgrad.bounds`, branch and bound, or randomized smoothing
CERTIFY_METHODS = ("ibp", "crown", "crown-ibp", "alpha-crown", BAB, SMOOTHING)

EXAMPLES_KEPT = 8  # adversarial examples per attack a report keeps for its image grid


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
    ``eps`` are :class:`~advgrad.core.eps.Eps` values (numbers are taken with their default label), each
    carrying how reports print it, e.g. ``8/255``; they are kept sorted, without repeats (the first
    label of a value wins).
    ``predictions``: forward passes per deciding prediction, for randomized models
    (:mod:`advgrad.evaluation.randomized`); by default the largest ``eot`` among the run's attacks.
    ``corruptions``: common corruptions (``"all"`` or names, :mod:`advgrad.corruptions`) whose
    accuracy at severities 1 to 5 the sweep also measures on every sample; stored as names."""

    eps: list[Eps]
    norm: Norm = "inf"
    target: int | str | None = None
    seed: int = 0
    early_stop: bool = True
    examples: int = 0
    gradient_evidence: bool = True
    extra: dict = field(default_factory=dict)
    certify: str | None = None  # a method of CERTIFY_METHODS: add its certified curve to the report
    smoothing: Any = None  # certify == "smoothing": its SmoothingParams (the defaults when None)
    bab: Any = None  # certify == "bab": its BabParams (timeout, budget; the defaults when None)
    predictions: int | None = None
    corruptions: list[str] = field(
        default_factory=list
    )  # common corruptions to run: names or "all" (advgrad.corruptions)
    fixed: tuple[int, ...] = ()  # input coordinates the threat model holds (a table's immutable features)
    keep_adversarial: bool = False  # keep every counted adversarial example in the records (eval --save-adversarial)
    binarization: bool | None = None  # the binarization test: True, False, None = by default when cheap (ensembles)

    def __post_init__(self) -> None:
        raw = self.corruptions
        self.corruptions = parse_corruptions(raw if isinstance(raw, str) else list(raw))
        if not self.eps:
            raise UsageError("give at least one ε value")
        if self.predictions is not None:
            check_number(self.predictions, "predictions", integer=True, minimum=1)
        if self.certify is not None:
            from advgrad.bounds import NORMS

            if self.certify not in CERTIFY_METHODS:
                raise UsageError(
                    f"unknown certification method {self.certify!r}; choose one of {', '.join(CERTIFY_METHODS)}",
                    params="certify",
                )
            if self.certify == SMOOTHING:
                if get_geometry(self.norm) is not L2:
                    raise UsageError(
                        "randomized smoothing certifies L2 radii only: use --norm 2 (ε is then the L2 radius)",
                        params="norm",
                    )
                self.smoothing = SmoothingParams() if self.smoothing is None else self.smoothing
            elif get_geometry(self.norm) not in NORMS:
                raise UsageError(f"certified bounds support the norms inf and 2, not {self.norm}", params="norm")
            if self.certify == BAB and self.bab is None:
                from advgrad.bounds.bab import BabParams

                self.bab = BabParams()
        given: dict[float, Eps] = {}
        for e in self.eps:  # sorted and without repeats; the first label of a value wins
            value = Eps.of(e)
            ThreatModel(self.norm, value)  # validates each ε
            given.setdefault(float(value), value)
        self.eps = [given[e] for e in sorted(given)]

    @property
    def eps_labels(self) -> list[str]:
        """How reports print each ε, in the order of :attr:`eps`."""
        return [e.label for e in self.eps]

    @property
    def target_text(self) -> str | None:
        """The target as reports name it: ``"3"``, ``"random"``, ``"least-likely"``, or None."""
        return None if self.target is None else str(self.target)


def _eps_given(eps: Any, norm: Norm) -> list[Eps]:
    """The ε values as given (text such as ``"0,8/255"``, numbers, :class:`Eps`, a list or one value),
    each keeping its label; the norm's default grid when None."""
    return parse_eps_labelled(get_geometry(norm).default_eps if eps is None else eps)


def plan_eval(
    specs: Sequence[AttackSpec],
    params: Mapping[str, Any],
    *,
    eps: Any = None,
    norm: str | int = "inf",
    target: int | str | None = None,
    seed: int = 0,
    early_stop: bool = True,
    certify: str | None = None,
    corruptions: str | Sequence[str] | None = None,
    predictions: int | None = None,
    examples: int = EXAMPLES_KEPT,
    bab: Mapping[str, Any] | None = None,
) -> tuple[list[EvalAttack], EvalConfig]:
    """The attacks and the config of an evaluation, as ``advgrad eval``, :func:`advgrad.evaluate` and
    ``advgrad train``'s closing report ask for one: each attack of ``specs`` with the ``params`` it
    takes (the caller has dealt with those no attack takes), checked against the norm; ``eps`` as in
    :func:`_eps_given`; ``certify`` a bound method (IBP, CROWN, CROWN-IBP: a lower bound under the
    attacks' upper bounds; randomized smoothing certifies another classifier and is refused here);
    ``corruptions`` ``"all"`` or names; ``bab`` the limits of branch and bound (timeout, budget,
    max_domains; those not given take their defaults) when ``certify`` is ``"bab"``."""
    threat_norm = parse_norm(norm)
    for spec in specs:
        spec.check_norm(threat_norm)
    chosen = parse_corruptions(corruptions)
    if corruptions is not None and not chosen:
        raise UsageError(
            f"`corruptions`: give all or names, one of {', '.join(list_corruptions())}", params="corruptions"
        )
    if not specs and not chosen:
        raise UsageError("give at least one attack, e.g. pgd (see `advgrad attacks`), or corruptions")
    method = None if certify is None else str(certify).strip().lower()
    if method == SMOOTHING:
        raise UsageError(
            "randomized smoothing certifies a smoothed classifier, not the model, so its numbers are no lower "
            "bound under an attack's: certify it alone (advgrad certify --method smoothing, or "
            "advgrad.certify(..., method='smoothing'))",
            params="certify",
        )
    config = EvalConfig(
        eps=_eps_given(eps, threat_norm),
        norm=threat_norm,
        target=parse_target(target),
        seed=seed,
        early_stop=early_stop,
        examples=examples,
        certify=method,
        predictions=predictions,
        corruptions=chosen,
        bab=_bab_params(method, bab),
    )
    return [EvalAttack(spec, spec.make_params(**params)) for spec in specs], config


def _bab_params(method: str | None, limits: Mapping[str, Any] | None) -> Any:
    """Branch and bound's parameters for ``method`` ``"bab"`` (those of ``limits`` not None
    given, the rest default); None for any other method."""
    if method != BAB:
        return None
    from advgrad.bounds.bab import BabParams

    return BabParams(**{k: v for k, v in (limits or {}).items() if v is not None})


def plan_certify(
    method: str,
    *,
    eps: Any = None,
    norm: str | int | None = None,
    seed: int = 0,
    smoothing: Mapping[str, Any] | None = None,
    bab: Mapping[str, Any] | None = None,
) -> EvalConfig:
    """The config of a certification run, as ``advgrad certify`` and :func:`advgrad.certify` ask for
    one: ``method`` one of :data:`CERTIFY_METHODS`; the norm L∞ by default, L2 for randomized
    smoothing (which certifies L2 radii only), whose parameters (sigma, samples, n0, alpha; those
    not given take their defaults) come in ``smoothing``; branch and bound's limits (timeout,
    budget, max_domains) in ``bab``."""
    from advgrad.bounds.smoothing import SmoothingParams

    method = str(method).strip().lower()
    if method not in CERTIFY_METHODS:
        raise UsageError(
            f"unknown method {method!r} for `method`; choose one of {', '.join(CERTIFY_METHODS)}",
            params="method",
        )
    chosen = {k: v for k, v in (smoothing or {}).items() if v is not None}
    params = SmoothingParams(**chosen) if method == SMOOTHING else None
    threat_norm = parse_norm(norm if norm is not None else ("2" if params is not None else "inf"))
    return EvalConfig(
        eps=_eps_given(eps, threat_norm),
        norm=threat_norm,
        seed=seed,
        gradient_evidence=False,
        certify=method,
        smoothing=params,
        bab=_bab_params(method, bab),
    )
