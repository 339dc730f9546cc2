"""What every attack shares: its parameter dataclass, its registry entry and the call contract.

An attack is a function ``attack(model, x, y, *, threat, params, target=None, generator=None,
early_stop=False) -> x_adv``. The device comes from ``x``; randomness only from ``generator``;
the model's mode and its parameters' ``requires_grad`` are restored before it returns.
:func:`run_attack` is the one way the rest of advgrad calls an attack: it checks the norm, fills
defaults and validates the parameters (:func:`prepare_params`, which every attack function also
starts with, so a direct call gets the same) and clips the result into the ε-ball and the box, so
no attack can exceed its budget.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import torch
from torch import Tensor, nn

from advgrad.core.eps import parse_eps
from advgrad.core.errors import UsageError
from advgrad.core.losses import get_loss
from advgrad.core.numeric import check_number
from advgrad.core.threat import Norm, ThreatModel


def param(
    default: Any,
    help: str,
    shown: str | None = None,
    *,
    parse: Callable[[str, str], Any] | None = None,
    flag: str | None = None,
) -> Any:
    """A parameter field with its help text and, for defaults that depend on the threat model
    (``None`` until :meth:`AttackParams.resolve`), how the default is computed (``shown``).

    The field's name, type, default and help are all the command line needs: ``advgrad attack``
    and ``advgrad eval`` take it as ``--name`` (:mod:`advgrad.attacks.options`). ``parse`` reads a
    value written as text (command line, config file) where the field's type alone does not, e.g.
    :func:`parse_step` for a step size written as a fraction; it is called as
    ``parse(text, "name")`` and raises :class:`UsageError` naming the parameter (the CLI shows its flag).
    ``flag`` is the option's name where the field's would clash with a command's own option
    (AutoAttack's ``version`` is ``--aa-version``: ``--version`` prints advgrad's)."""
    return field(default=default, metadata={"help": help, "shown": shown, "parse": parse, "flag": flag})


EOT_HELP = (
    "expectation over transformation: forward and backward passes averaged into each gradient "
    "(for randomized models; 1 = a plain gradient)"
)


def eot_param() -> Any:
    """The ``eot`` field every gradient attack declares: how many stochastic forward and backward
    passes each of its gradients averages (:func:`advgrad.core.gradient.expectation`); it belongs in
    ``at_least_one`` and, as a factor, in ``cost_formula``."""
    return param(1, EOT_HELP)


def eot_draws(params: Any) -> int:
    """The EOT draws of an attack's parameters: its ``eot`` field, 1 for an attack without one."""
    value = getattr(params, "eot", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def parse_step(text: str, name: str) -> float:
    """A step size or rate as written on the command line: a number or a fraction (``2/255``),
    finite and > 0 (a default step may be 0, at ε = 0; a step given as 0 would never move)."""
    value = parse_eps(text, name)
    check_number(value, name, above=0)
    return value


@dataclass
class AttackParams:
    """Base of every attack's parameters. Fields set to ``None`` take a default that may depend
    on the threat model (see :meth:`resolve`). Fields named in ``at_least_one`` (iterations,
    restarts, queries…) must be ≥ 1; every number must be ≥ 0. A gradient attack that iterates
    names its iterations ``steps``; one without ``steps`` takes a single gradient step (the sanity
    checks read this from the report's parameters: :func:`advgrad.verdicts.checks.gradient_steps`)."""

    at_least_one: ClassVar[tuple[str, ...]] = ()
    positive: ClassVar[tuple[str, ...]] = ("initial_const",)
    # Passes of the model per sample — a forward pass, with its backward pass where the attack
    # takes a gradient; the few forward passes that only check a result are left out — as a
    # formula of the parameters (``+``, ``*``, ``min``, whole numbers, the field names and
    # ``classes``, the model's number of classes). Declared once per attack; the ``advgrad
    # attacks`` listing and the cost estimate of ``advgrad eval`` both read it.
    cost_formula: ClassVar[str] = "1"
    # Facts that are no parameters (no option sets them) but belong with them in every report, e.g.
    # the AutoAttack version a preset reproduces: ``{"version": "rand"}``. :meth:`to_dict` adds them.
    constants: ClassVar[dict[str, Any]] = {}

    def passes_per_sample(self, classes: int = 10) -> int:
        """What :attr:`cost_formula` gives for these parameters: an upper bound on the model passes
        one sample costs (early stop, and a sample fooled at a smaller ε, make it fewer).

        >>> PGDParams(steps=20, restarts=2).passes_per_sample()
        40
        """
        names = {f.name: getattr(self, f.name) for f in fields(self)}
        names["classes"] = classes
        return int(_evaluate_formula(ast.parse(self.cost_formula, mode="eval").body, names))

    def resolve(self, threat: ThreatModel) -> AttackParams:
        """A copy with every ``None`` default filled in for ``threat``."""
        return dataclasses.replace(self)

    def fill(self, **defaults: Any) -> Any:
        """A copy in which each field named in ``defaults`` that is ``None`` takes that value."""
        return dataclasses.replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    @classmethod
    def check_value(cls, name: str, value: Any) -> None:
        """Raise :class:`UsageError` unless ``value`` suits the numeric field ``name``: finite, a
        whole number for an ``int`` field, ≥ 1 for those in ``at_least_one``, > 0 for those in
        ``positive``, else ≥ 0. Non-numeric fields (bools, strings) are not checked here."""
        declared = {
            f.name: f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "") for f in fields(cls)
        }.get(name, "")
        if not any(t in declared for t in ("int", "float")) or value is None:
            return
        integer = "int" in declared and "float" not in declared
        if name in cls.at_least_one:
            check_number(value, name, integer=integer, minimum=1)
        elif name in cls.positive:
            check_number(value, name, integer=integer, above=0)
        else:
            check_number(value, name, integer=integer, minimum=0)

    def validate(self) -> None:
        """Raise :class:`UsageError` for values that make no sense (negative steps, NaN momentum...)."""
        for f in fields(self):
            self.check_value(f.name, getattr(self, f.name))

        loss = getattr(self, "loss", None)
        if isinstance(loss, str):
            get_loss(loss)  # an unknown objective is refused before any work starts

    def to_dict(self) -> dict[str, Any]:
        """The parameters by name, and the class's :attr:`constants`."""
        return {**dataclasses.asdict(self), **self.constants}

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Every parameter: name, CLI option, type, default (as text where it depends on ε) and help."""
        rows = []
        for f in fields(cls):
            shown = f.metadata.get("shown")
            rows.append(
                {
                    "name": f.name,
                    "option": "--" + (f.metadata.get("flag") or f.name.replace("_", "-")),
                    "type": f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type)),
                    "default": shown if shown is not None else f.default,
                    "help": f.metadata.get("help", ""),
                }
            )
        return rows

    @classmethod
    def describe_cost(cls, classes: int = 10) -> dict[str, Any]:
        """The cost per sample: the formula and its value with the default parameters."""
        return {
            "formula": formula_text(cls.cost_formula),
            "default": cls().passes_per_sample(classes),
            "unit": "model passes per sample (forward, and backward where a gradient is taken; checking passes left out)",
            "classes": classes,
        }


def _evaluate_formula(node: ast.expr, names: dict[str, Any]) -> int:
    """A cost formula's value: sums, products and ``min`` of whole numbers and named parameters only."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _evaluate_formula(node.left, names), _evaluate_formula(node.right, names)
        return left + right if isinstance(node.op, ast.Add) else left * right
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "min"
        and node.args
        and not node.keywords
    ):
        return min(_evaluate_formula(arg, names) for arg in node.args)
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Name) and isinstance(names.get(node.id), int):
        return names[node.id]
    raise ValueError(f"bad cost formula element {ast.dump(node)}")


