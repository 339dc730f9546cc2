"""``advgrad eval``: the robustness curve, accuracy under attack as ε grows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from advgrad.cli import options as o
from advgrad.cli.common import attacks_from, emit_json, open_and_describe, warn_unused
from advgrad.cli.console import handle_errors, info, out, progress
from advgrad.errors import UsageError
from advgrad.evaluate import EvalAttack, EvalConfig, evaluate
from advgrad.report.plot import plot_curves
from advgrad.report.table import cost_table, report_heading, report_table
from advgrad.targets import parse_target
from advgrad.threat import parse_eps_list, parse_norm

DEFAULT_EPS = {"inf": "0,0.02,0.05,0.1,0.2,0.3", "2": "0,0.25,0.5,1,1.5,2", "1": "0,1,2,4,8,12"}


@handle_errors
@o.with_attack_options
def eval_command(
    attack: Annotated[str, typer.Option("--attack", "-a", help="Attacks to run, comma-separated (see `advgrad attacks`).", rich_help_panel=o.ATTACK_PANEL)] = "fgsm,pgd",
    eps: Annotated[Optional[str], typer.Option("--eps", "-e", help="ε values, comma-separated; fractions allowed (0,1/255,2/255). [default: 0,0.02,0.05,0.1,0.2,0.3 for L∞; 0,0.25,0.5,1,1.5,2 for L2]", rich_help_panel=o.ATTACK_PANEL, show_default=False)] = None,
    norm: o.NormOpt = "inf",
    attack_opts: dict = None,  # type: ignore[assignment]  # --steps, --momentum…: see with_attack_options
    target: o.TargetOpt = None,
    early_stop: Annotated[bool, typer.Option("--early-stop/--no-early-stop", help="Stop attacking a sample once it is fooled (the result is the same; it only saves time).", rich_help_panel=o.ATTACK_PANEL)] = True,
    json_out: o.JsonOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the accuracy-against-ε plot to this PNG file.", rich_help_panel=o.OUTPUT_PANEL, show_default=False)] = None,
    model: o.ModelOpt = None,
    data: o.DataOpt = None,
    split: o.SplitOpt = "test",
    limit: o.LimitOpt = None,
    batch_size: o.BatchOpt = 256,
    seed: o.SeedOpt = 0,
    device: o.DeviceOpt = "auto",
) -> None:
    """Measure accuracy under each attack at each ε: the robustness curve.

    Each attack runs over the ε values in increasing order on the samples still classified
    correctly, and a sample leaves an attack as soon as it is fooled. A minimal-perturbation
    attack (deepfool, cw) runs once and gives every ε from each sample's smallest adversarial
    example, and the median of those norms. Each attack takes the options it has parameters for
    (`advgrad attacks`); an option no chosen attack takes is ignored with a warning.

    Example: advgrad eval --attack fgsm,pgd --eps 0,2/255,4/255,8/255 --json report.json --plot curve.png
    """
    threat_norm = parse_norm(norm)
    eps_values = parse_eps_list(eps if eps is not None else DEFAULT_EPS[threat_norm])
    specs = attacks_from(attack)
    for spec in specs:
        if threat_norm not in spec.norms:
            raise UsageError(f"{spec.name} does not support the L{threat_norm} threat model (it supports: {', '.join(spec.norms)})")
    warn_unused(specs, attack_opts)
    attacks = [EvalAttack(spec, spec.make_params(**attack_opts)) for spec in specs]
    config = EvalConfig(eps=eps_values, norm=threat_norm, target=parse_target(target), seed=seed, early_stop=early_stop)
    inputs = open_and_describe(o.input_options(model, data, split, limit, batch_size, seed, device))
    with progress("eval", inputs.n_samples) as tick:
        report = evaluate(inputs.model.module, inputs.batches(), attacks, config, device=inputs.device, progress=tick)
    report.model = inputs.model.to_dict()
    report.data = {"source": inputs.data.name, "description": inputs.data.description, **inputs.probe.to_dict()}
    report.config.update({"inputs": inputs.options.to_dict(), "attacks": [a.name for a in attacks],
                          "target": None if config.target is None else str(config.target)})
    if plot is not None:
        plot_curves(report, plot)
        info(f"wrote {plot}")
    if not emit_json(json_out, report.to_dict()):
        out.print(report_heading(report), markup=False)
        out.print(report_table(report))
        out.print("cost:", markup=False)
        out.print(cost_table(report))
