"""``advgrad attacks``: every registered attack with its threat models, parameters and paper."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from advgrad.attacks import AttackSpec, list_attacks
from advgrad.cli import shared_options as o
from advgrad.cli.common import emit_json
from advgrad.cli.console import handle_errors, out
from advgrad.core.errors import UsageError
from advgrad.report.table import attacks_listing


def describe_attack(spec: AttackSpec) -> dict[str, Any]:
    """One attack as plain data: name, aliases, kind, norms, summary, paper and parameters."""
    return {
        "name": spec.name,
        "aliases": list(spec.aliases),
        "kind": spec.kind,
        "norms": list(spec.norms),
        "summary": spec.summary,
        "reference": spec.reference,
        "params": spec.params_type.describe(),
        "cost": spec.params_type.describe_cost(),
    }


@handle_errors
def attacks(
    pattern: Annotated[
        str, typer.Argument(help="Only attacks whose name matches this shell pattern, e.g. 'apgd*'.")
    ] = "*",
    json_out: o.JsonOpt = None,
) -> None:
    """List every attack: threat models, kind, parameters with their defaults, and the paper.

    Kinds: gradient (bounded by ε, uses ∇ₓJ), minimal (finds the smallest perturbation; one run
    gives a whole curve in eval), score (bounded, uses only the model's outputs), ensemble (a
    cascade of attacks). Each parameter is set by the option of the same name (--steps…).
    Cost: the model passes one sample costs at most (forward, and backward where the attack takes
    a gradient), as a formula of the parameters; `eval` runs it once per ε > 0 (minimal attacks once).

    Example: advgrad attacks 'apgd*'   ·   advgrad attacks --json -
    """
    specs = list_attacks(pattern)
    if not specs:
        raise UsageError(f"no attack matches {pattern!r}; run `advgrad attacks` to see them all")
    rows = [describe_attack(spec) for spec in specs]
    if not emit_json(json_out, {"attacks": rows}):
        out.print_trimmed(attacks_listing(rows))
