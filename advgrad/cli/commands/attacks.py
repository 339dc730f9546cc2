"""``advgrad attacks``: every registered attack with its threat models, parameters and paper."""

from __future__ import annotations

import fnmatch
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from advgrad.cli.catalog import catalog
from advgrad.cli.console import handle_errors, out, print_json
from advgrad.cli.output_options import JsonOpt
from advgrad.core.errors import UsageError
from advgrad.report.attack_listing import attacks_listing

if TYPE_CHECKING:
    from advgrad.attacks import AttackSpec


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
    json_out: JsonOpt = None,
) -> None:
    """List every attack: threat models, kind, parameters with their defaults, and the paper.

    Kinds: gradient (bounded by ε, uses ∇ₓJ), minimal (finds the smallest perturbation; one run
    gives a whole curve in eval), score (bounded, uses only the model's outputs), ensemble (a
    cascade of attacks). Each parameter is set by the option of the same name (--steps…).
    Cost: the model passes one sample costs at most (forward, and backward where the attack takes
    a gradient), as a formula of the parameters; `eval` runs it once per ε > 0 (minimal attacks once).

    Example: advgrad attacks 'apgd*'   ·   advgrad attacks --json -
    """
    rows = attack_rows(pattern)
    if not rows:
        raise UsageError(f"no attack matches {pattern!r}; run `advgrad attacks` to see them all")
    if json_out is None:
        out.print_trimmed(attacks_listing(rows, norm_label))
    elif str(json_out) == "-":
        print_json({"attacks": rows})
    else:
        from advgrad.cli.common import emit_json

        emit_json(json_out, {"attacks": rows})


def attack_rows(pattern: str = "*") -> list[dict[str, Any]]:
    """The attacks whose name matches ``pattern``, described: from the registry when it is loaded (an
    attack registered in this process is listed), else from the catalog, which holds the same rows
    for the shipped attacks without importing torch."""
    if "advgrad.attacks.registry" in sys.modules:
        from advgrad.attacks import list_attacks

        return [describe_attack(spec) for spec in list_attacks(pattern)]
    return [row for row in catalog()["attack_listing"] if fnmatch.fnmatch(row["name"], pattern)]


def norm_label(norm: str) -> str:
    """``inf`` → ``L∞``: geometry's label when it is loaded, else the catalog's copy of it."""
    if "advgrad.core.geometry" in sys.modules:
        from advgrad.core.geometry import get_geometry

        return get_geometry(norm).label
    return catalog()["norm_labels"][norm]
