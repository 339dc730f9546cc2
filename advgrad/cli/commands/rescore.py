"""``advgrad rescore``: re-run the model on the adversarial inputs a run kept and reproduce its numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from advgrad.cli import shared_options as o
from advgrad.cli.common import emit_json, open_and_describe
from advgrad.cli.console import handle_errors, info, out, warn
from advgrad.core.errors import ExitCode, UsageError
from advgrad.io.inputs import InputOptions

SHOWN = 10  # differing samples named per number


def _input_options(recorded: Any, device: str | None) -> InputOptions:
    """The run's model and data options as its report recorded them (lists back to tuples)."""
    if not isinstance(recorded, dict):
        raise UsageError("the report does not record how its model was loaded (config.inputs); rerun with this advgrad")
    known = set(InputOptions.__dataclass_fields__)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items() if k in known}
    if device is not None:
        values["device"] = device
    return InputOptions(**values)


def _table(found: list) -> Table:
    table = Table()
    for col in ("number", "reported (correct)", "rescored (correct)", "differing samples"):
        table.add_column(col, justify="left" if col in ("number", "differing samples") else "right")
    for item in found:
        shown = ", ".join(str(i) for i in item.differing[:SHOWN]) + ("…" if len(item.differing) > SHOWN else "")
        table.add_row(
            item.name, str(item.reported), str(item.rescored), shown or "—", style=None if item.same else "red"
        )
    return table


def _load(report: Path) -> tuple[str, Any]:
    """``("eval", RobustnessReport)`` for a JSON report, ``("attack", dict)`` for an attack's .pt file."""
    if report.suffix.lower() == ".json":
        from advgrad.verdicts.regressions import read_report

        return "eval", read_report(report)
    import torch

    from advgrad.io.paths import require_file

    try:
        saved = torch.load(
            require_file(report, "a file written by advgrad attack --out", UsageError), weights_only=True
        )
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(
            f"{report}: not a JSON report nor a file of advgrad attack --out ({type(exc).__name__})"
        ) from None
    if not isinstance(saved, dict):
        raise UsageError(f"{report}: not a file written by advgrad attack --out")
    return "attack", saved


@handle_errors
def rescore_command(
    report: Annotated[
        Path,
        typer.Argument(
            help="A report of advgrad eval --json run with --save-adversarial, or the .pt file of advgrad attack --out.",
            show_default=False,
        ),
    ],
    adversarial: Annotated[
        Optional[Path],
        typer.Option(
            "--adversarial",
            help="The folder of advgrad eval --save-adversarial (default: the one the report names).",
            show_default=False,
            metavar="DIR",
        ),
    ] = None,
    device: Annotated[
        Optional[str],
        typer.Option("--device", help="Where to run the model (default: as the run did).", show_default=False),
    ] = None,
    json_out: o.JsonOpt = None,
) -> None:
    """Re-run the model on the adversarial inputs a run kept and reproduce every accuracy it reported.

    The model is loaded as the run loaded it (the report records its options). Each sample's clean
    verdict and, per attack and ε, whether its kept adversarial example fools the model inside the
    ε-ball are decided again by a fresh forward pass. Exit 0 when every number is reproduced
    exactly; exit 1 naming the samples whose verdict differs (`advgrad docs records`).

    Example: advgrad eval --json r.json --save-adversarial adv/ && advgrad rescore r.json

    Example: advgrad attack --eps 0.1 --out adv.pt && advgrad rescore adv.pt
    """
    kind, loaded = _load(report)
    from advgrad.evaluation.rescoring import rescore_attack, rescore_eval

    if kind == "eval":
        folder = adversarial or (loaded.config.get("outputs") or {}).get("save_adversarial")
        if folder is None:
            raise UsageError(f"{report} names no folder of adversarial examples: run eval with --save-adversarial DIR")
        inputs = open_and_describe(_input_options(loaded.config.get("inputs"), device))
        found = rescore_eval(inputs.model.module, loaded, folder, inputs.device)
    else:
        inputs = open_and_describe(_input_options(loaded.get("inputs"), device))
        found = rescore_attack(inputs.model.module, loaded, inputs.device, inputs.options.batch_size)
    used_stdout = emit_json(json_out, {"report": str(report), "numbers": [item.to_dict() for item in found]})
    if not used_stdout:
        out.print(_table(found))
    differing = [item for item in found if not item.same]
    if differing:
        for item in differing:
            warn(f"{item.name}: reported {item.reported} correct, rescored {item.rescored}; samples {item.differing}")
        raise typer.Exit(int(ExitCode.GATE_FAILED))
    info(f"rescore: all {len(found)} numbers reproduced exactly")