def formula_text(formula: str) -> str:
    """A cost formula as the listing shows it: ``steps×restarts``."""
    return formula.replace(" * ", "×").replace("*", "×")


P = TypeVar("P", bound=AttackParams)


def prepare_params(params: P | None, params_type: type[P], threat: ThreatModel) -> P:
    """The parameters an attack runs with: ``params`` (``params_type()`` when None) with every
    default that depends on the threat model filled in (:meth:`AttackParams.resolve`), then
    validated. Every attack function starts with it, so calling one directly gets defaults and
    validation; parameters it returned come back as they are when prepared again for the same
    threat model and unchanged, so :func:`run_attack` and the attack it calls do the work once."""
    if params is None:
        params = params_type()
    if getattr(params, "_prepared_for", None) == (threat, params.to_dict()):
        return params
    prepared = params.resolve(threat)
    prepared.validate()
    # Not a field: asdict, ==, repr and dataclasses.replace ignore it.
    object.__setattr__(prepared, "_prepared_for", (threat, prepared.to_dict()))
    return prepared


class AttackFunction(Protocol):
    def __call__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        threat: ThreatModel,
        params: Any = None,
        target: Tensor | None = None,
        generator: torch.Generator | None = None,
        early_stop: bool = False,
    ) -> Tensor: ...


# gradient: bounded, uses ∇ₓJ; minimal: finds the smallest perturbation it can, whatever ε;
# score: bounded, uses only the model's outputs; ensemble: several attacks in a cascade.
AttackKind = Literal["gradient", "minimal", "score", "ensemble"]


@dataclass(frozen=True)
class AttackSpec:
    """A registry entry: how to call an attack and how to describe it."""

    name: str
    function: AttackFunction
    params_type: type[AttackParams]
    norms: tuple[Norm, ...]
    kind: AttackKind
    summary: str
    reference: str
    aliases: tuple[str, ...] = field(default=())
    # an ε sweep runs it from the largest ε down, each smaller ε only on the samples fooled at the next
    # larger one, from their example there projected into the smaller ball (docs/cost.md): each sample
    # pays a whole run at most once. For attacks whose failure in a ball predicts failure in the balls inside it.
    sweep_once: bool = False

    def make_params(self, **options: Any) -> AttackParams:
        """Parameters from keyword options; ``None`` values and options this attack does not take
        are dropped (so one set of CLI options can serve several attacks)."""
        names = {f.name for f in fields(self.params_type)}
        given = {k: v for k, v in options.items() if v is not None and k in names}
        params = self.params_type(**given)
        params.validate()
        return params

    def check_norm(self, norm: Norm) -> None:
        """Raise :class:`UsageError` unless this attack supports the threat model's norm."""
        if norm not in self.norms:
            supported = ", ".join(self.norms)
            raise UsageError(f"{self.name} does not support the L{norm} threat model (it supports: {supported})")

    def ignored_options(self, **options: Any) -> list[str]:
        """Names of the options that were given but that this attack does not take."""
        names = {f.name for f in fields(self.params_type)}
        return sorted(k for k, v in options.items() if v is not None and k not in names)


def run_attack(
    spec: AttackSpec,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: AttackParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """Call an attack through its registry entry and guarantee the budget.

    Returns ``x_adv`` with the shape and dtype of ``x``, inside the ε-ball and the box. A
    minimal-perturbation attack (``kind == "minimal"``) ignores ε while it searches; its result is
    then the minimal example where that lies within ε, else that example projected onto the
    ε-ball and the box. :func:`advgrad.attacks.minimal.find_minimal` runs one without a budget.
    """
    spec.check_norm(threat.norm)
    params = prepare_params(params, spec.params_type, threat)
    if x.shape[0] == 0 or (threat.eps == 0 and spec.kind != "minimal"):
        return x.detach().clone()
    x_adv = spec.function(
        model, x, y, threat=threat, params=params, target=target, generator=generator, early_stop=early_stop
    )
    x_adv = x_adv.detach().to(x.dtype)
    # A NaN coordinate (from NaN gradients) would pass through the clip: it takes the value of x.
    x_adv = torch.where(torch.isfinite(x_adv), x_adv, x.detach())
    return threat.clip_exact(x_adv, x.detach())
